"""The dead-latent policy (docs/method.md §2).

A latent is *dead* in a stream when it has not fired there (value > fire_threshold)
for ``SPARCConfig.dead_after_samples`` training samples (default 256,000: the
original's 1,000 steps at batch 256). Counting samples rather than steps keeps the
meaning when the batch size changes. Dead latents feed the AuxK loss, which tries to
revive them by having them model the residual.

Only latents that stay dead much longer (``TrainConfig.resample_after_samples``,
default 10× the AuxK threshold) are re-initialised. The original re-initialised at the
same threshold as AuxK, so AuxK never got to act, and it reset only the encoder row:
here the encoder row, the decoder row (a unit-norm copy, as at initialisation), the
latent bias, the counter and the Adam moments of all of them are reset together, for
that stream only.
"""

from __future__ import annotations

import torch

from sparc.model import SPARC


@torch.no_grad()
def resample_dead_latents(
    model: SPARC,
    optimizer: torch.optim.Optimizer,
    *,
    after_samples: int,
    std: float,
    generator: torch.Generator,
) -> int:
    """Re-initialise the latents dead for at least ``after_samples``; return how many."""
    total = 0
    dead = model.dead_mask(after_samples)
    for i, stream in enumerate(model.names):
        idx = dead[i].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        total += idx.numel()
        for p, where in model.reinit_latents_(stream, idx, std=std, generator=generator):
            state = optimizer.state.get(p, {})
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in state:
                    state[moment][where] = 0
    return total
