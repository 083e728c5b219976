"""bf16 autocast (``TrainConfig.autocast``): the dense encoder products in bfloat16, the
weights, gradients and losses in float32; the certified selection stays float32's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparc.model import SPARC, SPARCConfig
from sparc.model.engine import StepEngine

from .conftest import use_path

DIMS = {"a": 40, "b": 24, "c": 32}


def model_and_batch(topk, seed=0):
    torch.manual_seed(seed)
    m = SPARC(DIMS, SPARCConfig(n_latents=96, k=6, auxk=6, topk=topk, dead_after_samples=1)).train()
    g = torch.Generator().manual_seed(seed + 1)
    return m, {s: F.normalize(torch.randn(32, d, generator=g), dim=1) for s, d in DIMS.items()}


@pytest.mark.parametrize("topk", ["global", "local"])
@pytest.mark.parametrize("selection", ["off", "on"])
def test_bf16_products_float32_losses_and_gradients(topk, selection, kernel_path):
    m, x = model_and_batch(topk)
    engine = use_path(m, kernel_path) or StepEngine(m, gradient_buffers=False)
    engine.bf16_select = selection
    ref = m(x, engine=engine).losses.total.detach()
    m.samples_since_fired.zero_()
    m.samples_since_fired[:, ::3] = 10  # AuxK on, as in the reference run
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.logits(x).logits.dtype == torch.bfloat16
        out = m(x, engine=engine)
    out.losses.total.backward()
    assert out.losses.total.dtype == torch.float32
    assert all(c.values.dtype == torch.float32 for c in out.codes.values())
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32
               and torch.isfinite(p.grad).all() for p in m.parameters())
    # bf16 logits may choose a few other latents: the loss moves by bf16 round-off, not more.
    torch.testing.assert_close(out.losses.total.detach(), ref, rtol=3e-2, atol=0)


def test_certified_selection_ignores_autocast():
    m, x = model_and_batch("global")
    engine = StepEngine(m, bf16_select="on")
    m.eval()
    plain = m(x, engine=engine)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = m(x, engine=engine)
    for s in DIMS:
        assert torch.equal(plain.codes[s].indices, cast.codes[s].indices)
        torch.testing.assert_close(plain.codes[s].values, cast.codes[s].values)


def test_certified_fallback_rows_stay_float32_under_autocast():
    m, x = model_and_batch("global", seed=3)
    engine = StepEngine(m, bf16_select="on")
    m.eval()
    plain = m(x, engine=engine)
    engine.candidates.m = 0  # no extra candidates in either round: most rows fall back to the float32 product
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = m(x, engine=engine)
    assert engine.certified_stats[0] < engine.certified_stats[1]
    for s in DIMS:
        assert torch.equal(plain.codes[s].indices, cast.codes[s].indices)
