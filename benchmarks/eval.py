#!/usr/bin/env python
"""Time ``sparc eval`` at paper scale: wall time and peak memory (RSS).

Builds (once, cached) a synthetic feature store whose test split has about 126,000 rows
(the paper's Open Images test split) with streams 1024/768/768, multi-label rows over a
three-level label hierarchy (6 → 60 → 600 labels), about 1.12 rows per image group and
a few duplicated captions; saves a RANDOMLY INITIALISED SPARC model (L = 8192, k = 64 —
the cost of evaluation does not depend on training, only the figures do); then runs
``sparc eval`` in a child process and reports its wall time, the time of each phase and
its peak resident memory, against the targets (< 10 min, < 8 GB on the 2-core machine).

Usage::

    python benchmarks/eval.py                       # paper scale (store cached in /tmp)
    python benchmarks/eval.py --test-rows 20000     # a quicker look
    python benchmarks/eval.py --eval-args --retrieval-queries 0   # flags passed to sparc eval

Peak RSS is the child's ``ru_maxrss``: it includes the pages of the memory-mapped
feature files the evaluation has touched (file-backed, reclaimable), so it is an upper
bound on the memory the evaluation itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TARGET_SECONDS = 600
TARGET_BYTES = 8 * 1024**3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--test-rows", type=int, default=126_000, help="rows of the evaluated (test) split, about")
    p.add_argument("--dims", default="1024,768,768")
    p.add_argument("--n-latents", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sparc-eval-bench"))
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--eval-args", nargs=argparse.REMAINDER, default=[],
                   help="extra flags for 'sparc eval' (everything after this)")
    return p.parse_args(argv)


def hierarchy() -> dict[str, str | None]:
    h: dict[str, str | None] = {}
    for a in range(6):
        h[f"top{a}"] = None
        for b in range(10):
            h[f"mid{a}.{b}"] = f"top{a}"
            for c in range(10):
                h[f"leaf{a}.{b}.{c}"] = f"mid{a}.{b}"
    return h


def build_store(path: Path, n_rows: int, dims: dict[str, int], test_fraction: float) -> None:
    """Rows mix the directions of their 2-8 leaf labels (per stream) plus noise."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from sparc.data import RowMeta, StoreWriter

    rng = np.random.default_rng(0)
    leaves = [k for k in hierarchy() if k.startswith("leaf")]
    basis = {s: rng.normal(size=(len(leaves), d)).astype(np.float32) for s, d in dims.items()}
    f_other = (1 - test_fraction) / 2
    group, r = 0, 0
    t0 = time.perf_counter()
    with StoreWriter(path, dims, split_fractions=(f_other * 1.25, f_other * 0.75, test_fraction),
                     label_hierarchy=hierarchy(), dataset={"name": "synthetic eval benchmark"}) as w:
        while r < n_rows:
            B = min(8192, n_rows - r)
            n_lab = rng.integers(2, 9, size=B)
            lab = [np.sort(rng.choice(len(leaves), n, replace=False)) for n in n_lab]
            w_mix = np.zeros((B, len(leaves)), dtype=np.float32)
            for i, ls in enumerate(lab):
                w_mix[i, ls] = rng.uniform(0.5, 1.5, size=len(ls))
            feats = {s: w_mix @ basis[s] + 0.5 * rng.normal(size=(B, d)).astype(np.float32)
                     for s, d in dims.items()}
            meta = []
            for i in range(B):
                if rng.random() > 0.12:  # ~1.12 rows per image, as the paper's test split
                    group += 1
                cap = f"a photo of {leaves[lab[i][0]]}" if rng.random() < 0.02 else f"caption {r + i}"
                meta.append(RowMeta(row_id=f"r{r + i}", group_id=f"img{group}", image=f"img{group}.jpg",
                                    caption=cap, labels=tuple(leaves[j] for j in lab[i])))
            w.append(feats, meta)
            r += B
    print(f"built {path} ({n_rows:,} rows) in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    dims = dict(zip(("dino", "clip_img", "clip_txt"), (int(d) for d in args.dims.split(","))))
    test_fraction = 0.84
    n_rows = int(round(args.test_rows / test_fraction))
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{n_rows}-{'-'.join(map(str, dims.values()))}"
    store = work / f"store-{tag}"
    if not (store / "manifest.json").exists():
        build_store(store, n_rows, dims, test_fraction)
    run = work / f"model-L{args.n_latents}-k{args.k}-{'-'.join(map(str, dims.values()))}"
    if not (run / "model.safetensors").exists():
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
        import torch

        from sparc.model import SPARC, SPARCConfig

        torch.manual_seed(0)
        SPARC(dims, SPARCConfig(n_latents=args.n_latents, k=args.k)).save(run)  # random init
    out = work / "eval-out"
    cmd = [sys.executable, "-m", "sparc.cli.main", "eval", str(run), "--store", str(store),
           "--out", str(out), *args.eval_args]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"sparc eval failed with status {code}", file=sys.stderr)
        return code
    peak = usage.ru_maxrss * 1024  # kB on Linux
    report = json.loads((out / "eval.json").read_text())
    figures = {
        "n_rows": report["n_rows"], "streams": report["streams"],
        "n_latents": args.n_latents, "k": args.k,
        "retrieval_queries": report["retrieval"]["n_queries"],
        "wall_seconds": round(wall, 1), "phase_seconds": report["seconds"],
        "peak_rss_bytes": peak, "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    print()
    print(f"evaluated {report['n_rows']:,} rows × {len(dims)} streams ({args.dims}), L={args.n_latents}, "
          f"k={args.k}, {figures['retrieval_queries']:,} retrieval queries, random-init model")
    print("phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items()))
    ok_t = wall < TARGET_SECONDS
    ok_m = peak < TARGET_BYTES
    print(f"wall time  {wall:7.1f} s   (target < {TARGET_SECONDS} s: {'met' if ok_t else 'MISSED'})")
    print(f"peak RSS   {peak / 1024**3:7.2f} GB  (target < {TARGET_BYTES / 1024**3:.0f} GB: {'met' if ok_m else 'MISSED'})")
    print(f"CPU time   {figures['cpu_seconds']:7.1f} s on {figures['machine']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
