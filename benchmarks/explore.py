#!/usr/bin/env python
"""Time the latent statistics and the report: wall time, peak memory (RSS) and report size.

Two measurements, each command in a child process (``os.wait4`` gives its peak RSS):

- ``--demo DIR`` — the demo's SPARC run (``DIR/runs/sparc`` from ``sparc demo --out
  DIR``): ``sparc stats`` and ``sparc names`` recomputed from scratch on all the emoji,
  then ``sparc report`` (thumbnails included), against the target of 2 minutes for
  statistics + report;
- paper scale (default) — the synthetic store of ``benchmarks/eval.py`` (about 126,000
  test rows, streams 1024/768/768, multi-label rows over a 600-label hierarchy) and a
  RANDOMLY INITIALISED model with L = 8,192, k = 64 (the cost does not depend on
  training): ``sparc stats`` on the test split against the targets of 10 minutes and
  8 GB, then ``sparc report`` of its 8,192 latents (its size; rows have no images), and,
  when Chromium and Playwright are here, how long the report takes to open, sort and
  filter in headless Chromium.

Usage::

    python benchmarks/explore.py --demo sparc-demo        # after 'sparc demo --out sparc-demo'
    python benchmarks/explore.py                          # paper scale (store cached in /tmp)
    python benchmarks/explore.py --test-rows 20000        # a quicker look

Peak RSS includes the pages of the memory-mapped feature files the pass touched
(file-backed, reclaimable): an upper bound on what the command needs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATS_SECONDS, STATS_BYTES, DEMO_SECONDS = 600, 8 * 1024**3, 120


CPU_SECONDS: list[float] = []
"""CPU seconds (user + system) of each command run, in order."""


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``cmd`` in a child process (its CPU seconds
    go to :data:`CPU_SECONDS`: on a shared machine they say more than the wall time)."""
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd[3]} failed with status {code}")
    CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)
    print(f"  {wall:.1f} s wall, {CPU_SECONDS[-1]:.1f} s CPU, peak RSS {usage.ru_maxrss / 1024**2:.2f} GB", flush=True)
    return wall, usage.ru_maxrss * 1024


def sparc(*args: str) -> list[str]:
    return [sys.executable, "-m", "sparc.cli.main", *args]


def browser_timing(index: Path, n_latents: int) -> dict | None:
    """Seconds to open the report and to sort / filter its latent table in headless Chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if exe is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page()
        t0 = time.perf_counter()
        page.goto(index.resolve().as_uri())
        page.wait_for_selector("#latent-body tr")
        opened = time.perf_counter() - t0
        key = page.locator("#latent-head th").nth(4).get_attribute("data-key")
        t0 = time.perf_counter()
        page.click(f"th[data-key='{key}']")
        page.wait_for_function("document.querySelector('#latent-head th:nth-child(5)').textContent.includes('▼')")
        sort = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.fill("#filter", "12")
        page.wait_for_function("document.getElementById('count').textContent.startsWith('1 of')")
        filt = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.goto(index.resolve().as_uri() + f"#latent/{n_latents // 2}")
        page.wait_for_selector(".stream .rows")
        latent = time.perf_counter() - t0
        browser.close()
    return {"open_s": round(opened, 2), "sort_s": round(sort, 3), "filter_s": round(filt, 3),
            "latent_page_s": round(latent, 2)}


def size_of(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def demo(args) -> dict:
    run_dir = args.demo / "runs" / "sparc"
    if not (run_dir / "model.safetensors").exists():
        raise SystemExit(f"{run_dir} holds no finished run; run 'sparc demo --out {args.demo}' first")
    out = args.workdir / "demo-report"
    t_stats, m_stats = run(sparc("stats", str(run_dir), "--split", "all", "--recompute", "--no-progress"))
    t_names, m_names = run(sparc("names", str(run_dir), "--split", "all", "--no-progress"))
    t_report, m_report = run(sparc("report", str(run_dir), "--split", "all", "--out", str(out), "--no-progress"))
    size, files = size_of(out)
    total = t_stats + t_names + t_report
    print()
    print(f"demo ({run_dir}): stats {t_stats:.1f} s, names {t_names:.1f} s, report {t_report:.1f} s; "
          f"total {total:.1f} s (target ≤ {DEMO_SECONDS} s: {'met' if total <= DEMO_SECONDS else 'MISSED'})")
    print(f"peak RSS {max(m_stats, m_names, m_report) / 1024**3:.2f} GB; report {size / 1e6:.1f} MB in {files} files")
    return {"stats_s": round(t_stats, 1), "names_s": round(t_names, 1), "report_s": round(t_report, 1),
            "total_s": round(total, 1), "peak_rss_bytes": max(m_stats, m_names, m_report),
            "report_bytes": size, "report_files": files}


def paper_scale(args) -> dict:
    spec = importlib.util.spec_from_file_location("eval_bench", ROOT / "benchmarks" / "eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    dims = dict(zip(("dino", "clip_img", "clip_txt"), (int(d) for d in args.dims.split(","))))
    test_fraction = 0.84
    n_rows = int(round(args.test_rows / test_fraction))
    work = args.workdir
    store = work / f"store-{n_rows}-{'-'.join(map(str, dims.values()))}"
    if not (store / "manifest.json").exists():
        bench.build_store(store, n_rows, dims, test_fraction)
    model = work / f"model-L{args.n_latents}-k{args.k}-{'-'.join(map(str, dims.values()))}"
    if not (model / "model.safetensors").exists():
        sys.path.insert(0, str(ROOT / "src"))
        import torch

        from sparc.model import SPARC, SPARCConfig

        torch.manual_seed(0)
        SPARC(dims, SPARCConfig(n_latents=args.n_latents, k=args.k)).save(model)  # random init
    shutil.rmtree(model / "explore-test", ignore_errors=True)
    wall, peak = run(sparc("stats", str(model), "--store", str(store), "--split", "test", "--no-progress"))
    stats = json.loads((model / "explore-test" / "stats.json").read_text())
    print()
    print(f"statistics of {stats['n_rows']:,} rows × {len(dims)} streams ({args.dims}), L={args.n_latents}, "
          f"k={args.k}, both encodings, random-init model")
    print(f"wall time  {wall:7.1f} s   (target ≤ {STATS_SECONDS} s: {'met' if wall <= STATS_SECONDS else 'MISSED'})")
    print(f"peak RSS   {peak / 1024**3:7.2f} GB  (target ≤ {STATS_BYTES / 1024**3:.0f} GB: "
          f"{'met' if peak <= STATS_BYTES else 'MISSED'})")
    figures = {"n_rows": stats["n_rows"], "n_latents": args.n_latents, "k": args.k, "stats_wall_s": round(wall, 1),
               "stats_pass_s": stats["seconds"], "stats_peak_rss_bytes": peak,
               "stats_file_bytes": (model / "explore-test" / "stats.safetensors").stat().st_size}
    if not args.no_report:
        out = work / "report-8192"
        t_report, m_report = run(sparc("report", str(model), "--store", str(store), "--split", "test",
                                       "--out", str(out), "--no-progress"))
        size, files = size_of(out)
        index = (out / "index.html").stat().st_size
        print(f"report of {args.n_latents:,} latents: {t_report:.1f} s, peak RSS {m_report / 1024**3:.2f} GB, "
              f"{size / 1e6:.1f} MB in {files} files (index.html {index / 1e6:.1f} MB)")
        figures.update({"report_s": round(t_report, 1), "report_peak_rss_bytes": m_report, "report_bytes": size,
                        "report_files": files, "index_bytes": index})
        timing = browser_timing(out / "index.html", args.n_latents)
        if timing:
            print("headless Chromium: " + ", ".join(f"{k} {v}" for k, v in timing.items()))
            figures["browser"] = timing
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--demo", type=Path, help="a demo output folder: time stats + report of its SPARC run")
    p.add_argument("--test-rows", type=int, default=126_000, help="rows of the test split, about (paper scale)")
    p.add_argument("--dims", default="1024,768,768")
    p.add_argument("--n-latents", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--no-report", action="store_true", help="paper scale: statistics only")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/sparc-eval-bench"))
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    figures = demo(args) if args.demo else paper_scale(args)
    figures["cpu_seconds"] = [round(c, 1) for c in CPU_SECONDS]
    figures["machine"] = f"{os.cpu_count()} CPUs"
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
