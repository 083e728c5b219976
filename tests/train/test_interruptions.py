"""Interruptions at chosen points, in real processes killed with SIGKILL: every one
resumes to the weights of an uninterrupted run, with its metrics neither lost nor
repeated (docs/formats.md, "Writing safely")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from sparc.atomic import old_of
from sparc.cli.main import main
from sparc.model import SPARC
from sparc.train.rundir import load_model
from tests.synthetic import make_store

# 150 training rows (of 200) at batch 32: 5 steps an epoch (the last one short).
ARGS = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--epochs", "3", "--checkpoint-every", "5",
        "--log-every", "1", "--no-progress", "--auxk", "8", "--dead-after-samples", "64"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    """An uninterrupted run of ARGS."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", str(store), "--out", str(out), *ARGS]) == 0
    return out


KILL = "import os, signal\ndef die():\n    os.kill(os.getpid(), signal.SIGKILL)\n"


def run_killed(code: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``sparc`` in a child that first executes ``code``, which installs a call of
    ``die()`` (SIGKILL to itself) at the chosen point."""
    script = KILL + textwrap.dedent(code) + "\nimport sys\nfrom sparc.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2])


def assert_same_weights(a: Path, b: Path) -> None:
    ma, mb = SPARC.load(a), SPARC.load(b)
    for (name, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), name


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(a: Path, b: Path) -> None:
    def key(r):
        return {k: v for k, v in r.items() if k != "time"}

    assert [key(r) for r in records(a)] == [key(r) for r in records(b)]


def test_kill_between_the_two_renames_of_the_checkpoint_swap(store, reference, tmp_path):
    out = tmp_path / "run"
    # Die on the second os.replace of the second checkpoint's swap: checkpoint/ has been
    # moved aside to .checkpoint.old and the new one is not in place yet.
    proc = run_killed("""
        import sparc.atomic as atomic
        real, calls = atomic.os.replace, []
        def replace(src, dst):
            if str(dst).endswith("/checkpoint"):
                calls.append(dst)
                if len(calls) == 3:  # 1: first checkpoint; 2, 3: the second's two renames
                    die()
            return real(src, dst)
        atomic.os.replace = replace
    """, "train", str(store), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "checkpoint").exists() and old_of(out / "checkpoint").is_dir()
    # Readers use the previous checkpoint meanwhile; the resumed writer restores it.
    assert main(["info", str(out)]) == 0
    assert load_model(out) is not None
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert (out / "checkpoint").is_dir() and not old_of(out / "checkpoint").exists()
    assert_same_weights(out, reference)
    assert_same_metrics(out, reference)


def test_kill_during_validation_at_a_checkpoint_step(store, reference, tmp_path):
    out = tmp_path / "run"
    # Epoch 1 ends at step 5, which is also a checkpoint step: the checkpoint is written,
    # then validation starts and the process dies in it.
    proc = run_killed("""
        from sparc.train.trainer import Trainer
        real = Trainer.validate
        def validate(self):
            if self.step_count == 5:
                die()
            return real(self)
        Trainer.validate = validate
    """, "train", str(store), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not any(r.get("split") == "val" for r in records(out))
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert_same_metrics(out, reference)  # the epoch's validation record is there, once
    assert_same_weights(out, reference)


def test_kill_after_a_validation_record_before_the_next_checkpoint(store, reference, tmp_path):
    out = tmp_path / "run"
    proc = run_killed("""
        from sparc.train.trainer import Trainer
        real = Trainer.step
        def step(self, batch):
            if self.step_count == 7:  # past epoch 1's validation, before checkpoint 10
                die()
            return real(self, batch)
        Trainer.step = step
    """, "train", str(store), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert_same_metrics(out, reference)
    assert_same_weights(out, reference)


def test_cut_off_last_metrics_line_is_dropped_with_a_warning(store, reference, tmp_path, capsys):
    out = tmp_path / "run"
    proc = run_killed("""
        from sparc.train.metrics import MetricsLog
        real = MetricsLog.write
        def write(self, record):
            if record.get("step") == 8 and "split" not in record:
                with self.path.open("a") as f:
                    f.write('{"step": 8, "epo')  # the write is cut off mid-line
                die()
            return real(self, record)
        MetricsLog.write = write
    """, "train", str(store), "--out", str(out), *ARGS)
    assert proc.returncode == -signal.SIGKILL
    assert main(["info", str(out)]) == 0
    assert "cut-off last line" in capsys.readouterr().err
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert_same_metrics(out, reference)
    assert_same_weights(out, reference)


def test_stale_temporaries_of_killed_writers_are_removed(store, reference, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), *ARGS, "--max-steps", "5"]) == 0
    for stale in (out / ".checkpoint.abc123.tmp", out / ".model.safetensors.x1.tmp"):
        stale.mkdir()
        (stale / "junk").write_text("x")
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert not list(out.glob(".*.tmp"))


def test_sigint_stops_with_130_and_a_resume_command(store, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out),
                             *ARGS, "--epochs", "100000"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and "--resume" in err and "Traceback" not in err
    assert (out / "checkpoint").is_dir()


def test_sigint_during_start_up_is_a_clean_130(store, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out",
                             str(tmp_path / "run"), *ARGS], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # inside the imports of PyTorch and the command
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the command finished before the signal came")
    # 130, or death by SIGINT when the signal lands inside PyTorch's import (its shutdown
    # re-raises it): a shell reports 130 for both. Never a traceback.
    assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err
    assert err.strip() == "interrupted" or "--resume" in err, err


def test_a_second_writer_is_refused_naming_the_first(store, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out),
                              *ARGS, "--epochs", "100000"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for extra in (["--resume"], ["--overwrite"], []):
            second = subprocess.run([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out),
                                     *ARGS, *extra], capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"being written by process {first.pid} (sparc train)" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    # The first run was not disturbed: its metrics are in order, once each, and its
    # checkpoint loads.
    assert first.returncode == 130
    steps = [r["step"] for r in records(out) if r.get("split") != "val"]
    assert steps == sorted(set(steps)) == list(range(1, len(steps) + 1))
    assert SPARC.load(out / "checkpoint") is not None


def test_a_write_failure_is_one_line_and_keeps_the_previous_checkpoint(store, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), *ARGS, "--max-steps", "5"]) == 0
    before = (out / "checkpoint" / "model.safetensors").read_bytes()
    # A file-size limit stands in for a full disk: every write past 2 KB fails.
    proc = subprocess.run(
        [sys.executable, "-c", "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048));"
         "from sparc.cli.main import main; sys.exit(main(sys.argv[1:]))",
         "train", str(store), "--out", str(out), "--resume"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "could not write" in proc.stderr, proc.stderr
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == before
    assert SPARC.load(out / "checkpoint") is not None
    assert not list(out.glob(".*.tmp"))


def test_a_read_only_output_is_one_line(store, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out",
                               str(parent / "run"), *ARGS], capture_output=True, text=True)
    finally:
        parent.chmod(0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
