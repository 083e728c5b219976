"""``sparc stats / names / latent / query / report`` end to end on the stand-in world of
tests/explore/world.py, and their one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sparc.cli.main import main
from sparc.data import FeatureStore, StoreWriter
from sparc.model import SPARC, SPARCConfig
from tests.explore.world import concept_image, register_fakes, session_world


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    register_fakes(monkeypatch)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    paths = dict(session_world(tmp_path_factory))
    run = tmp_path_factory.mktemp("cli-explore") / "run"
    shutil.copytree(paths["run"], run)  # the commands save statistics into the run
    shutil.rmtree(run / "explore-all", ignore_errors=True)
    paths["run"] = run
    return paths


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, pattern):
    assert code == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert pattern in err, err


def test_stats_names_latent(world, capsys):
    code, out, err = run(["stats", world["run"], "--no-progress"], capsys)
    assert code == 0, err
    assert "latent statistics of 48 latents on" in out and (world["run"] / "explore-all" / "stats.json").exists()
    # Words measured against labels on held-out rows: the test split's (captions outside it name).
    code, out, err = run(["names", world["run"], "--split", "test", "--no-progress"], capsys)
    assert code == 0, err
    assert "aligned (every stream the same name)" in out and "| txt |" in out and "chance" in out
    assert json.loads((world["run"] / "explore-test" / "names.json").read_text())["text_stream"] == "txt"
    assert "latents of the test split (" in out
    code, out, err = run(["names", world["run"], "--no-progress"], capsys)  # every row, as the report
    assert code == 0, err
    assert "latents of the all split (" in out and "frequency: fraction of the all split's rows" in out
    code, out, err = run(["names", world["run"], "--show", "3", "--export", world["run"].parent / "names.csv",
                          "--no-progress"], capsys)
    assert code == 0, err
    listed = out.split("latents of the all split")[1].splitlines()[2:5]
    assert len(listed) == 3 and all(line.split()[0].isdigit() for line in listed)
    exported = (world["run"].parent / "names.csv").read_text().splitlines()
    assert exported[0].startswith("latent,headline,label,purity,aligned,words,split,freq_") and len(exported) == 49
    code, out, err = run(["names", world["run"], "--export", "names.txt"], capsys)
    one_line_error(code, err, "--export names.txt: the file must end in .csv or .json")
    code, out, err = run(["names", world["run"], "--words", "2", "--labels", "specific", "--no-progress"], capsys)
    assert code == 0, err  # other settings: named again, the statistics reused
    saved = json.loads((world["run"] / "explore-all" / "names.json").read_text())
    assert saved["settings"]["words"] == 2 and saved["settings"]["labels"] == "specific"
    assert all(len(w) == 2 for w in saved["words"])
    code, out, err = run(["latent", world["run"], "7", "--rows", "2", "--encoding", "independent"], capsys)
    assert code == 0, err
    assert out.startswith("latent 7 of 48") and "independent encoding" in out and "top rows, img" in out
    code, out, err = run(["latent", world["run"], "48"], capsys)
    one_line_error(code, err, "latent 48 does not exist; this model has 48 latents (0 to 47)")
    code, out, err = run(["latent", world["run"], "-1"], capsys)
    assert code == 2


def test_query_text_image_row_and_grid(world, capsys, tmp_path):
    code, out, err = run(["query", world["run"], "--text", "a whale", "--top", "3", "--grid", tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert "through txt (encoded alone)" in out and "rows of img by cosine of sparse codes" in out
    assert "whale" in out.split("rows of img")[1].splitlines()[1]
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG"
    concept_image({"seal": 0.8}).save(tmp_path / "seal.png")
    code, out, err = run(["query", world["run"], "--image", tmp_path / "seal.png", "--top", "2"], capsys)
    assert code == 0, err
    assert "through img" in out and "rows of txt" in out
    code, out, err = run(["query", world["run"], "--row", "r2", "--stream", "raw"], capsys)
    assert code == 0, err
    assert "row r2 (raw)" in out and "note:" not in out  # every row searched: nothing hidden


def test_a_query_over_one_split_says_what_it_hides(world, capsys):
    # A training row's own image is outside the test split: the query says so, and where.
    store = FeatureStore.open(world["store"])
    r = int(store.split_rows("train")[0])
    row_id = store.rows()[r].row_id
    code, out, err = run(["query", world["run"], "--row", row_id, "--stream", "txt", "--split", "test"], capsys)
    assert code == 0, err
    assert "rows of the test split" in out or "test split" in out
    notes = [line for line in out.splitlines() if line.startswith("note: img: row ")]
    assert notes and "of the train split matches better" in notes[0] and notes[0].endswith("--split all")


def test_query_errors(world, capsys, tmp_path, monkeypatch):
    (tmp_path / "bad.png").write_text("not an image")
    code, _, err = run(["query", world["run"], "--image", tmp_path / "bad.png"], capsys)
    one_line_error(code, err, "cannot read image")
    code, _, err = run(["query", world["run"], "--text", "a", "--row", "r1"], capsys)
    one_line_error(code, err, "give exactly one of --text, --image or --row")
    code, _, err = run(["query", world["run"], "--row", "nope"], capsys)
    one_line_error(code, err, "no row 'nope'")
    code, _, err = run(["query", world["run"], "--text", "a seal", "--stream", "img"], capsys)
    one_line_error(code, err, "does not read texts")
    # a run without a text stream
    store = FeatureStore.open(world["store"])
    SPARC({"img": store.streams["img"]}, SPARCConfig(n_latents=16, k=2)).save(tmp_path / "img-only")
    code, _, err = run(["query", tmp_path / "img-only", "--store", world["store"], "--text", "a seal",
                        "--no-progress"], capsys)
    one_line_error(code, err, "this run has no text stream")
    # a backbone that is not installed
    from sparc.extract.backbones import BACKBONES

    monkeypatch.delitem(BACKBONES.classes, "explore-fake-text")
    code, _, err = run(["query", world["run"], "--text", "a seal"], capsys)
    one_line_error(code, err, "unknown backbone 'explore-fake-text'")


def test_report_and_a_store_that_does_not_belong(world, capsys, tmp_path):
    code, out, err = run(["report", world["run"], "--out", tmp_path / "report", "--no-progress"], capsys)
    assert code == 0, err
    assert f"report: {tmp_path / 'report' / 'index.html'} (" in out and "MB in" in out
    assert (tmp_path / "report" / "index.html").exists()
    store = FeatureStore.open(world["store"])
    sources = {s: store.manifest.streams[s].source for s in store.streams if store.manifest.streams[s].source}
    sources["img"] = {**sources["img"], "model": "another-model"}
    with StoreWriter(tmp_path / "other", store.streams, sources=sources) as w:
        w.append({s: np.asarray(store.features(s)) for s in store.streams}, store.rows())
    code, _, err = run(["report", world["run"], "--store", tmp_path / "other", "--out", tmp_path / "r2"], capsys)
    one_line_error(code, err, "does not belong to run")
    code, _, err = run(["report", world["run"], "--out", world["run"]], capsys)
    one_line_error(code, err, "overlaps the input")


@pytest.mark.parametrize("command", ["stats", "names", "latent", "query", "report"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_sparc_steer_edits_a_row_and_says_what_moved(world, tmp_path, capsys):
    out = tmp_path / "edited.npy"
    code_ = main(["steer", str(world["run"]), "--row", "r2", "--stream", "img", "--to", "txt", "--add-text", "a whale",
                  "--zero", "0", "--out", str(out), "--top", "3"])
    printed = capsys.readouterr()
    assert code_ == 0, printed.err
    assert "add the latents of 'a whale':" in printed.out and "img → txt: 2 edit(s)" in printed.out
    assert "nearest txt rows before:" in printed.out and "nearest txt rows after:" in printed.out
    assert "label probe (trained on the store's own features):" in printed.out
    assert np.load(out).shape == (1, FeatureStore.open(world["store"]).streams["txt"])
    for args, msg in ((["--row", "r2"], "no edit"), (["--row", "r2", "--zero", "999"], "latent 999 does not exist"),
                      (["--zero", "1"], "give --row ID or --features"),
                      (["--row", "r2", "--zero", "1", "--out", str(tmp_path / "x.txt")], "written as .npy")):
        assert main(["steer", str(world["run"]), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
