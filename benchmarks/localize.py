#!/usr/bin/env python
"""Time heatmaps: one EfficientNet-Lite0 map (target ≤ 2 s on the CPU), the batched maps
of the mosaic protocol, and the report's heatmaps.

In-process, with the models loaded once (loading is reported apart):

- **one map** — ``ImageMapper.maps`` of one 448×448 mosaic for a latent query and for a
  text query (``cross``, the prompt's features given), ``--repeat`` times: median and
  minimum wall and CPU seconds;
- **mosaics** — ``run_mosaics`` over ``--runs`` with ``--mosaics`` mosaics (the
  ``sparc localize`` run): its own breakdown (mosaic drawing, prompts, maps, scores);
- **report** — ``write_report_heatmaps`` of the first run with ``--max-latents`` latents
  (the demo's setting), into a copy of the run.

Usage::

    python benchmarks/localize.py --runs sparc-demo/runs/sparc sparc-demo/runs/local --mosaics 200
    python benchmarks/localize.py --runs runs/openmoji/*/ --mosaics 500 --skip-report
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def timed(fn, repeat: int):
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--mosaics", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--max-latents", type=int, default=256)
    ap.add_argument("--skip-mosaics", action="store_true")
    ap.add_argument("--skip-report", action="store_true")
    args = ap.parse_args()

    import torch

    from sparc.localize.heatmap import ImageMapper
    from sparc.localize.protocol_mosaics import MosaicSettings, make_mosaics, render_table, run_mosaics
    from sparc.localize.runs import Backbones, open_runs, text_streams
    from sparc.localize.targets import Query

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    t = time.perf_counter()
    runs, fs = open_runs(args.runs, args.store)
    bbs = Backbones(fs)
    mapper = ImageMapper(runs[0].model, "img", bbs.get("img"))
    ts = text_streams(runs[0].model, fs)[0]
    prompt = bbs.text_features(ts, ["grinning face"])[0]
    load = time.perf_counter() - t
    mosaic = make_mosaics(fs, MosaicSettings(mosaics=1, split="all"), 448)[0].image
    rows = []
    for name, query in [("latent", Query(latents=(1, 2, 3))),
                        ("text, cross", Query(text_stream=ts, text=prompt, target="cross"))]:
        med, best, cpu = timed(lambda q=query: mapper.maps([mosaic], [(0, q)]), args.repeat)
        rows.append(f"| one map, {name} query | {med:.3f} s | {best:.3f} s | {cpu:.3f} s |")
    print(f"\nloading the model, the image and the {ts} backbones: {load:.1f} s\n")
    print("| what | median wall | min wall | median CPU |\n|---|---|---|---|")
    print("\n".join(rows))

    if not args.skip_mosaics:
        w, c = time.perf_counter(), time.process_time()
        result, _, _ = run_mosaics(args.runs, MosaicSettings(mosaics=args.mosaics, progress=False), store=args.store)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        print(f"\nmosaics: {result.n_mosaics} mosaics × {len(args.runs)} runs, {result.n_pairs} prompts: "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU; breakdown {result.seconds}")
        print(render_table(result))

    if not args.skip_report:
        from sparc.explore import Explorer, StatsSettings
        from sparc.localize.report import ReportHeatmapSettings, write_report_heatmaps

        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            shutil.copytree(args.runs[0], run, ignore=shutil.ignore_patterns("heatmaps", "checkpoint"))
            ex = Explorer.open(run, args.store, stats_settings=StatsSettings(split="all", progress=False),
                               naming=None, reuse_any=True)
            w, c = time.perf_counter(), time.process_time()
            info = write_report_heatmaps(ex, ReportHeatmapSettings(max_latents=args.max_latents, progress=False))
            print(f"\nreport heatmaps ({args.max_latents} latents, 3 rows): {time.perf_counter() - w:.1f} s wall, "
                  f"{time.process_time() - c:.1f} s CPU; {info.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
