"""``sparc info``: describing a store, a run or model, or an original checkpoint."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

from sparc.errors import SparcError

if TYPE_CHECKING:
    from sparc.model import SPARC


@dataclass
class Info:
    """Describe a feature store, a run / model directory, or an original checkpoint; without
    PATH, this machine as sparc computes on it (threads, OpenMP, kernel paths)."""

    path: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="PATH")] = None
    """A store directory, a run directory or a .pth checkpoint."""

    def run(self) -> None:
        from sparc.train.rundir import RunDir, load_model

        p = self.path
        if p is None:
            print(describe_system())
        elif (p / "manifest.json").exists():
            from sparc.data import FeatureStore, describe_store

            print(describe_store(FeatureStore.open(p)))
        elif p.is_dir() and RunDir(p).holds_run():
            print(describe_model(load_model(p)))
            print(describe_run(p))
        elif p.suffix in (".pth", ".pt") and p.exists():
            from sparc.model.reference import read_reference

            state, run = read_reference(p)
            print(f"original checkpoint {p}: {len(state)} tensors; run_config: {json.dumps(run)}")
        else:
            raise SparcError(f"{p} is neither a feature store, a run directory nor a .pth checkpoint")


def describe_system() -> str:
    """Versions, the thread budget, the OpenMP runtimes and the kernel paths of this process
    (what a bug report about speed needs)."""
    import platform

    import torch

    from sparc import __version__
    from sparc.model import kernels
    from sparc.openmp import describe
    from sparc.threads import budget

    lines = [f"sparc {__version__}, Python {platform.python_version()}, PyTorch {torch.__version__}, "
             f"{platform.machine()} with {os.cpu_count()} CPUs"]
    try:
        import numba

        numba.get_num_threads()  # starts numba's pool, so its runtime is loaded and named
        lines.append(f"numba {numba.__version__}: threading layer {numba.threading_layer()}, "
                     f"{numba.get_num_threads()} threads")
    except ImportError:
        lines.append("numba: not installed (the fused CPU kernels are off)")
    except ValueError as e:  # no threading layer could start
        lines.append(f"numba: {e}")
    lines.append(f"threads per pool: {budget()} (PyTorch {torch.get_num_threads()})")
    lines.append(describe())
    lines.append(f"kernel path by default: {kernels.resolve(kernels.default_choice(), torch.device('cpu'), torch.float32)} "
                 "on the CPU")
    return "\n".join(lines)


def describe_model(model: SPARC) -> str:
    cfg = model.cfg
    dead = model.dead_mask().float().mean(1)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"SPARC model: method {cfg.method}, {cfg.n_latents} latents, k={cfg.k}, topk={cfg.topk}, auxk={cfg.auxk}, "
        f"cross_coef={cfg.cross_coef}, {n_params / 1e6:.2f}M parameters",
        "streams: " + ", ".join(f"{s} ({d})" for s, d in model.streams.items()),
        *(["exclusive latents (docs/method.md §1.11): " + ", ".join(cfg.exclusive)] if cfg.exclusive else []),
        "dead latents (by training counters): "
        + ", ".join(f"{s} {100 * dead[i].item():.1f}%" for i, s in enumerate(model.names)),
    ]
    return "\n".join(lines)


def describe_run(run: Path) -> str:
    from sparc.train.rundir import RunDir

    lines = []
    rd = RunDir(run)
    if rd.metrics_file.exists():
        records = rd.metrics()
        train = [r for r in records if r.get("split") != "val"]
        val = [r for r in records if r.get("split") == "val"]
        if train:
            last = train[-1]
            lines.append(f"trained {last['step']} steps ({last.get('samples', 0)} samples); last loss {last['loss']:.4g}")
        if val:
            v = val[-1]
            nm = " ".join(f"{k}={x:.4g}" for k, x in v.items() if k.startswith("nmse/"))
            lines.append(f"last validation (epoch {v['epoch'] + 1}): loss {v['loss']:.4g} {nm}")
    if not rd.is_finished():
        lines.append("run in progress or interrupted: resume with 'sparc train STORE --out RUN --resume'")
    return "\n".join(lines)
