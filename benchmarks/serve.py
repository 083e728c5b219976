#!/usr/bin/env python
"""Latency of ``sparc serve``: text and image queries over HTTP, after start-up.

Starts the server on a run (as ``sparc serve`` does: the Explorer, its statistics and
names, every stream's backbone loaded and warmed once), in this process on a free
loopback port, then sends ``-n`` text queries (sentences no row has) and ``-n`` image
queries (row images of the store, uploaded as PNG files) one after another over HTTP,
and prints the median and worst round-trip latency of each kind against the targets of
issue 24: text ≤ 0.5 s, image ≤ 1 s on the CPU. Start-up (loading, and building the
report when it is missing) is timed apart.

Usage::

    python benchmarks/serve.py                            # the demo's run: sparc-demo/runs/sparc
    python benchmarks/serve.py runs/sparc -n 50           # another run
    python benchmarks/serve.py --report sparc-demo/report --json serve.json

Without ``--report`` the demo's ``sparc-demo/report`` is served when it exists, else a
report is built in a temporary folder (removed at the end; its time is reported).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from sparc.errors import SparcError

TARGETS = {"text": 0.5, "image": 1.0}
SENTENCES = [
    "a small animal sitting next to a red heart", "two people waving at each other on a beach",
    "a yellow fruit on a wooden table", "an old car driving through the rain at night",
    "a cat with a heart", "a blue flag flying over a castle", "someone cooking noodles in a pan",
    "a green tree in front of a mountain", "a clock showing midnight", "a smiling face wearing sunglasses",
    "a fish swimming among the rocks", "a musical instrument leaning on a chair",
]


def post(url: str, body: bytes, content_type: str) -> tuple[float, dict]:
    request = urllib.request.Request(url + "api/query", data=body, headers={"Content-Type": content_type})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SparcError(f"the server answered {e.code}: {e.read().decode(errors='replace')[:200]}") from None
    return time.perf_counter() - t0, answer


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def row_images(ex, n: int) -> list[bytes]:
    """PNG files of ``n`` row images of the store, spread over its rows."""
    import numpy as np

    from sparc.explore.sources import RowImages

    images, meta = RowImages(ex.store), ex.store.rows()
    out = []
    for r in np.linspace(0, len(meta) - 1, num=min(len(meta), 4 * n), dtype=int).tolist():
        im = images.load(meta[r])
        if im is not None:
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            out.append(buf.getvalue())
        if len(out) == n:
            break
    return out


def summary(kind: str, seconds: list[float], server: list[float]) -> dict:
    return {"kind": kind, "n": len(seconds), "median_s": statistics.median(seconds), "worst_s": max(seconds),
            "server_median_s": statistics.median(server), "target_s": TARGETS[kind],
            "meets_target": max(seconds) <= TARGETS[kind]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path, help="run directory (default: the demo's sparc-demo/runs/sparc)")
    p.add_argument("--demo", type=Path, default=Path("sparc-demo"), help="the demo's folder (sparc demo --out)")
    p.add_argument("--report", type=Path, help="report folder to serve (built there when missing)")
    p.add_argument("-n", type=int, default=20, help="queries of each kind")
    p.add_argument("--top", type=int, default=10, help="rows per stream in each answer")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    from sparc.explore import Explorer
    from sparc.explore.report import ReportSettings
    from sparc.explore.serve import LiveQueries, bind, make_app, prepare_report, require_web, start

    require_web()
    run = args.run or args.demo / "runs" / "sparc"
    if not run.is_dir():
        raise SparcError(f"no run at {run}: run 'sparc demo --out {args.demo}' or give a RUN")
    report = args.report or (args.demo / "report" if args.run is None and (args.demo / "report").is_dir() else None)
    with tempfile.TemporaryDirectory(prefix="sparc-serve-bench-") as tmp:
        t0 = time.perf_counter()
        ex = Explorer.open(run, reuse_any=True, log=lambda m: None)
        t_open = time.perf_counter() - t0
        report = prepare_report(ex, report or Path(tmp) / "report", ReportSettings(progress=False),
                                log=lambda m: None)
        t_report = time.perf_counter() - t0 - t_open
        live = LiveQueries(ex, report, top=args.top)
        t_start = time.perf_counter() - t0
        server = start(make_app(live, report), bind("127.0.0.1", 0))
        print(f"start-up {t_start:.1f} s (run, statistics, names {t_open:.1f} s; report {t_report:.1f} s; "
              f"backbones the rest); serving {server.url}")
        try:
            modalities = {m for m in live.modality.values()}
            results = []
            if "text" in modalities:
                times, inner = [], []
                for i in range(args.n):
                    text = f"{SENTENCES[i % len(SENTENCES)]} ({i})"
                    dt, answer = post(server.url, json.dumps({"text": text}).encode(), "application/json")
                    times.append(dt)
                    inner.append(answer["seconds"])
                results.append(summary("text", times, inner))
            if "image" in modalities:
                pngs = row_images(ex, args.n)
                if not pngs:
                    print("no row image could be read here: image queries skipped")
                times, inner = [], []
                for i in range(args.n if pngs else 0):
                    dt, answer = post(server.url, *multipart(f"{i}.png", pngs[i % len(pngs)]))
                    times.append(dt)
                    inner.append(answer["seconds"])
                if times:
                    results.append(summary("image", times, inner))
        finally:
            server.stop()
    for r in results:
        print(f"{r['kind']:>5} queries: {r['n']}, median {r['median_s']:.3f} s, worst {r['worst_s']:.3f} s "
              f"(in the server: median {r['server_median_s']:.3f} s); target ≤ {r['target_s']} s: "
              f"{'met' if r['meets_target'] else 'MISSED'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"run": str(run), "startup_s": t_start, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SparcError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
