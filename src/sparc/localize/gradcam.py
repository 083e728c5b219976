"""Grad-CAM (Selvaraju et al. 2017) on a feature map or on a transformer's tokens, and
the common last step of every image map: upsample and min-max normalise.

For a map ``A`` (channels × positions) and the gradient ``G = ∂target/∂A``:
``α_c = mean over positions of G_c`` and ``cam = ReLU(Σ_c α_c A_c)``. On a CNN the map is
the last convolutional block's output; on a ViT the tokens leaving the last block's first
norm (the original's ``blocks[-1].norm1`` / ``ln_1``), reshaped to the patch grid with the
CLS and register tokens dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gradcam(A: Tensor, G: Tensor) -> Tensor:
    """Grad-CAM of a feature map ``A`` [B, C, h, w] with gradient ``G``: [B, h, w]."""
    alpha = G.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * A).sum(dim=1))


def token_gradcam(T: Tensor, G: Tensor, prefix: int, grid: tuple[int, int]) -> Tensor:
    """Grad-CAM of transformer tokens ``T`` [B, N, C] (CLS and registers first, ``prefix``
    of them) with gradient ``G``: [B, h, w] over the patch grid."""
    h, w = grid
    A = T[:, prefix:].transpose(1, 2).reshape(T.shape[0], T.shape[2], h, w)
    Gp = G[:, prefix:].transpose(1, 2).reshape(G.shape[0], G.shape[2], h, w)
    return gradcam(A, Gp)


def finish(cam: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Bilinear upsampling of ``cam`` [B, h, w] to ``size`` (H, W), then min-max
    normalisation per map. Returns (maps [B, H, W] in [0, 1], flat [B] bool): a flat map
    (max = min, e.g. a target whose latents are not active, so with no gradient) is all
    zeros and flagged — the original's normalisation made it NaN and dropped it."""
    up = F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat_up = up.flatten(1)
    lo, hi = flat_up.min(dim=1).values, flat_up.max(dim=1).values
    span = hi - lo
    flat = ~((span > 0) & torch.isfinite(span))
    out = (up - lo[:, None, None]) / torch.where(flat, torch.ones_like(span), span)[:, None, None]
    out[flat] = 0
    return out.clamp_(0, 1), flat
