#!/usr/bin/env python
"""Training beside other work: the bare training step quiet and beside a competing load.

Each measurement is a fresh process running ``--steps`` training steps (forward,
backward with the tables stepped in backward, the optimizer's step) of a model of
``--size``; loaded runs start the competitor first and stop it after. Quiet and loaded
runs are interleaved, so drift of the host moves both alike. Printed per kernel path:
the quiet and loaded times of every run and the median and worst loaded/quiet ratios
(the target: the worst ≤ 2.5× on 2 cores; BENCHMARKS.md).

Loads:
  matmul  a PyTorch process running bursts of 512×512 products on its threads (what a
          notebook, an extraction or a second experiment does);
  python  a pure-Python busy loop (one core);
  train   a second training of the same size and path, started as the sparc command starts.

Usage::

    python benchmarks/contention.py                          # small model, fused and pytorch
    python benchmarks/contention.py --size paper --paths fused
    python benchmarks/contention.py --env SPARC_OPENMP=as-is   # as the process started (two runtimes, spinning)
    python benchmarks/contention.py --env GOMP_SPINCOUNT=1000   # try a setting in every child

Each measured process first does what the ``sparc`` command does at its start: it starts
itself again with one OpenMP runtime for PyTorch and numba, waiting passively
(src/sparc/openmp.py), unless ``SPARC_OPENMP=as-is``. The line of each path names the
runtimes the measured processes held and their waiting policy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "small": dict(dims=(96, 64, 48), n_latents=256, k=6, batch=256, steps=300),
    "paper": dict(dims=(1024, 768, 768), n_latents=8192, k=64, batch=256, steps=12),
}
COMPETITORS = {
    "matmul": "import time, torch\na = torch.randn(512, 512)\nwhile True:\n"
              "    for _ in range(20):\n        a @ a\n    time.sleep(0.005)\n",
    "python": "while True:\n    pass\n",
}


def child(size: str, path: str, steps: int) -> None:
    """Time ``steps`` training steps in this process; print the seconds, the OpenMP
    runtimes loaded and the waiting policy."""
    from sparc.openmp import loaded_runtimes, restart_with_one_runtime

    restart_with_one_runtime()  # as the sparc command starts
    import torch

    from sparc.model import SPARC, SPARCConfig
    from sparc.model.engine import StepEngine
    from sparc.train.optim import SPARCAdam

    if chunk := int(os.environ.get("CONTENTION_CHUNK", "0")):
        import numba

        numba.set_parallel_chunksize(chunk)  # numba's loops scheduled in chunks of this many iterations
    spec = SIZES[size]
    torch.manual_seed(0)
    dims = {f"s{i}": d for i, d in enumerate(spec["dims"])}
    model = SPARC(dims, SPARCConfig(n_latents=spec["n_latents"], k=spec["k"]))
    model.use_kernels(path)
    engine = StepEngine(model)  # as the trainer's (one process)
    opt = SPARCAdam(model, lr=1e-3, engine=engine, in_backward=True)
    x = {s: torch.nn.functional.normalize(torch.randn(spec["batch"], d), dim=1) for s, d in dims.items()}

    def step():
        model(x, engine=engine).losses.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t
    print(f"{elapsed:.4f} {len(loaded_runtimes())} {os.environ.get('OMP_WAIT_POLICY') or 'active'}")


def measure(size: str, path: str, steps: int, load: str | None, env: dict[str, str]) -> tuple[float, str]:
    competitor = None
    if load is not None:
        command = ([sys.executable, __file__, "--child", size, path, str(10**9)] if load == "train"
                   else [sys.executable, "-c", COMPETITORS[load]])
        # A second training runs with the measured one's settings; other loads as the user's own.
        competitor = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      env={**os.environ, **env} if load == "train" else None)
        time.sleep(6.0 if load == "train" else 1.0)  # let it start its threads (a training: its imports too)
    try:
        done = subprocess.run([sys.executable, __file__, "--child", size, path, str(steps)], env={**os.environ, **env},
                              capture_output=True, text=True, cwd=ROOT, timeout=1800)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if done.returncode != 0:
        raise SystemExit(f"the measured process failed: {done.stderr.strip().splitlines()[-1:]}")
    seconds, runtimes, policy = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), f"{runtimes} OpenMP runtime(s), waiting {policy.lower()}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", choices=tuple(SIZES), default="small")
    p.add_argument("--paths", default="fused,pytorch", help="comma-separated kernel paths")
    p.add_argument("--load", choices=(*COMPETITORS, "train"), default="matmul")
    p.add_argument("--runs", type=int, default=3, help="quiet and loaded runs of each path, interleaved")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default: the size's)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set in every measured process (e.g. OMP_WAIT_POLICY=PASSIVE)")
    p.add_argument("--chunk", type=int, default=0,
                   help="numba's parallel chunk size in the measured process (0: numba's default, static)")
    args = p.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    if args.chunk:
        env["CONTENTION_CHUNK"] = str(args.chunk)
    steps = args.steps or SIZES[args.size]["steps"]
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    print(f"contention: size {args.size} ({steps} steps a run), load {args.load}, {args.runs} runs, "
          f"{os.cpu_count()} CPUs, env {env or 'as is'}")
    for path in paths:
        quiet, loaded, seen = [], [], set()
        for _ in range(args.runs):
            for times, load in ((quiet, None), (loaded, args.load)):
                seconds, how = measure(args.size, path, steps, load, env)
                times.append(seconds)
                seen.add(how)
        ratios = [b / statistics.median(quiet) for b in loaded]
        print(f"{path:8s} quiet s {' '.join(f'{t:.2f}' for t in quiet)} | loaded s "
              f"{' '.join(f'{t:.2f}' for t in loaded)} | loaded/quiet median {statistics.median(ratios):.2f}x, "
              f"worst {max(ratios):.2f}x (target <= 2.5x); {', '.join(sorted(seen))}")


if __name__ == "__main__":
    main()
