"""Rows/s of BatchLoader over a synthetic memory-mapped store (not a test).

Builds a store of random features (default 200k rows, streams 1024/768/768) in a
temporary directory, once as float32 and once as float16, warms the page cache with
one epoch, then times full epochs of the train split at batch 256.

    python benchmarks/store_throughput.py [--rows 200000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sparc.data import BatchLoader, FeatureStore, RowMeta, StoreWriter

DIMS = {"dino": 1024, "clip_img": 768, "clip_txt": 768}


def build(path: Path, n_rows: int, dtype: str, batch: int = 8192) -> FeatureStore:
    """Write ``n_rows`` random rows (one group per 5 rows, like captions per image)."""
    rng = np.random.default_rng(0)
    with StoreWriter(path, DIMS, dtype=dtype) as w:
        for a in range(0, n_rows, batch):
            n = min(batch, n_rows - a)
            feats = {name: rng.standard_normal((n, d), dtype=np.float32) for name, d in DIMS.items()}
            w.append(feats, [RowMeta(str(i), group_id=str(i // 5)) for i in range(a, a + n)])
    return FeatureStore.open(path)


def time_epochs(store: FeatureStore, epochs: int, **kw) -> float:
    """Rows/s over ``epochs`` full epochs after one warm-up epoch."""
    loader = BatchLoader(store, split="train", batch_size=256, **kw)
    for _ in loader:  # warm the page cache and allocator
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += next(iter(batch.values())).shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, rows {args.rows:,}, dims {DIMS}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            t0 = time.perf_counter()
            store = build(Path(tmp) / dtype, args.rows, dtype)
            t_build = time.perf_counter() - t0
            rate = time_epochs(store, args.epochs)
            rate_ns = time_epochs(store, args.epochs, shuffle=False)
            print(
                f"{dtype}: build {args.rows / t_build:,.0f} rows/s; "
                f"load (train split, batch 256) shuffled {rate:,.0f} rows/s, "
                f"unshuffled {rate_ns:,.0f} rows/s"
            )


if __name__ == "__main__":
    main()
