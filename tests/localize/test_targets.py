"""The sum / cross / latent / clip_sim targets against dense re-computations."""

from __future__ import annotations

import pytest
import torch

from sparc.errors import SparcError
from sparc.localize.targets import Query, check_latents, target_values
from sparc.model import SPARC, SPARCConfig


def model(topk: str) -> SPARC:
    torch.manual_seed(0)
    m = SPARC({"img": 12, "txt": 6}, SPARCConfig(n_latents=40, k=5, topk=topk)).eval()
    with torch.no_grad():
        m.b_lat.normal_(std=0.1)
    return m


def unit(x):
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("topk", ["global", "local"])
@pytest.mark.parametrize("encoding", ["joint", "independent"])
def test_sum_and_cross(topk, encoding):
    m = model(topk)
    g = torch.Generator().manual_seed(1)
    x = unit(torch.randn(4, 12, generator=g)).requires_grad_(True)
    t = unit(torch.randn(4, 6, generator=g))
    qs = [Query(text_stream="txt", text=t[i], target=("sum", "cross")[i % 2], encoding=encoding) for i in range(4)]
    got = target_values(m, "img", x, qs)
    with torch.no_grad():
        if encoding == "joint":
            codes = m.encode({"img": x, "txt": t})
            img, txt = codes["img"].dense(), codes["txt"].dense()
        else:
            img, txt = m.encode({"img": x})["img"].dense(), m.encode({"txt": t})["txt"].dense()
    want = torch.stack([(img[i] * (txt[i] > 0)).sum() if i % 2 == 0 else (img[i] * txt[i]).sum() for i in range(4)])
    assert torch.allclose(got.detach(), want, atol=1e-6)
    (grad,) = torch.autograd.grad(got.sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all()


def test_latents_and_given_latents_with_text():
    m = model("global")
    g = torch.Generator().manual_seed(2)
    x = unit(torch.randn(3, 12, generator=g))
    t = unit(torch.randn(3, 6, generator=g))
    alone = m.encode({"img": x})["img"].dense()
    lat = tuple(int(i) for i in alone[0].nonzero().flatten()[:2])
    got = target_values(m, "img", x, [Query(latents=lat), Query(latents=(lat[0],)),
                                      Query(text_stream="txt", text=t[2], latents=lat)])
    joint = m.encode({"img": x[2:], "txt": t[2:]})["img"].dense()[0]
    assert torch.allclose(got[0], alone[0, list(lat)].sum()) and torch.allclose(got[1], alone[1, lat[0]])
    assert torch.allclose(got[2], joint[list(lat)].sum())


def test_clip_sim_and_errors():
    m = model("global")
    x = unit(torch.randn(2, 12))
    t = unit(torch.randn(2, 12))
    got = target_values(m, "img", x, [Query(text_stream="clip_txt", text=t[i], target="clip_sim", scale=100.0)
                                      for i in range(2)])
    assert torch.allclose(got, 100 * (x * t).sum(1))
    with pytest.raises(SparcError, match="latents or a text"):
        Query()
    with pytest.raises(SparcError, match="latent 40 does not exist; this model has 40 latents"):
        check_latents(m, [3, 40])


def test_dense_target_reads_the_logits_before_topk():
    m = model("local")
    g = torch.Generator().manual_seed(4)
    x = unit(torch.randn(3, 12, generator=g)).requires_grad_(True)
    t = unit(torch.randn(3, 6, generator=g))
    got = target_values(m, "img", x, [Query(text_stream="txt", text=t[i], target="dense") for i in range(3)])
    with torch.no_grad():
        txt = m.encode({"txt": t})["txt"].dense()
        h = m.logits({"img": x}).logits[0]
    want = (torch.relu(h) * (txt > 0)).sum(1)
    assert torch.allclose(got.detach(), want, atol=1e-5)
    (grad,) = torch.autograd.grad(got.sum(), x)
    assert grad.abs().sum() > 0
