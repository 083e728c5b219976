"""``sparc eval`` and ``sparc compare`` end to end on quickly trained runs."""

import json

import pytest

from sparc.cli.main import main
from synthetic import make_store

TRAIN = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--epochs", "2", "--no-progress"]
EVAL = ["--no-progress", "--probe-epochs", "2", "--retrieval-queries", "50"]


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    store = make_store(root / "store", n_rows=240)
    runs = {}
    for name, extra in (("local_nocross", ["--topk", "local", "--cross-coef", "0"]), ("sparc", [])):
        assert main([str(a) for a in ["train", store, "--out", root / name, *TRAIN, *extra]]) == 0
        runs[name] = root / name
    return root, store, runs


def test_eval_then_compare(trained, capsys):
    root, store, runs = trained
    for name, run_dir in runs.items():
        code, out, err = run(["eval", run_dir, *EVAL], capsys)  # the store comes from the run
        assert code == 0, err
        assert "concept Jaccard" in out and "eval.json" in out
        ev = run_dir / "eval-test"
        for f in ("eval.json", "eval.md", "plots/firing.png", "plots/jaccard.png", "plots/cross_nmse.png",
                  "plots/dead.png"):
            assert (ev / f).exists(), f
        data = json.loads((ev / "eval.json").read_text())
        assert data["split"] == "test" and data["settings"]["retrieval_queries"] == 50
        assert data["model"]["topk"] == ("local" if name.startswith("local") else "global")
        # Retrieval: the headline (same image) with the group-aware figure beside it, under its own name.
        res = data["retrieval"]["results"][0]
        assert 0 <= res["r1"] <= res["group_aware"]["r1"] <= 1 and "same image" in data["retrieval"]["match_rule"]
        # Every Jaccard with its floors.
        cj = data["encodings"][0]["concept_jaccard"][0]
        assert {"label_free_all", "null_all", "null_all_sd", "excess_all", "null_histogram"} <= set(cj)
        assert "null" in data["encodings"][1]["active_sets"][0] and "label-free" in out
        # Each latent's stream presence (independent encoding), counted and per latent.
        pr = data["presence"]
        assert pr["shared"] + sum(pr["mostly"].values()) + sum(pr["only"].values()) + pr["dead"] == 32
        assert len(pr["classes"]) == 32 and "stream presence" in out

    # An explicit store, split and output directory.
    code, _, err = run(["eval", runs["sparc"], "--store", store, "--split", "val", "--out", root / "val-eval",
                        "--no-plots", *EVAL], capsys)
    assert code == 0, err
    assert not (root / "val-eval" / "plots").exists()
    assert json.loads((root / "val-eval" / "eval.json").read_text())["probes"] is None

    code, out, err = run(["compare", runs["local_nocross"], runs["sparc"] / "eval-test",
                          "--out", root / "cmp"], capsys)
    assert code == 0, err
    table = [line for line in out.splitlines() if line.startswith("| ")]
    # Paper order: global + cross before local, no cross, whatever the order given.
    assert table[1].startswith("| global + cross | sparc") and table[2].startswith("| local, no cross |")
    cmp = json.loads((root / "cmp" / "compare.json").read_text())
    assert [r["model"] for r in cmp["rows"]] == ["global + cross", "local, no cross"]
    for r in cmp["rows"]:
        assert 0 <= r["concept_jaccard"] <= 1 and r["dead_in_all"] + r["dead_in_some"] + r["alive_in_all"] == 32
        assert r["r1_latents"] <= r["r1_latents_group_aware"]
        assert r["presence_shared"] + r["presence_mostly"] + r["presence_only"] <= 32
        floors = {f["figure"]: f for f in r["floors"]}
        assert set(floors) == {"concept_jaccard", "concept_jaccard_active", "concept_jaccard_independent",
                               "active_set_jaccard"}
        assert floors["concept_jaccard"]["observed"] == r["concept_jaccard"]
        assert floors["concept_jaccard"]["excess"] == pytest.approx(
            floors["concept_jaccard"]["observed"] - floors["concept_jaccard"]["null"])
    assert "label-free" in out and "group-aware" in out
    assert (root / "cmp" / "compare.md").read_text().startswith("# Comparison")

    # Runs evaluated on different splits are flagged.
    code, out, _ = run(["compare", runs["sparc"], root / "val-eval"], capsys)
    assert code == 0 and "different splits" in out


def test_one_line_errors(trained, tmp_path, capsys):
    root, store, runs = trained
    code, _, err = run(["compare", tmp_path], capsys)
    assert code == 2 and "run 'sparc eval" in err and len(err.strip().splitlines()) == 1
    other = make_store(tmp_path / "other", n_rows=40, dims={"dino": 12, "clip_img": 8})
    code, _, err = run(["eval", runs["sparc"], "--store", other, *EVAL], capsys)
    assert code == 2 and "clip_txt" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    code, _, err = run(["eval", runs["sparc"], "--out", tmp_path / "busy", *EVAL], capsys)
    assert code == 2 and "refusing" in err and (tmp_path / "busy" / "keep.txt").exists()
    code, _, err = run(["eval", runs["sparc"], "--split", "nope", *EVAL], capsys)
    assert code == 2 and "unknown split" in err
    code, _, err = run(["eval", runs["sparc"], "--presence-mostly", "0.3", *EVAL], capsys)
    assert code == 2 and "presence_mostly" in err and len(err.strip().splitlines()) == 1
