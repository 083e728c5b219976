"""Shared set-up of the evaluation tests."""

from __future__ import annotations

import torch

from sparc.data import FeatureStore
from sparc.model import SPARC, SPARCConfig

# The synthetic labels are c0..c15: c0-7 → low_even / low_odd → low; c8-15 → high.
HIERARCHY = {
    **{f"c{i}": ("low_even" if i % 2 == 0 else "low_odd") if i < 8 else "high" for i in range(16)},
    "low_even": "low", "low_odd": "low", "low": None, "high": None,
}


def small_model(store: FeatureStore, topk: str = "global", seed: int = 0, n_latents: int = 32, k: int = 4) -> SPARC:
    """A randomly initialised model over the store's streams, in eval mode."""
    torch.manual_seed(seed)
    return SPARC(store.streams, SPARCConfig(n_latents=n_latents, k=k, topk=topk)).eval()
