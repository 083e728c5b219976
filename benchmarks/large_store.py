"""Training on a feature store larger than the machine's memory.

    python benchmarks/large_store.py write STORE --gib 26          # float16 synthetic rows, in parts
    python benchmarks/large_store.py train STORE --out RUN         # one epoch; peak RSS and rows/s

``write`` builds the store part by part (each part written by StoreWriter, then appended
with ``append_store``, so the store grows the way a user's would), with rows that mix 4
of 512 random directions per stream plus noise (something for the model to learn).
``train`` runs ``sparc train`` in a child process and samples its memory every 0.5 s
from /proc: peak RSS (VmHWM), and the peak of its anonymous memory (RssAnon, the part
that is not page cache of the memory-mapped store), beside the training's own rows per
second from metrics.jsonl. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DIMS = {"img": 1024, "txt": 1024}


def write(store: Path, gib: float, part_rows: int, chunk: int, seed: int) -> None:
    from sparc.data import FeatureStore, RowMeta, StoreWriter
    from sparc.data.join import append_store

    row_bytes = 2 * sum(DIMS.values())
    n_rows = int(gib * 2**30 / row_bytes) + 1
    rng = np.random.default_rng(seed)
    basis = {s: rng.normal(size=(512, d)).astype(np.float32) for s, d in DIMS.items()}
    t0, done, part = time.perf_counter(), 0, 0
    while done < n_rows:
        rows = min(part_rows, n_rows - done)
        target = store if part == 0 else store.parent / f".{store.name}.part{part}"
        with StoreWriter(target, DIMS, dtype="float16", split_fractions=(0.98, 0.01, 0.01)) as w:
            for a in range(0, rows, chunk):
                n = min(chunk, rows - a)
                concepts = rng.integers(0, 512, size=(n, 4))
                weights = rng.uniform(0.5, 1.5, size=(n, 4)).astype(np.float32)
                feats = {}
                for s, d in DIMS.items():
                    x = rng.standard_normal((n, d), dtype=np.float32)
                    x *= 0.1
                    for j in range(4):
                        x += weights[:, j : j + 1] * basis[s][concepts[:, j]]
                    feats[s] = x
                ids = range(done + a, done + a + n)
                w.append(feats, [RowMeta(row_id=f"r{i}") for i in ids])
        if part:
            append_store(store, target)
            shutil.rmtree(target)  # the store keeps its hard links to the files
        done += rows
        part += 1
        print(f"part {part}: {done:,}/{n_rows:,} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    s = FeatureStore.open(store)
    print(json.dumps({"store": str(store), "rows": s.n_rows, "parts": s.n_parts,
                      "gib": round(s.n_rows * row_bytes / 2**30, 2), "seconds": round(time.perf_counter() - t0, 1)}))


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def train(store: Path, out: Path, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out), "--overwrite",
           "--epochs", "1", "--no-progress", "--checkpoint-every", "0", "--log-every", "20", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}

    def sample() -> None:
        while proc.poll() is None:
            try:
                now = _status(proc.pid)
            except (OSError, ValueError):
                break
            for k in peak:
                peak[k] = max(peak[k], now.get(k, 0))
            # Also on disk while it runs, for a run stopped before its end.
            (out.parent / f"{out.name}.memory.json").write_text(json.dumps({**peak, "s": time.perf_counter() - t0}))
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    thread.join()
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if "split" not in r]
    first, last = steps[0], steps[-1]
    rate = (last["samples"] - first["samples"]) / (last["time"] - first["time"])
    from sparc.data import FeatureStore

    s = FeatureStore.open(store)
    row_bytes = sum(s.features(n).dtype.itemsize * d for n, d in s.streams.items())
    print(json.dumps({
        "exit": code, "command": " ".join(cmd[1:]), "store_gib": round(s.n_rows * row_bytes / 2**30, 2),
        "store_rows": s.n_rows, "parts": s.n_parts, "steps": last["step"], "samples": last["samples"],
        "rows_per_s": round(rate), "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak["VmHWM"] / 2**30, 2), "peak_anon_gib": round(peak["RssAnon"] / 2**30, 3),
        "peak_file_backed_gib": round(peak["RssFile"] / 2**30, 2),
        "final": {k: v for k, v in last.items() if k.startswith(("loss", "nmse/"))},
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("write")
    w.add_argument("store", type=Path)
    w.add_argument("--gib", type=float, default=26.0)
    w.add_argument("--part-rows", type=int, default=600_000)
    w.add_argument("--chunk", type=int, default=32_768)
    w.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("store", type=Path)
    t.add_argument("--out", type=Path, required=True)
    args, extra = ap.parse_known_args()
    if args.what == "write":
        write(args.store, args.gib, args.part_rows, args.chunk, args.seed)
    else:
        train(args.store, args.out, extra)


if __name__ == "__main__":
    main()
