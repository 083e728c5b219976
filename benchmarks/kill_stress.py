#!/usr/bin/env python
"""Kill a training with SIGKILL at random moments, resume it each time, and check that
it ends with the weights and metrics of an uninterrupted run, bit for bit.

Each round starts ``sparc train`` (fresh, then ``--resume``) in a child process and
kills it after a random delay, wherever it is: loading, stepping, logging, validating,
writing a checkpoint or swapping it into place. Every run that reaches its end (between
kills, and the last one, resumed to the end) is compared with a reference run of the
same settings, then the next run starts afresh.

Usage::

    python benchmarks/kill_stress.py                 # 30 kills
    python benchmarks/kill_stress.py --kills 100 --seed 3
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
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


def stress(workdir: Path, *, kills: int, seed: int, max_delay: float | None = None, log=print) -> dict:
    """Run the experiment in ``workdir``; returns what it found (``equal`` is the verdict).

    Each kill comes after a random delay of up to ``max_delay`` seconds (default: the
    wall time of the uninterrupted reference run, start-up included)."""
    sys.path.insert(0, str(ROOT))
    from tests.synthetic import make_store

    from sparc.model import SPARC

    store = make_store(workdir / "store", n_rows=400)
    reference, run = workdir / "reference", workdir / "run"
    t0 = time.perf_counter()
    subprocess.run(sparc("train", str(store), "--out", str(reference), *ARGS), check=True, capture_output=True)
    # Kill anywhere in a run's life, however slow the machine is today.
    longest = max_delay if max_delay is not None else time.perf_counter() - t0
    rng = random.Random(seed)
    killed, runs, failures = 0, 0, []

    def how() -> list[str]:
        return ["--resume"] if (run / "checkpoint").exists() or (run / ".checkpoint.old").exists() else [
            "--overwrite"]

    def check() -> None:
        # A run that got to its end: compare it, then start the next one afresh.
        nonlocal runs
        runs += 1
        a, b = SPARC.load(run), SPARC.load(reference)
        if not all(x.equal(y) for x, y in zip(a.state_dict().values(), b.state_dict().values())):
            failures.append(f"run {runs}: weights differ")
        if records(run) != records(reference):
            failures.append(f"run {runs}: metrics differ")
        shutil.rmtree(run)

    for i in range(kills):
        child = subprocess.Popen(sparc("train", str(store), "--out", str(run), *ARGS, *how()),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.05, longest)
        time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        _, err = child.communicate()
        if child.returncode not in (0, -signal.SIGKILL):
            raise RuntimeError(f"round {i}: sparc train exited {child.returncode}: {err.strip()}")
        log(f"round {i + 1}/{kills}: " + ("finished" if child.returncode == 0 else f"killed after {delay:.2f} s"))
        if child.returncode == 0:
            check()
    subprocess.run(sparc("train", str(store), "--out", str(run), *ARGS, *how()), check=True, capture_output=True)
    check()
    return {"kills": killed, "runs_compared": runs, "longest_delay_s": round(longest, 2), "failures": failures,
            "equal": not failures}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-delay", type=float, default=None,
                   help="longest wait before a kill, seconds (default: the reference run's wall time)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = stress(Path(tmp), kills=args.kills, seed=args.seed, max_delay=args.max_delay)
    print(json.dumps(result))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
