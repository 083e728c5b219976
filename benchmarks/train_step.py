#!/usr/bin/env python
"""Time one SPARC training step: the efficient model against the dense original and the floor.

Measures, side by side in one run, the median milliseconds of one full training step
(forward, backward, decoder constraint, fused Adam step, zero_grad) of

  (a) sparc  -- ``sparc.model.SPARC``, the efficient formulation (docs/method.md §4);
  (b) dense  -- ``DenseSPARC`` from ``tests/oracle.py``, the literal dense formulation as
                the original code computes it (every logit matrix and every decode dense);
  (c) floor  -- one B×D×L GEMM (x_cat @ W_encᵀ) plus one fused Adam step over parameters
                of exactly sparc's shapes: work no formulation of the step can avoid.

and, beside them, (d) the encoder GEMM alone (x_cat @ W_encᵀ in the run's dtype) with
its fraction of the device's matmul peak (measured in the same run by a large square
product of the same dtype).

Targets (BENCHMARKS.md): on the CPU, (a) at least 8× faster than (b) (6× with latents
dead), and (a) within 1.3× of (c); on a GPU at batch 4,096, (a) at least 10× (b)'s
samples/s and within 1.5× of (d).

Before timing, (a) and (b) are run on the same first batch and their losses compared, so
the comparison is of the same maths. The three are timed interleaved (round-robin), so
load from elsewhere on the machine slows them alike; the minimum is reported beside the
median and p90 as the estimate least affected by such noise.

Usage::

    python benchmarks/train_step.py                      # paper configuration
    python benchmarks/train_step.py --dead-fraction 0.1  # with AuxK active
    python benchmarks/train_step.py --profile            # + top ops of (a)
    python benchmarks/train_step.py --no-thp             # without transparent huge pages
    python benchmarks/train_step.py --device cuda --dtype bfloat16 --batch-size 4096
    python benchmarks/train_step.py --device cuda --autocast   # sparc under bf16 autocast
    python benchmarks/train_step.py --methods sparc,batchtopk,matryoshka --skip-dense
                                                         # other methods' steps beside SPARC's

With ``--methods``, each method's step (``sparc train --method``) is timed on every path,
interleaved with the others, from the same weights and batch; its loss is checked
against the dense oracle first, and its step is reported against SPARC's on the same
path (target on the CPU: BatchTopK and Matryoshka within 1.5x of SPARC).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_VS_DENSE = 8.0  # (b)/(a) must be at least this
TARGET_VS_DENSE_DEAD = 6.0  # ... with latents dead (AuxK on)
TARGET_VS_FLOOR = 1.3  # (a)/(c) must be at most this
TARGET_VS_DENSE_GPU = 10.0  # on a GPU at batch 4,096: (b)/(a) at least this
TARGET_VS_GEMM_GPU = 1.5  # ... and (a)/(d) at most this
TARGET_METHOD_VS_SPARC = 1.5  # another method's step over SPARC's, on the CPU, at most this
DTYPES = ("float32", "bfloat16", "float16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="the models' parameter dtype (sparc, dense and floor alike)")
    p.add_argument("--autocast", action="store_true",
                   help="run sparc's forward under bf16 autocast (sparc train --autocast)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-latents", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--auxk", type=int, default=64, help="k_aux of the AuxK loss")
    p.add_argument("--dims", default="1024,768,768", help="comma-separated stream dimensions")
    p.add_argument("--topk", choices=("global", "local"), default="global",
                   help="the selection rule of the 'sparc' contender (local: the local-TopK baseline)")
    p.add_argument("--methods", default="sparc",
                   help="comma-separated methods to time side by side (sparc train --method): sparc, local, "
                        "no-cross, batchtopk, batchtopk-local, matryoshka; matryoshka with its default prefixes "
                        "(L/16, L/4, L)")
    p.add_argument("--dead-fraction", type=float, default=0.0,
                   help="fraction of latents (per stream) held dead before every step, so AuxK runs")
    p.add_argument("--steps", type=int, default=20, help="measured steps of sparc and the floor")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps of sparc and the floor")
    p.add_argument("--dense-steps", type=int, default=5, help="measured steps of the dense formulation")
    p.add_argument("--dense-warmup", type=int, default=1, help="warm-up steps of the dense formulation")
    p.add_argument("--skip-dense", action="store_true", help="do not time the (slow) dense formulation")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paths", default=None,
                   help="comma-separated paths of sparc to time: pytorch (PyTorch kernels), fused "
                        "(numba kernels, CPU), triton (Triton kernels, CUDA), each with +bf16 for the "
                        "certified bf16 selection (e.g. fused+bf16); default: all that can run here")
    p.add_argument("--no-thp", action="store_true",
                   help="do not back large tensors with transparent huge pages (for comparison)")
    p.add_argument("--keep-freed", choices=("on", "off"), default="on",
                   help="keep freed memory in the heap for reuse (sparc.process.keep_freed_memory, "
                        "as the sparc command does)")
    p.add_argument("--profile", action="store_true",
                   help="print torch.profiler's top-15 ops of sparc by self time")
    p.add_argument("--peak-size", type=int, default=None,
                   help="side of the square GEMM that measures the matmul peak (default: 8192 on a "
                        "GPU, 2048 on the CPU)")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.paths is not None:
        args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    args.dims = [int(d) for d in args.dims.split(",") if d.strip()]
    args.methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip())) or ["sparc"]
    if not args.dims or min(args.dims) < 1:
        p.error("--dims needs positive integers, e.g. 1024,768,768")
    if not 0.0 <= args.dead_fraction <= 1.0:
        p.error("--dead-fraction must lie in [0, 1]")
    if args.steps < 1 or args.dense_steps < 1 or args.warmup < 0 or args.dense_warmup < 0:
        p.error("steps must be >= 1 and warm-up >= 0")
    return args


# ---------------------------------------------------------------------- helpers


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarise(times_s: list[float], faults: list[int]) -> dict:
    ms = [t * 1e3 for t in times_s]
    return {"median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90),
            "min_ms": min(ms), "steps": len(ms), "all_ms": ms,
            "median_page_faults": statistics.median(faults)}


class Contender:
    """One thing to time: ``before()`` runs untimed before each ``step()``."""

    def __init__(self, step, *, warmup: int, steps: int, before=None, sync=None):
        self.step, self.before, self.warmup, self.steps = step, before, warmup, steps
        self.sync = sync or (lambda: None)  # a GPU's queue drained before and after
        self.times: list[float] = []
        self.faults: list[int] = []  # minor page faults: fresh memory touched by the step

    def run_once(self, n: int) -> None:
        if self.before is not None:
            self.before()
        self.sync()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        self.step()
        self.sync()
        dt = time.perf_counter() - t0
        if n >= self.warmup:
            self.times.append(dt)
            self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)


def time_interleaved(contenders: dict[str, Contender]) -> dict[str, dict]:
    """Time all contenders round-robin, each one's runs spread evenly over the rounds.

    Interleaving makes a burst of load from elsewhere on the machine slow all of them
    alike, instead of spoiling whichever happened to be running; the ratios stay fair.
    """
    total = {k: c.warmup + c.steps for k, c in contenders.items()}
    rounds = max(total.values())
    schedule: list[list[tuple[str, int]]] = [[] for _ in range(rounds)]
    for k, n in total.items():
        for j in range(n):
            schedule[j * rounds // n].append((k, j))
    for entries in schedule:
        for k, j in entries:
            contenders[k].run_once(j)
    return {k: summarise(c.times, c.faults) for k, c in contenders.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_first(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "n/a"


def anon_huge_pages_mib() -> float | None:
    """Memory of this process backed by transparent huge pages, MiB (Linux only)."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_paths(torch, device) -> list[str]:
    """Every sparc path that can run on ``device``, each with and without the certified
    bf16 selection where bf16 products are fast there."""
    from sparc.model import certified, kernels

    fast = kernels.resolve("auto", device, torch.float32)
    paths = ["pytorch"] if fast == "pytorch" else ["pytorch", fast]
    probe = torch.empty(1, device=device)
    if certified.resolve("auto", probe.device.type) == "on":
        paths.append(f"{paths[-1]}+bf16")
    return paths


def measured_peak_tflops(torch, device, dtype, n: int, sync) -> float:
    """TFLOP/s of the best of three n×n×n products: the matmul peak reachable here."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(4):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def machine_facts(torch, threads: int, device) -> dict:
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "python": platform.python_version(),
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "thp_defrag": read_first("/sys/kernel/mm/transparent_hugepage/defrag"),
        "thp_sysfs": read_first("/sys/kernel/mm/transparent_hugepage/enabled"),
    }


# ---------------------------------------------------------------------- the three contenders


def main(argv=None) -> int:
    args = parse_args(argv)
    # PyTorch's CPU allocator reads THP_MEM_ALLOC_ENABLE once, at the first allocation: when
    # set, buffers of 2 MiB and more are 2 MiB-aligned and madvise(MADV_HUGEPAGE)'d, so they
    # are backed by transparent huge pages. The step allocates fresh gradient buffers (tens
    # of MiB each) every iteration; with 4 KiB pages the kernel takes a page fault (and
    # zeroes a page) per 4 KiB on first touch, and huge pages remove most of that cost
    # (a fresh zeroed 84 MB tensor: ~6 ms with THP, ~29 ms without, on the 2-core
    # reference machine). It must be set before torch is imported; --no-thp compares.
    if "torch" in sys.modules:
        print("note: torch was imported before the THP setting; it may not take effect")
    if args.no_thp:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "0"
    else:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

    import torch
    import torch.nn.functional as F

    from sparc.process import keep_freed_memory

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}: no CUDA device is available here (torch {torch.__version__}); "
              "run on a machine with a GPU, or use --device cpu", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and args.keep_freed == "on":
        keep_freed_memory()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sys.path.insert(0, str(ROOT / "tests"))
    from oracle import DenseSPARC  # tests/oracle.py
    from sparc.model import SPARC, SPARCConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(args.seed)

    names = [f"s{i}" for i in range(len(args.dims))]
    streams = dict(zip(names, args.dims))
    D, L, B = sum(args.dims), args.n_latents, args.batch_size
    cfg = SPARCConfig(n_latents=L, k=args.k, auxk=args.auxk, topk=args.topk)
    # Each method's config: 'sparc' is the config above (its --topk), the others by name.
    cfgs = {m: cfg if m == "sparc" else SPARCConfig(n_latents=L, k=args.k, auxk=args.auxk, method=m)
            for m in args.methods}
    facts = machine_facts(torch, threads, device)
    if args.paths is None:
        args.paths = default_paths(torch, device)

    print(f"SPARC training-step benchmark ({args.dtype}{', sparc under bf16 autocast' if args.autocast else ''}, "
          f"{facts['device']})")
    print(f"  machine : {facts['cpu']} | {facts['logical_cpus']} logical CPUs | "
          f"torch {facts['torch']} ({facts['cpu_capability']}) | {threads} threads"
          + (f" | {facts['device']}, CUDA {facts['cuda']}" if device.type == "cuda" else ""))
    print(f"  THP     : THP_MEM_ALLOC_ENABLE={facts['THP_MEM_ALLOC_ENABLE']} | "
          f"sysfs enabled: {facts['thp_sysfs']}")
    print(f"  config  : streams {'/'.join(map(str, args.dims))} (D={D}), L={L}, k={args.k}, "
          f"auxk={args.auxk}, batch {B}, topk={args.topk}, dead fraction {args.dead_fraction}"
          + (f", methods {', '.join(args.methods)}" if args.methods != ["sparc"] else ""))

    # One normalised random batch, shared by all three.
    batch = {s: F.normalize(torch.randn(B, d), dim=1).to(device, dtype) for s, d in streams.items()}
    x_cat = torch.cat([batch[s] for s in names], dim=1)

    model = SPARC(streams, cfg, device=device, dtype=dtype).train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  params  : {n_params / 1e6:.2f}M in {len(list(model.parameters()))} tensors")

    # Dead latents: a fixed random subset per stream, re-marked before every step (the
    # subset would otherwise shrink as dead latents fire, and the rest would stay alive).
    n_dead = round(args.dead_fraction * L)
    gen = torch.Generator().manual_seed(args.seed + 1)
    dead_sl = torch.zeros(len(names), L, dtype=torch.bool)
    for i in range(len(names)):
        dead_sl[i, torch.randperm(L, generator=gen)[:n_dead]] = True
    dead_counts = torch.where(dead_sl, cfg.dead_after_samples, 0).to(torch.int64).to(device)

    def mark_dead(counters):
        counters.copy_(dead_counts)

    mark_dead(model.samples_since_fired)
    dense = DenseSPARC(model).train()
    mark_dead(dense.counters)

    # ---- same maths? compare every loss term on the first batch
    with torch.no_grad():
        out = model(batch)
        _, _, _, d_total, d_self, d_cross, d_aux = dense(batch)
    pairs = [("total", out.losses.total, d_total)]
    pairs += [(f"nmse/{s}", out.losses.self_nmse[s], d_self[s]) for s in names]
    pairs += [(f"cross/{t}<-{s}", v, d_cross[(t, s)]) for (t, s), v in out.losses.cross_nmse.items()]
    pairs += [(f"auxk/{s}", out.losses.auxk[s], d_aux[s]) for s in names]
    diffs = {name: abs(float(a) - float(b)) for name, a, b in pairs}
    max_diff = max(diffs.values())
    worst = max(diffs, key=diffs.get)
    auxk_on = any(float(out.losses.auxk[s]) != 0.0 for s in names)
    same = max_diff <= (1e-5 if dtype == torch.float32 else 3e-2) * max(1.0, abs(float(d_total)))
    print(f"  check   : loss sparc {float(out.losses.total):.6f} vs dense {float(d_total):.6f}; "
          f"max |diff| over {len(pairs)} loss terms = {max_diff:.2e} ({worst})"
          f"{'' if same else f'  <-- WARNING: not {args.dtype} round-off'}; AuxK active: {auxk_on}")
    del out
    # The other methods against the oracle too (it covers BatchTopK's training choice
    # and Matryoshka's prefixes), from the same weights.
    method_base = {}
    for m in args.methods:
        if m == "sparc":
            method_base[m] = model
            continue
        mm = SPARC(streams, cfgs[m], device=device, dtype=dtype).train()
        mm.load_state_dict(model.state_dict(), strict=False)  # BatchTopK's threshold starts unset
        method_base[m] = mm
        dm = DenseSPARC(mm).train()
        with torch.no_grad():
            mo = mm(batch)
            d_m = float(dm(batch)[3])
        diff = abs(float(mo.losses.total) - d_m)
        ok = diff <= (1e-5 if dtype == torch.float32 else 3e-2) * max(1.0, abs(d_m))
        mark_dead(mm.samples_since_fired)
        print(f"  check   : {m}: loss {float(mo.losses.total):.6f} vs dense {d_m:.6f}, |diff| {diff:.2e}"
              f"{'' if ok else f'  <-- WARNING: not {args.dtype} round-off'}")
        del mo, dm
    print()

    # ---- (a) sparc, one contender per kernel path, each with its own copy of the model
    from sparc.model.engine import StepEngine
    from sparc.train.optim import SPARCAdam

    def sparc_contender(path: str, method: str = "sparc"):
        # Each contender its own model on its own path, with its own training engine.
        m = SPARC(streams, cfgs[method], device=device, dtype=dtype).train()
        m.load_state_dict(method_base[method].state_dict())
        m.use_kernels(path.split("+")[0])
        engine = StepEngine(m, bf16_select="on" if path.endswith("+bf16") else "off")
        # The trainer's optimizer: Adam + the decoder constraint, the tables stepped in backward.
        opt = SPARCAdam(m, lr=1e-4, engine=engine, in_backward=True)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast):
                out = m(batch, engine=engine)
            out.losses.total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return m, step

    sparc_models, sparc_steps = {}, {}
    for method in args.methods:
        for path in args.paths:
            key = path if method == "sparc" else f"{method}:{path}"
            sparc_models[key], sparc_steps[key] = sparc_contender(path, method)
    first = args.paths[-1] if "sparc" in args.methods else f"{args.methods[0]}:{args.paths[-1]}"
    step_sparc = sparc_steps[first]

    # ---- (b) the literal dense formulation
    opt_b = torch.optim.Adam(dense.parameters(), lr=1e-4, fused=True)

    def step_dense():
        total = dense(batch)[3]
        total.backward()
        dense.constrain_and_normalize_(opt_b)
        opt_b.zero_grad(set_to_none=True)

    # ---- (c) the floor: one B×D×L GEMM + one fused Adam step over sparc's parameter shapes
    floor_params = [torch.nn.Parameter(torch.randn_like(p)) for p in model.parameters()]
    for p in floor_params:
        p.grad = torch.randn_like(p)
    W_floor = next(p for p in floor_params if tuple(p.shape) == (L, D))
    opt_c = torch.optim.Adam(floor_params, lr=1e-4, fused=True)

    def step_floor():
        with torch.no_grad():
            y = x_cat @ W_floor.t()
        opt_c.step()
        return y

    # ---- (d) the encoder GEMM alone, and the matmul peak it is measured against
    def step_gemm():
        with torch.no_grad():
            return x_cat @ W_floor.t()

    peak_n = args.peak_size or (8192 if device.type == "cuda" else 2048)
    peak_tflops = measured_peak_tflops(torch, device, dtype, peak_n, sync)

    def contender_key(key: str) -> str:  # 'sparc/fused', 'batchtopk/fused', ...
        return f"sparc/{key}" if ":" not in key else "{}/{}".format(*key.split(":"))

    contenders = {
        contender_key(key): Contender(sparc_steps[key], warmup=args.warmup, steps=args.steps,
                                      before=lambda m=sparc_models[key]: mark_dead(m.samples_since_fired), sync=sync)
        for key in sparc_steps
    }
    contenders["floor"] = Contender(step_floor, warmup=args.warmup, steps=args.steps, sync=sync)
    contenders["gemm"] = Contender(step_gemm, warmup=args.warmup, steps=args.steps, sync=sync)
    before_a = contenders[contender_key(first)].before
    if not args.skip_dense:
        contenders["dense"] = Contender(
            step_dense, warmup=args.dense_warmup, steps=args.dense_steps,
            before=lambda: mark_dead(dense.counters), sync=sync,
        )
    print("timing, interleaved round-robin: " + ", ".join(
        f"{k} {c.warmup} warm-up + {c.steps} steps" for k, c in contenders.items()) + " ...",
        flush=True)
    results = time_interleaved(contenders)
    thp_mib = anon_huge_pages_mib()

    profile_table = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        n_prof = max(3, min(args.steps, 10))
        print(f"profiling (a) sparc: {n_prof} steps ...", flush=True)
        on_gpu = device.type == "cuda"
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])) as prof:
            for _ in range(n_prof):
                before_a()
                step_sparc()
            sync()
        profile_table = prof.key_averages().table(
            sort_by="self_cuda_time_total" if on_gpu else "self_cpu_time_total", row_limit=15)

    # ---- report
    labels = {contender_key(key): f"(a) {contender_key(key).split('/')[0]}, {key.split(':')[-1]}"
              for key in sparc_steps}
    labels.update({"dense": "(b) dense (original)", "floor": "(c) floor (GEMM + Adam)",
                   "gemm": "(d) encoder GEMM"})
    print()
    print(f"{'':26s}{'median ms':>11s}{'p90 ms':>10s}{'min ms':>10s}{'samples/s':>11s}{'steps':>7s}"
          f"{'page faults/step':>18s}")
    for key in labels:
        if key in results:
            r = results[key]
            r["samples_per_s"] = B / (r["median_ms"] / 1e3)
            print(f"{labels[key]:26s}{r['median_ms']:11.1f}{r['p90_ms']:10.1f}"
                  f"{r['min_ms']:10.1f}{r['samples_per_s']:11.0f}{r['steps']:7d}{r['median_page_faults']:18.0f}")
    for key in labels:
        r = results.get(key)
        if r is not None:
            slow = [t for t in r["all_ms"] if t > 2 * r["min_ms"]]
            if slow:
                print(f"note: {len(slow)} of {r['steps']} {key} steps took over 2x its fastest "
                      f"(up to {max(slow):.0f} ms): machine noise; if the median is affected, rerun")
    gemm_tflops = 2 * B * D * L / (results["gemm"]["median_ms"] / 1e3) / 1e12
    print(f"\nencoder GEMM {B}x{D}x{L} ({args.dtype}): {gemm_tflops:.2f} TFLOP/s = "
          f"{gemm_tflops / peak_tflops:.0%} of the {peak_tflops:.2f} TFLOP/s measured peak ({peak_n}^3 product)")
    print()
    ratios = {"gemm_tflops": gemm_tflops, "peak_tflops": peak_tflops, "gemm_fraction_of_peak": gemm_tflops / peak_tflops}
    on_gpu = device.type == "cuda"
    target_dense = TARGET_VS_DENSE_GPU if on_gpu else (
        TARGET_VS_DENSE_DEAD if args.dead_fraction > 0 else TARGET_VS_DENSE)
    for m in args.methods:
        if m == "sparc" or "sparc" not in args.methods:
            continue
        for path in args.paths:
            r = ratios[f"{m}_over_sparc/{path}"] = results[f"{m}/{path}"]["median_ms"] / results[f"sparc/{path}"]["median_ms"]
            r_min = ratios[f"{m}_over_sparc_min/{path}"] = (results[f"{m}/{path}"]["min_ms"]
                                                           / results[f"sparc/{path}"]["min_ms"])
            print(f"{m}/sparc {path:12s} = {r:6.2f}x  (of minima {r_min:6.2f}x)"
                  + ("" if on_gpu else f"  target: <= {TARGET_METHOD_VS_SPARC:g}x  "
                     f"{'met' if r <= TARGET_METHOD_VS_SPARC else 'NOT met'}"))
    for path in args.paths if "sparc" in args.methods else []:
        a, a_min = results[f"sparc/{path}"]["median_ms"], results[f"sparc/{path}"]["min_ms"]
        if "dense" in results:
            r = ratios[f"dense_over_sparc/{path}"] = results["dense"]["median_ms"] / a
            r_min = ratios[f"dense_over_sparc_min/{path}"] = results["dense"]["min_ms"] / a_min
            ok = r >= target_dense
            print(f"(b)/(a) {path:12s} = {r:6.2f}x  (of minima {r_min:6.2f}x)"
                  f"  target: >= {target_dense:g}x  {'met' if ok else 'NOT met'}")
        r = ratios[f"sparc_over_floor/{path}"] = a / results["floor"]["median_ms"]
        r_min = ratios[f"sparc_over_floor_min/{path}"] = a_min / results["floor"]["min_ms"]
        ok = r <= TARGET_VS_FLOOR
        print(f"(a)/(c) {path:12s} = {r:6.2f}x  (of minima {r_min:6.2f}x)"
              + ("" if on_gpu else f"  target: <= {TARGET_VS_FLOOR:g}x  {'met' if ok else 'NOT met'}"))
        r = ratios[f"sparc_over_gemm/{path}"] = a / results["gemm"]["median_ms"]
        print(f"(a)/(d) {path:12s} = {r:6.2f}x"
              + (f"  target: <= {TARGET_VS_GEMM_GPU:g}x  {'met' if r <= TARGET_VS_GEMM_GPU else 'NOT met'}"
                 if on_gpu else ""))
    if on_gpu and B != 4096:
        print("(the GPU targets are stated at batch 4,096)")
    if thp_mib is not None:
        print(f"\nanonymous huge pages in use after timing: {thp_mib:.0f} MiB")

    if profile_table is not None:
        print("\n(a) sparc: top-15 ops by self CPU time\n")
        print(profile_table)

    if args.json:
        report = {
            "config": {"dims": args.dims, "n_latents": L, "k": args.k, "auxk": args.auxk,
                       "batch_size": B, "topk": args.topk, "methods": args.methods,
                       "dead_fraction": args.dead_fraction,
                       "device": str(device), "dtype": args.dtype, "autocast": args.autocast,
                       "thp": not args.no_thp, "seed": args.seed},
            "machine": facts,
            "loss_check": {"max_abs_diff": max_diff, "worst_term": worst, "terms": diffs,
                           "auxk_active": auxk_on},
            "results": results,
            "ratios": ratios,
            "targets": {"dense_over_sparc_at_least": target_dense,
                        "sparc_over_floor_at_most": None if on_gpu else TARGET_VS_FLOOR,
                        "sparc_over_gemm_at_most": TARGET_VS_GEMM_GPU if on_gpu else None},
            "anon_huge_pages_mib": thp_mib,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
