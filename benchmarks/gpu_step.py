#!/usr/bin/env python
"""Time the SPARC training step on a GPU, per kernel path, dtype and batch size.

A stop-gap until ``benchmarks/train_step.py`` takes a device (it times on the CPU only):
one full step — forward, backward, ``SPARCAdam`` step (decoder constraint included),
``zero_grad`` — of ``sparc.model.SPARC`` with the PyTorch kernels and with the Triton
kernels (``sparc.model.kernels.triton_gpu``), timed round-robin with the device
synchronised around each step. Before timing, each path's first-step loss is compared
with the PyTorch path's, so the timings are of the same maths.

Usage::

    python benchmarks/gpu_step.py                                   # cuda, fp32+bf16, B 256/4096
    python benchmarks/gpu_step.py --batch-sizes 1024 --dtypes float32 --json out.json
    python benchmarks/gpu_step.py --device cpu --paths pytorch,fused --n-latents 512 --batch-sizes 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from sparc.model import SPARC, SPARCConfig, certified
from sparc.model import kernels as K
from sparc.train.optim import SPARCAdam

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", default="float32,bfloat16", help=f"comma-separated, of {', '.join(DTYPES)}")
    p.add_argument("--batch-sizes", default="256,4096", help="comma-separated")
    p.add_argument("--paths", default="pytorch,triton", help="comma-separated kernel modes (sparc.model.kernels)")
    p.add_argument("--n-latents", type=int, default=8192)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--auxk", type=int, default=64)
    p.add_argument("--dims", default="1024,768,768", help="comma-separated stream dimensions")
    p.add_argument("--topk", choices=("global", "local"), default="global")
    p.add_argument("--dead-fraction", type=float, default=0.0,
                   help="fraction of latents held dead before every step, so AuxK runs")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_config(args, device: torch.device, dtype: torch.dtype, B: int) -> dict:
    """Median/min ms and samples/s of each path for one dtype and batch size."""
    torch.manual_seed(args.seed)
    dims = [int(d) for d in args.dims.split(",")]
    streams = {f"s{i}": d for i, d in enumerate(dims)}
    cfg = SPARCConfig(n_latents=args.n_latents, k=args.k, auxk=args.auxk, topk=args.topk)
    batch = {s: F.normalize(torch.randn(B, d, device=device), dim=1).to(dtype) for s, d in streams.items()}
    ref = SPARC(streams, cfg, device=device, dtype=dtype).train()
    gen = torch.Generator().manual_seed(args.seed + 1)
    n_dead = round(args.dead_fraction * args.n_latents)
    dead = torch.zeros_like(ref.samples_since_fired)
    for i in range(len(streams)):
        dead[i, torch.randperm(args.n_latents, generator=gen)[:n_dead].to(device)] = cfg.dead_after_samples

    steps, first_loss = {}, {}
    for path in args.paths.split(","):
        K.set_kernels(path)
        certified.set_bf16_selection("off")
        m = SPARC(streams, cfg, device=device, dtype=dtype).train()
        m.load_state_dict(ref.state_dict())
        opt = SPARCAdam(m, lr=1e-4)

        def step(m=m, opt=opt, path=path):
            K.set_kernels(path)
            m.samples_since_fired.copy_(dead)
            loss = m(batch).losses.total
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

        first_loss[path] = float(step())
        steps[path] = step
    base = first_loss[next(iter(first_loss))]
    times = {p: [] for p in steps}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for n in range(args.warmup + args.steps):
        for path, step in steps.items():  # round-robin: load elsewhere slows all alike
            sync(device)
            t0 = time.perf_counter()
            step()
            sync(device)
            if n >= args.warmup:
                times[path].append(time.perf_counter() - t0)
    res = {}
    for path, ts in times.items():
        med = statistics.median(ts)
        res[path] = {"median_ms": 1e3 * med, "min_ms": 1e3 * min(ts), "samples_per_s": B / med,
                     "first_loss": first_loss[path], "loss_rel_diff": abs(first_loss[path] - base) / abs(base)}
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    facts = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton
        facts["triton"] = triton.__version__
    except ImportError:
        facts["triton"] = None
    print(f"SPARC training step on {facts['device']} (torch {facts['torch']}, CUDA {facts['cuda']}, "
          f"triton {facts['triton']}); streams {args.dims}, L={args.n_latents}, k={args.k}, auxk={args.auxk}, "
          f"topk={args.topk}, dead fraction {args.dead_fraction}")
    results = []
    for dname in args.dtypes.split(","):
        for B in (int(b) for b in args.batch_sizes.split(",")):
            res = run_config(args, device, DTYPES[dname], B)
            for path, r in res.items():
                if path == "peak_mem_gib":
                    continue
                print(f"  {dname:8s} B={B:5d} {path:8s} median {r['median_ms']:8.2f} ms  min {r['min_ms']:8.2f} ms"
                      f"  {r['samples_per_s']:10.0f} samples/s  first loss {r['first_loss']:.6f}"
                      f" (rel diff {r['loss_rel_diff']:.1e})")
            results.append({"dtype": dname, "batch_size": B, **res})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"facts": facts, "args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
