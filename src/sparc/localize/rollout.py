"""Attention of a vision transformer, captured with its gradient, and the gradient-weighted
attention rollout of Chefer et al. (2021) that the original uses for ViTs
(docs/method.md §5.7).

:class:`AttentionCapture` is a context manager around one forward pass of an image tower.
It sees every block's attention probabilities ``[B, heads, N, N]`` whatever library built
the model:

- calls to ``torch.nn.functional.scaled_dot_product_attention`` (timm, open_clip's
  ``nn.MultiheadAttention`` and its own attention, transformers' default ``sdpa``
  attention) are answered by an explicit softmax(QKᵀ·scale + mask)·V whose probabilities
  are kept — the same maths, to float round-off, as the fused kernel;
- attention modules that compute the softmax themselves (DINOv2's torch.hub code, timm
  without fused attention) are seen through a forward hook on their ``attn_drop`` module,
  whose output is the probability tensor the block multiplies with V.

PyTorch's fused multi-head-attention fast path (which bypasses both) is switched off inside
the context. The backbone's weights are frozen and its input needs no gradient: the
probabilities of the start block become the leaves of the graph (as the original keeps
the graph of the last block only), so the backward pass covers only the blocks from the
start layer on.

:func:`rollout` is the rule itself: ``R = I``; for each block from the start layer,
``cam = mean over heads of clamp(∂target/∂A ⊙ A, min=0)`` and ``R ← R + cam·R``; the map is
the CLS row of ``R`` over the patch tokens (registers skipped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def explicit_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                       dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                       enable_gqa: bool = False) -> tuple[Tensor, Tensor]:
    """``scaled_dot_product_attention`` written out: (output, probabilities ``[..., L, S]``)."""
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, dim=-3), value.repeat_interleave(rep, dim=-3)
    scores = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        causal = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = scores.softmax(dim=-1)
    return probs, value


class AttentionCapture:
    """Keep the attention probabilities of a forward pass (see the module docstring).

    Parameters
    ----------
    blocks
        The transformer blocks of the image tower, in order (one attention each).
    start
        Index of the first block whose probabilities need a gradient; the probabilities
        of that block become leaves when nothing before them needs a gradient.
    """

    def __init__(self, blocks: Sequence[nn.Module], start: int):
        self.blocks = list(blocks)
        self.start = start
        self.probs: list[Tensor] = []
        self._hooks: list = []
        self._sdpa = None
        self._fastpath: bool | None = None

    def _keep(self, probs: Tensor) -> Tensor:
        if probs.dim() == 3:  # [B·heads, L, S] from a caller that folded the heads
            probs = probs.unsqueeze(1)
        if len(self.probs) == self.start and not probs.requires_grad:
            probs = probs.detach().requires_grad_(True)
        self.probs.append(probs)
        return probs

    def _attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                   enable_gqa=False):
        probs, value = explicit_attention(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
        shape = probs.shape
        kept = self._keep(probs).reshape(shape)
        if dropout_p > 0:
            kept = F.dropout(kept, dropout_p)
        return kept @ value

    def __enter__(self) -> AttentionCapture:
        self._sdpa = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._attention  # type: ignore[assignment]
        try:
            self._fastpath = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
        except AttributeError:  # older torch: no switch (then grads disable the fast path)
            self._fastpath = None
        for block in self.blocks:
            for name, module in block.named_modules():
                if name.endswith("attn_drop"):
                    self._hooks.append(module.register_forward_hook(self._drop_hook))
        return self

    def _drop_hook(self, module, inputs, output):
        if isinstance(output, Tensor) and output.dim() == 4 and output.shape[-1] == output.shape[-2]:
            return self._keep(output)
        return None

    def __exit__(self, *exc) -> None:
        F.scaled_dot_product_attention = self._sdpa  # type: ignore[assignment]
        if self._fastpath is not None:
            torch.backends.mha.set_fastpath_enabled(self._fastpath)
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def from_start(self) -> list[Tensor]:
        """The probabilities of the blocks from the start layer on."""
        if len(self.probs) != len(self.blocks):
            raise RuntimeError(f"saw {len(self.probs)} attention maps for {len(self.blocks)} blocks")
        return self.probs[self.start:]


def rollout(probs: Sequence[Tensor], grads: Sequence[Tensor]) -> Tensor:
    """Gradient-weighted attention rollout: ``R = I``; per block ``R ← R + cam·R`` with
    ``cam = mean over heads of clamp(grad ⊙ probs, min=0)``. Returns ``R`` [B, N, N]."""
    B, _, N, _ = probs[0].shape
    R = torch.eye(N, dtype=probs[0].dtype, device=probs[0].device).expand(B, N, N)
    for p, g in zip(probs, grads):
        cam = (g * p).clamp(min=0).mean(dim=1)
        R = R + torch.bmm(cam, R)
    return R


def rollout_map(probs: Sequence[Tensor], grads: Sequence[Tensor], prefix: int) -> Tensor:
    """The CLS row of the rollout over the patch tokens: [B, N - prefix] (token 0 is the
    CLS token, tokens 1 … prefix - 1 registers)."""
    return rollout(probs, grads)[:, 0, prefix:]
