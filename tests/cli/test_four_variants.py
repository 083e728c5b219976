"""experiments/four_variants.sh: the paper's four models trained, evaluated and compared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic import make_store

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "four_variants.sh"
TRAIN = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--epochs", "1", "--no-progress"]


@pytest.mark.slow
def test_script_trains_evaluates_and_compares_the_four_models(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    store = make_store(tmp_path / "store", n_rows=160)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "EVAL_FLAGS": "--no-progress --no-plots --probe-epochs 1 --retrieval-queries 20"}
    cmd = ["bash", str(SCRIPT), str(store), str(tmp_path / "out"), *TRAIN]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "out" / "compare" / "compare.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["global + cross", "global, no cross", "local + cross", "local, no cross"]
    assert "Comparison of runs" in (tmp_path / "out" / "compare" / "compare.md").read_text()

    # A rerun keeps the finished runs and their evaluations and compares them again.
    weights = tmp_path / "out" / "local-nocross" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("trained already") == 4 and weights.stat().st_mtime_ns == before
    assert again.stdout.count("evaluated already") == 4


def test_script_without_arguments_says_how_to_call_it():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
