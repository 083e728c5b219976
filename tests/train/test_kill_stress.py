"""SIGKILL at random moments, then resume: the weights and metrics of an uninterrupted
run, bit for bit (benchmarks/kill_stress.py runs the same with more kills)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "kill_stress.py"


@pytest.mark.slow
def test_random_kills_resume_to_the_uninterrupted_run(tmp_path):
    spec = importlib.util.spec_from_file_location("kill_stress", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.stress(tmp_path, kills=5, seed=1, log=lambda *_: None)
    assert result["kills"] >= 1 and result["runs_compared"] >= 1, result
    assert result["equal"], result
