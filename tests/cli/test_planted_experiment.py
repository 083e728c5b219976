"""experiments/planted/run.py: every method trained on a planted store and tabulated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "planted" / "run.py"


@pytest.mark.slow
def test_script_trains_scores_and_tabulates_every_method(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[2] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--epochs", "1", "--rows", "600",
           "--ks", "3"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.count("| 3 |") == 5 and "SPARC (global TopK + cross)" in table and "local TopK + cross" in table
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["SPARC (global TopK + cross)", "local TopK + cross",
                                                      "global TopK, no cross", "USAE (one source drawn per step)",
                                                      "SPARC + 12 exclusive latents per stream"]
    assert results["train"]["epochs"] == 1 and results["store"]["rows"] == 600
    assert "reused" not in done.stdout
    # A rerun reuses the finished runs.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("(reused)") == 5
    # --methods: only those.
    only = subprocess.run([*cmd, "--methods", "usae"], env=env, capture_output=True, text=True)
    assert only.returncode == 0 and only.stdout.count("(reused)") == 1 and "USAE" in only.stdout
