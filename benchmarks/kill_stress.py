#!/usr/bin/env python
"""Kill a training with SIGKILL at random moments, resume it each time, and check that
it ends with the weights and metrics of an uninterrupted run, bit for bit.

Each round starts ``sparc train`` (fresh, then ``--resume``) in a child process and
kills it after a random delay, wherever it is: loading, stepping, logging, validating,
writing a checkpoint or swapping it into place. After the last kill the run is resumed to
the end and compared with a reference run of the same settings.

Usage::

    python benchmarks/kill_stress.py                 # 30 kills
    python benchmarks/kill_stress.py --kills 100 --seed 3
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--n-latents", "64", "--k", "4", "--batch-size", "32", "--epochs", "6", "--checkpoint-every", "3",
        "--log-every", "1", "--no-progress", "--auxk", "8", "--dead-after-samples", "96",
        "--resample-after-samples", "320", "--resample-every", "4"]


def sparc(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparc.cli.main", *args]


def records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def stress(workdir: Path, *, kills: int, seed: int, max_delay: float = 3.0, log=print) -> dict:
    """Run the experiment in ``workdir``; returns what it found (``equal`` is the verdict)."""
    sys.path.insert(0, str(ROOT))
    from tests.synthetic import make_store

    from sparc.model import SPARC

    store = make_store(workdir / "store", n_rows=400)
    reference, run = workdir / "reference", workdir / "run"
    subprocess.run(sparc("train", str(store), "--out", str(reference), *ARGS), check=True, capture_output=True)
    rng = random.Random(seed)
    killed = finished_early = 0
    for i in range(kills):
        resume = ["--resume"] if (run / "checkpoint").exists() or (run / ".checkpoint.old").exists() else [
            "--overwrite"]
        child = subprocess.Popen(sparc("train", str(store), "--out", str(run), *ARGS, *resume),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.05, max_delay)
        time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        _, err = child.communicate()
        if child.returncode not in (0, -signal.SIGKILL):
            raise RuntimeError(f"round {i}: sparc train exited {child.returncode}: {err.strip()}")
        if child.returncode == 0:
            finished_early += 1
            if (run / "model.safetensors").exists():
                break
        log(f"round {i + 1}/{kills}: killed after {delay:.2f} s")
    if not (run / "model.safetensors").exists():
        subprocess.run(sparc("train", str(store), "--out", str(run), *ARGS, "--resume"), check=True,
                       capture_output=True)
    a, b = SPARC.load(run), SPARC.load(reference)
    weights = all(x.equal(y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    metrics = records(run) == records(reference)
    return {"kills": killed, "finished_before_a_kill": finished_early, "weights_equal": weights,
            "metrics_equal": metrics, "equal": weights and metrics}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-delay", type=float, default=3.0, help="longest wait before a kill, seconds")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = stress(Path(tmp), kills=args.kills, seed=args.seed, max_delay=args.max_delay)
    print(json.dumps(result))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
