"""The ``sparc`` command end to end, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sparc.cli.main import main
from sparc.model import SPARC, SPARCConfig
from sparc.model.reference import to_reference
from synthetic import make_store

SMALL = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_info_and_resume(store, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(["train", store, "--out", out, "--epochs", "2", *SMALL], capsys)
    assert code == 0, err
    for name in ("config.json", "model.safetensors", "train_config.json", "metrics.jsonl", "checkpoint"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["streams"] == ["dino", "clip_img", "clip_txt"]
    model = SPARC.load(out)
    assert model.cfg.n_latents == 32 and model.cfg.k == 4

    code, stdout, _ = run(["info", out], capsys)
    assert code == 0 and "32 latents" in stdout and "trained" in stdout

    code, _, err = run(["train", store, "--out", out, *SMALL], capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert len(err.strip().splitlines()) == 1

    code, _, err = run(["train", store, "--out", out, "--resume", *SMALL], capsys)
    assert code == 0, err
    code, _, err = run(["train", store, "--out", out, "--overwrite", "--epochs", "1", *SMALL], capsys)
    assert code == 0, err


def test_train_on_a_subset_of_streams(store, tmp_path, capsys):
    code, _, err = run(["train", store, "--out", tmp_path / "r", "--streams", "dino", "clip_txt",
                        "--max-steps", "3", *SMALL], capsys)
    assert code == 0, err
    assert list(SPARC.load(tmp_path / "r").streams) == ["dino", "clip_txt"]


@pytest.mark.parametrize("args, message", [
    (["--streams", "audio"], "unknown stream 'audio'"),
    (["--k", "32"], "k must satisfy"),
    (["--k", "0"], "k must satisfy"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
])
def test_bad_training_flags(store, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    code, _, err = run(["train", store, "--out", out, *SMALL, *args], capsys)
    assert code == 2 and message in err and err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert not (out / "config.json").exists() and not (out / "checkpoint").exists()


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["train", tmp_path / "nowhere", "--out", tmp_path / "r", *SMALL], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["bogus"], ["bogus", "--help"], ["trian", "-h"]])
def test_an_unknown_command_is_a_one_line_error(args, capsys):
    code, stdout, err = run(args, capsys)
    assert code == 2 and stdout == ""
    assert err == f"error: unknown command {args[0]!r}; see sparc --help\n"


def test_every_command_has_its_help(capsys):
    from sparc.cli.main import COMMANDS

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    usage = "".join(capsys.readouterr().out.split())  # whatever the terminal's width
    assert "{" + ",".join(COMMANDS) + "}" in usage


def test_import_checkpoint_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    ref = SPARC({"dino": 12, "clip_img": 8, "clip_txt": 8}, SPARCConfig(n_latents=32, k=4, auxk=8))
    (tmp_path / "orig").mkdir()
    torch.save(to_reference(ref), tmp_path / "orig" / "msae_checkpoint.pth")
    (tmp_path / "orig" / "run_config.json").write_text(json.dumps(
        {"n_latents": 32, "k": 4, "auxk": 8, "topk_type": "global", "batch_size": 256}))
    code, stdout, err = run(["import-checkpoint", tmp_path / "orig" / "msae_checkpoint.pth",
                             "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    model = SPARC.load(tmp_path / "m")
    x = {s: torch.nn.functional.normalize(torch.randn(5, d), dim=1) for s, d in ref.streams.items()}
    ref.eval(), model.eval()
    a, b = ref(x), model(x)
    for s in ref.names:
        assert torch.equal(a.codes[s].dense(), b.codes[s].dense())
        assert torch.equal(a.recons[s], b.recons[s])
    code, stdout, _ = run(["info", tmp_path / "orig" / "msae_checkpoint.pth"], capsys)
    assert code == 0 and "topk_type" in stdout


def test_corrupt_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = run(["import-checkpoint", bad, "--out", tmp_path / "m", "--topk", "global", "--k", "4"], capsys)
    assert code == 2 and "cannot read" in err and not (tmp_path / "m").exists()

    model = SPARC({"a": 4}, SPARCConfig(n_latents=8, k=2))
    model.save(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run(["info", tmp_path / "model"], capsys)
    assert code == 2 and "truncated or corrupt" in err


def test_import_h5(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    for name, d in (("dino", 6), ("clip_txt", 4)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["features"] = rng.normal(size=(50, d)).astype(np.float32)
    code, stdout, err = run(["import-h5", "--stream", f"dino={tmp_path / 'dino.h5'}",
                             f"clip_txt={tmp_path / 'clip_txt.h5'}", "--out", tmp_path / "store"], capsys)
    assert code == 0, err
    code, stdout, _ = run(["info", tmp_path / "store"], capsys)
    assert code == 0 and "dino" in stdout and "50" in stdout

    code, _, err = run(["import-h5", "--stream", "dino", "--out", tmp_path / "s2"], capsys)
    assert code == 2 and "NAME=FILE.h5" in err

    # Split fractions: every group in test; bad fractions refused before anything is written.
    code, _, err = run(["import-h5", "--stream", f"dino={tmp_path / 'dino.h5'}", "--out", tmp_path / "s3",
                        "--splits", "0,0,1", "--split-seed", "3"], capsys)
    assert code == 0, err
    from sparc.data import FeatureStore

    store = FeatureStore.open(tmp_path / "s3")
    assert len(store.split_rows("test")) == 50 and len(store.split_rows("train")) == 0
    for bad, message in (("0.5,0.5", "three fractions TRAIN,VAL,TEST"), ("0.5,0.4,0.2", "must sum to 1")):
        code, _, err = run(["import-h5", "--stream", f"dino={tmp_path / 'dino.h5'}", "--out", tmp_path / "s4",
                            "--splits", bad], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "s4").exists()


@pytest.mark.slow
def test_the_installed_command_runs(tmp_path):
    # The console script itself (not just main()): --help of every subcommand works.
    for sub in ("", "train", "import-h5", "import-checkpoint", "info"):
        args = [sys.executable, "-m", "sparc.cli.main", *([sub] if sub else []), "--help"]
        proc = subprocess.run(args, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "usage: sparc" in proc.stdout


LIGHT = """
import json, sys
from sparc.cli.main import main
codes = []
for args in (["--help"], ["train", "--help"], ["eval", "/nonexistent"], ["query", "/nonexistent", "--text", "a"],
             ["train", "/nonexistent", "--out", "/nonexistent/run"], ["train", "--nosuch", "x"]):
    try:
        codes.append(main(args))
    except SystemExit as e:
        codes.append(e.code)
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules, "numba": "numba" in sys.modules}))
"""


def test_help_and_failing_commands_answer_without_loading_pytorch():
    # What makes `sparc --help` and a mistyped path answer in well under a second.
    done = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 2, 2, 2, 2], "torch": False, "numba": False}
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: /nonexistent holds no sparc model (needs config.json and model.safetensors); pass a run directory "
        "written by 'sparc train' or 'sparc import-checkpoint' (a run still training: sparc.train.rundir.load_model "
        "reads its checkpoint)"] * 2 + [
        "error: no feature store at '/nonexistent' (directory not found); check the path",
        "error: sparc train has no flag --nosuch; see sparc train --help"]


def test_an_unknown_flag_is_named_in_one_line(store, tmp_path, capsys):
    code, _, err = run(["train", store, "--out", tmp_path / "r", "--nosuch", "3"], capsys)
    assert code == 2 and err == "error: sparc train has no flag --nosuch; see sparc train --help\n"
    code, _, err = run(["eval", tmp_path, "--splitt=test"], capsys)
    assert code == 2 and err == "error: sparc eval has no flag --splitt; see sparc eval --help\n"
    with pytest.raises(SystemExit) as e:  # tyro's own message when no flag is unknown
        main(["train", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "STORE" in capsys.readouterr().err
