#!/usr/bin/env python
"""Training on little data: the paper's defaults against settings that give enough steps.

A store of 150 rows (3 streams of 96/64/48 dims, each row two of 16 concepts through a
random linear map per stream, plus noise; 119 training rows), 256 latents, k = 8, trained
by ``sparc train`` with each setting below; prints the steps taken and the last
validation loss and NMSE per stream (README, "Training on little data")::

    python experiments/small_data.py [--out /tmp/small-data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "paper's defaults (batch 256, lr 1e-4), 30 epochs": ["--epochs", "30"],
    "batch 32, lr 1e-3, 30 epochs": ["--batch-size", "32", "--lr", "1e-3", "--epochs", "30"],
    "batch 8, lr 1e-3, 30 epochs (what the warning suggests)": ["--batch-size", "8", "--lr", "1e-3", "--epochs", "30"],
    "batch 16, lr 1e-3, 75 epochs": ["--batch-size", "16", "--lr", "1e-3", "--epochs", "75"],
    "batch 32, lr 1e-3, 250 epochs": ["--batch-size", "32", "--lr", "1e-3", "--epochs", "250"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/sparc-small-data"))
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.synthetic import make_store

    store = args.out / "store"
    shutil.rmtree(args.out, ignore_errors=True)
    make_store(store, n_rows=150, dims={"a": 96, "b": 64, "c": 48})
    print("| setting | steps | val loss | val NMSE a / b / c |\n|---|---|---|---|")
    for i, (name, flags) in enumerate(SETTINGS.items()):
        out = args.out / f"run{i}"
        done = subprocess.run([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out),
                               "--n-latents", "256", "--k", "8", "--no-progress", *flags], capture_output=True,
                              text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(done.stderr.strip().splitlines()[-1])
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        steps = max(r["step"] for r in records if r.get("split") != "val")
        val = [r for r in records if r.get("split") == "val"][-1]
        nmse = " / ".join(f"{val[f'nmse/{s}']:.3f}" for s in "abc")
        print(f"| {name} | {steps:,} | {val['loss']:.3f} | {nmse} |", flush=True)


if __name__ == "__main__":
    main()
