"""Data-parallel training over loopback: two CPU processes (gloo) against one.

``--batch-size`` is the batch of one optimizer step over all ranks, so 2 ranks × B rows
each run the same steps as 1 process × 2B rows. The store's training split (161 rows)
ends on a batch of 1 row, so one rank then has none.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparc.data import FeatureStore
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig, new_spec, open_run
from sparc.train.metrics import read_metrics
from synthetic import make_store

WORKER = Path(__file__).with_name("dist_worker.py")
MODEL = SPARCConfig(n_latents=32, k=4, dead_after_samples=64)
TRAIN = TrainConfig(batch_size=16, epochs=2, progress=False, resample_after_samples=200, resample_every=3,
                    pre_bias_init="mean", checkpoint_every=2, log_every=1)
FLAGS = ["--n-latents", "32", "--k", "4", "--dead-after-samples", "64", "--batch-size", "16", "--epochs", "2",
         "--no-progress", "--resample-after-samples", "200", "--resample-every", "3", "--pre-bias-init", "mean",
         "--checkpoint-every", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = make_store(tmp_path_factory.mktemp("s") / "store", n_rows=203)
    assert len(FeatureStore.open(path).split_rows("train")) % 16 == 1  # a last batch of one row
    return path


@pytest.fixture(scope="module")
def single(store, tmp_path_factory):
    """The reference: one process, the same global batch."""
    out = tmp_path_factory.mktemp("one") / "run"
    with open_run(out, new_spec(FeatureStore.open(store), MODEL, TRAIN)) as run:
        run.trainer.fit()
    return out


def _child_env() -> dict[str, str]:
    # A rank that aborts in native code shows its Python stack.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONFAULTHANDLER": "1"}


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return {**_child_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
            "RANK": str(rank), "LOCAL_RANK": str(rank)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_model(a: Path, b: Path) -> None:
    ma, mb = SPARC.load(a), SPARC.load(b)
    for (name, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        if name == "samples_since_fired":
            assert torch.equal(x, y), "dead-latent counters differ"
        else:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


def test_two_ranks_under_torchrun_equal_one_process(store, single, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "sparc", "train", str(store), "--out", str(out), *FLAGS],
                          capture_output=True, text=True, timeout=300, env=_child_env())
    assert proc.returncode == 0, proc.stderr[-8000:]
    assert proc.stdout.count("trained 22 steps on 2 ranks") == 1  # rank 0 speaks for the run
    assert_same_model(single, out)
    # The metrics are those of the whole batch, logged once.
    mine, ref = read_metrics(out / "metrics.jsonl"), read_metrics(single / "metrics.jsonl")
    assert [r["step"] for r in mine] == [r["step"] for r in ref]
    for r, s in zip(mine, ref):
        assert r.keys() == s.keys()
        for k in r:
            if isinstance(s[k], str):  # e.g. "split": "val"
                assert r[k] == s[k], k
            elif k != "time":
                assert r[k] == pytest.approx(s[k], rel=1e-4, abs=1e-6), k
    assert json.loads((out / "train_config.json").read_text())["train"]["batch_size"] == 16


def test_a_failing_rank_stops_the_other_and_the_run_resumes_on_one(store, single, tmp_path):
    out, port = tmp_path / "run", _free_port()
    args = ["train", str(store), "--out", str(out), *FLAGS, "--dist-timeout", "60"]
    start = time.monotonic()
    # Rank 1 raises at its 7th batch, after the checkpoint of step 6.
    error_files = [tmp_path / f"error-{r}.json" for r in (0, 1)]  # as torchrun gives each rank
    procs = [subprocess.Popen([sys.executable, str(WORKER), "1", "7", *args],
                              env={**_env(r, 2, port), "TORCHELASTIC_ERROR_FILE": str(error_files[r])},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.monotonic() - start
    assert procs[1].returncode == 2 and outputs[1][1].strip() == "error: simulated failure of rank 1 at its batch 7"
    # torchrun's closing summary shows each failed rank's error file: sparc's line, not a traceback.
    shown = json.loads(error_files[1].read_text())["message"]["extraInfo"]["py_callstack"]
    assert shown == "error: simulated failure of rank 1 at its batch 7"
    assert procs[0].returncode == 3, outputs[0][1][-2000:]
    message = outputs[0][1].strip().splitlines()[-1]
    assert message.startswith("error: rank 0 of 2 lost the others (") and "last checkpoint" in message
    assert elapsed < 60  # well within the timeout: the failed rank's closed connections end the wait
    # Nothing half-written: the checkpoint of step 6, no final model, the lock released.
    assert not (out / "model.safetensors").exists()
    assert not (out.parent / f".{out.name}.lock").exists()
    # Resumed by one process, the run ends where the uninterrupted one did.
    with open_run(out, resume=True) as run:
        assert run.trainer.step_count == 6
        run.trainer.fit()
    assert_same_model(single, out)


def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(store, tmp_path):
    out, port = tmp_path / "run", _free_port()
    args = ["train", str(store), "--out", str(out), *FLAGS, "--epochs", "500", "--checkpoint-every", "0"]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "-1", "-1", *args], env=_env(r, 2, port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 5):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the run did not start"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # as torchrun stops its workers
    time.sleep(0.5)
    procs[1].send_signal(signal.SIGTERM)  # its echo: the same request
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [130, 130], outputs
    steps = {int(o[1].strip().splitlines()[-1].split("interrupted at step ")[1].split(";")[0]) for o in outputs}
    assert len(steps) == 1
    with open_run(out, resume=True) as run:  # rank 0 wrote the checkpoint of that step
        assert run.trainer.step_count == steps.pop()
