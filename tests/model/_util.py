"""Small models and inputs shared by the model tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparc.model import SPARC, SPARCConfig

NAMES = ("a", "b", "c")
DIMS = (5, 4, 3)


def make_model(
    dims=DIMS, names=NAMES, *, n_latents=24, k=3, dtype=torch.float64, seed=0, biases=True, **cfg
) -> SPARC:
    """A small model; non-zero biases (by default) so that their paths are exercised."""
    torch.manual_seed(seed)
    model = SPARC(dict(zip(names, dims)), SPARCConfig(n_latents=n_latents, k=k, **cfg), dtype=dtype)
    if biases:
        with torch.no_grad():
            model.b_pre.normal_(0, 0.1)
            model.b_lat.normal_(0, 0.1)
    return model


def make_inputs(model: SPARC, batch: int, names=None, *, seed=1, dtype=None) -> dict[str, torch.Tensor]:
    """L2-normalised random features for ``names`` (default: every stream)."""
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or model.W_enc.dtype
    names = model.names if names is None else names
    return {
        s: F.normalize(torch.randn(batch, model.streams[s], generator=g, dtype=dtype), dim=1)
        for s in names
    }


def assert_close(actual, expected, *, atol=1e-10, rtol=1e-9, msg=""):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}")
