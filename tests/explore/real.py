"""A reduced ``sparc demo`` (real emoji, real models) built once per test session; its
report is what the browser test opens."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def reduced_demo(tmp_path_factory) -> Path:
    """The output folder of a demo over 120 emoji (store/, runs/, report/)."""
    from sparc.demo import DemoConfig, run_demo

    out = tmp_path_factory.getbasetemp() / "explore-real-demo"
    if not (out / "report" / "index.html").exists():
        base = DemoConfig()
        run_demo(DemoConfig(out=out, limit=120,
                            model=dataclasses.replace(base.model, n_latents=128, k=8),
                            train=dataclasses.replace(base.train, epochs=4, progress=False)))
    return out
