"""The rollout rule by hand, and the attention capture against the fused kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparc.localize.rollout import AttentionCapture, explicit_attention, rollout, rollout_map


def test_one_block_by_hand():
    # B=1, 2 heads, CLS + 2 patches: R = I + mean_h clamp(grad ⊙ attn); map = R[CLS, patches]
    p = torch.zeros(1, 2, 3, 3)
    g = torch.zeros(1, 2, 3, 3)
    p[0, 0, 0] = torch.tensor([0.5, 0.3, 0.2])
    p[0, 1, 0] = torch.tensor([0.2, 0.2, 0.6])
    g[0, 0, 0] = torch.tensor([1.0, 2.0, -1.0])
    g[0, 1, 0] = torch.tensor([0.0, 1.0, 1.0])
    # head 0: [0.5, 0.6, 0 (clamped)]; head 1: [0, 0.2, 0.6]; mean: [0.25, 0.4, 0.3]
    assert torch.allclose(rollout([p], [g])[0, 0], torch.tensor([1.25, 0.4, 0.3]))
    assert torch.allclose(rollout_map([p], [g], prefix=1), torch.tensor([[0.4, 0.3]]))


def test_two_blocks_compose():
    gen = torch.Generator().manual_seed(0)
    p1, p2 = (torch.rand(2, 3, 5, 5, generator=gen).softmax(-1) for _ in range(2))
    g1, g2 = (torch.randn(2, 3, 5, 5, generator=gen) for _ in range(2))
    c1, c2 = ((g * p).clamp(min=0).mean(1) for g, p in ((g1, p1), (g2, p2)))
    eye = torch.eye(5).expand(2, 5, 5)
    want = torch.bmm(eye + c2, eye + c1)
    assert torch.allclose(rollout([p1, p2], [g1, g2]), want, atol=1e-6)


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal"])
def test_explicit_attention_is_sdpa(mask):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=gen) for _ in range(3))
    kw = {}
    if mask == "bool":
        kw["attn_mask"] = torch.rand(6, 6, generator=gen) > 0.3
        kw["attn_mask"][:, 0] = True
    elif mask == "float":
        kw["attn_mask"] = torch.randn(6, 6, generator=gen)
    elif mask == "causal":
        kw["is_causal"] = True
    probs, value = explicit_attention(q, k, v, **kw)
    assert torch.allclose(probs @ value, F.scaled_dot_product_attention(q, k, v, **kw), atol=1e-5)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3, 6))


class _Block(nn.Module):
    """A ViT block written two ways: torch's MultiheadAttention, or explicit with attn_drop."""

    def __init__(self, dim: int, heads: int, explicit: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.explicit = explicit
        self.heads = heads
        if explicit:
            self.qkv = nn.Linear(dim, 3 * dim)
            self.attn_drop = nn.Dropout(0.0)
            self.proj = nn.Linear(dim, dim)
        else:
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        h = self.norm1(x)
        if self.explicit:
            B, N, C = h.shape
            q, k, v = self.qkv(h).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
            a = self.attn_drop(((q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1))
            out = self.proj((a @ v).transpose(1, 2).reshape(B, N, C))
        else:
            out = self.attn(h, h, h, need_weights=False)[0]
        return x + out


@pytest.mark.parametrize("explicit", [False, True])
def test_capture_sees_every_block_and_changes_nothing(explicit):
    torch.manual_seed(0)
    blocks = nn.ModuleList([_Block(16, 4, explicit) for _ in range(3)]).eval().requires_grad_(False)
    x = torch.randn(2, 7, 16)

    def run(t):
        for b in blocks:
            t = b(t)
        return t

    with torch.no_grad():
        want = run(x)
    with torch.enable_grad(), AttentionCapture(blocks, start=1) as cap:
        got = run(x)
    assert len(cap.probs) == 3 and cap.probs[0].shape == (2, 4, 7, 7)
    assert torch.allclose(got, want, atol=1e-5)
    # the graph starts at block 1's attention: block 0 has none, later blocks depend on it
    assert not cap.probs[0].requires_grad and cap.probs[1].requires_grad and cap.probs[1].is_leaf
    grads = torch.autograd.grad(got[:, 0].sum(), cap.from_start())
    assert all(g.shape == (2, 4, 7, 7) for g in grads)
    # after the context, the fused kernel is back
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention
