#!/usr/bin/env python
"""``sparc train`` end to end against the bare training step, in samples per second.

Builds (once, cached) a synthetic feature store of 200,000 rows with streams 1024/768/768
(the store of ``benchmarks/eval.py``), then, one after the other on the same machine:

  bare  -- the training step alone, as ``benchmarks/train_step.py`` times it: the same
           batch over and over, ``SPARCAdam``, default kernels and selection;
  train -- ``sparc train STORE --max-steps N`` in a child process: loading and L2-
           normalising batches from the memory-mapped store, the step, metrics, the
           progress bar, the final checkpoint; its rate is read from the ``time`` field of
           its metrics records (first record after the warm-up to the last);
  bare  -- again, so load that changed during the run shows.

Target (BENCHMARKS.md): ``sparc train`` within 10% of the bare step's samples/s.

Usage::

    python benchmarks/train_loop.py                 # 200,000 rows, 300 steps
    python benchmarks/train_loop.py --steps 600 --rows 400000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"dino": 1024, "clip_img": 768, "clip_txt": 768}
TARGET = 0.90  # train's samples/s at least this fraction of the bare step's


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic store")
    p.add_argument("--steps", type=int, default=300, help="steps of sparc train")
    p.add_argument("--warmup", type=int, default=20, help="steps left out of both rates")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sparc-train-loop-bench",
                   help="where the store is built once and kept")
    return p.parse_args(argv)


def store_for(args) -> Path:
    path = args.cache / f"store-{args.rows}-{'-'.join(map(str, DIMS.values()))}"
    if not (path / "manifest.json").exists():
        spec = importlib.util.spec_from_file_location("eval_benchmark", ROOT / "benchmarks" / "eval.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        args.cache.mkdir(parents=True, exist_ok=True)
        mod.build_store(path, args.rows, DIMS, test_fraction=0.05)
    return path


def bare_rate(args, steps: int) -> float:
    """Samples/s of the bare step (median over ``steps`` after the warm-up)."""
    code = f"""
import time, statistics, torch, torch.nn.functional as F
from sparc.process import keep_freed_memory
keep_freed_memory()
from sparc.model import SPARC, SPARCConfig
from sparc.model.engine import StepEngine
from sparc.train.optim import SPARCAdam
torch.manual_seed(0)
dims = {DIMS!r}
m = SPARC(dims, SPARCConfig()).train()
engine = StepEngine(m)
opt = SPARCAdam(m, lr=1e-4, engine=engine, in_backward=True)  # as the trainer (one process)
x = {{s: F.normalize(torch.randn({args.batch_size}, d), dim=1) for s, d in dims.items()}}
times = []
for i in range({args.warmup} + {steps}):
    t = time.perf_counter()
    m(x, engine=engine).losses.total.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t)
print({args.batch_size} / statistics.median(times[{args.warmup}:]))
"""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "1")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.split()[-1])


def train_rate(args, store: Path) -> tuple[float, float]:
    """(samples/s between the first metrics record after the warm-up and the last, wall s)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "sparc", "train", str(store), "--out", str(run),
               "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--log-every", "10",
               "--checkpoint-every", str(10 * args.steps), "--no-validate"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if "time" in r and r.get("split") != "val" and r["step"] >= args.warmup]
    first, last = steps[0], steps[-1]
    return (last["step"] - first["step"]) * args.batch_size / (last["time"] - first["time"]), wall


def main(argv=None) -> int:
    args = parse_args(argv)
    store = store_for(args)
    print(f"store {store} ({args.rows:,} rows), batch {args.batch_size}, {args.steps} steps of sparc train")
    before = bare_rate(args, steps=40)
    rate, wall = train_rate(args, store)
    after = bare_rate(args, steps=40)
    bare = statistics.mean([before, after])
    print(f"\nbare step     {before:8.0f} samples/s before, {after:8.0f} after (mean {bare:.0f})")
    print(f"sparc train   {rate:8.0f} samples/s (steps {args.warmup}..{args.steps}; {wall:.0f} s wall "
          "including start-up and the final save)")
    ratio = rate / bare
    print(f"train / bare = {ratio:.3f}  target: >= {TARGET:g}  {'met' if ratio >= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
