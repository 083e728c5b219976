"""Heatmaps of queries on images through an image stream: the engine behind ``sparc heatmap``,
``sparc localize`` and the report's heatmaps.

:class:`ImageMapper` holds a SPARC model and one image stream's backbone (rebuilt from the
store's fingerprint, :func:`sparc.explore.sources.backbone_for`). :meth:`ImageMapper.maps`
takes images and (image, :class:`~sparc.localize.targets.Query`) pairs and returns one map
per pair at the model's input resolution, in [0, 1]:

- **CNN, Grad-CAM** — the backbone runs ONCE per image without gradient; its last
  convolutional block's output ``A`` becomes a leaf, and the rest (global pool → L2
  normalisation → :meth:`SPARC.encode` → target) is differentiated for all the image's
  queries at once. Grad-CAM's layer is the last block, so no backward pass goes through
  the backbone: a map costs one forward pass per image plus a few small matrix products.
- **ViT, rollout / Grad-CAM** — one forward pass per (image, query) pair, batched, with
  the attention captured (:mod:`.rollout`); the graph starts at the start layer's
  attention (rollout) or at the last block's first norm (Grad-CAM).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sparc.errors import SparcError
from sparc.localize.gradcam import finish, gradcam, token_gradcam
from sparc.localize.rollout import AttentionCapture, rollout_map
from sparc.localize.spatial import Spatial, leaf_output, spatial_for
from sparc.localize.targets import Query, target_values
from sparc.model import SPARC


@dataclass
class Maps:
    """Maps of (image, query) pairs."""

    maps: np.ndarray
    """[P, S, S] float32 in [0, 1] at the model's input resolution (S × S)."""
    flat: np.ndarray
    """[P] bool: the target had no gradient (its latents inactive on the image): the map is
    all zeros and carries no location."""
    targets: np.ndarray
    """[P] the target's value."""


def unit(x: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (differentiable; zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class ImageMapper:
    """Heatmaps through one image stream of a SPARC model.

    Parameters
    ----------
    model
        The SPARC model (its parameters are frozen here).
    stream
        The image stream.
    backbone
        That stream's backbone (:func:`sparc.explore.sources.backbone_for`).
    method
        ``gradcam`` or ``rollout`` (default: rollout on a ViT, Grad-CAM on a CNN).
    start_layer
        Rollout: the first block rolled out (negative counts from the end; default the
        last block, as the original's quantitative runs).
    """

    def __init__(self, model: SPARC, stream: str, backbone, *, method: str | None = None,
                 start_layer: int = -1, batch_size: int = 32):
        if stream not in model.names:
            raise SparcError(f"unknown stream {stream!r}; this model has: {', '.join(model.names)}")
        self.model = model.eval().requires_grad_(False)
        self.stream = stream
        self.spatial: Spatial = spatial_for(backbone, stream)
        self.method = self.spatial.check_method(method)
        self.batch_size = batch_size
        self.start_layer = start_layer
        if self.spatial.kind == "vit":
            n = len(self.spatial.blocks())
            start = start_layer + n if start_layer < 0 else start_layer
            if not 0 <= start < n:
                raise SparcError(f"--start-layer {start_layer} is outside the {n} blocks of stream {stream!r}")
            self.start = start

    @property
    def size(self) -> int:
        return self.spatial.size

    def describe(self) -> str:
        sp = self.spatial
        if self.method == "gradcam":
            where = "last convolutional block" if sp.kind == "cnn" else "last block's first norm"
            return f"Grad-CAM on the {where} of {sp.backbone.family}"
        return f"gradient-weighted attention rollout from block {self.start} of {sp.backbone.family}"

    # ------------------------------------------------------------------------------ maps
    def maps(self, images: Sequence[Image.Image], pairs: Sequence[tuple[int, Query]]) -> Maps:
        """One map per (image index, query) pair."""
        P, S = len(pairs), self.size
        out = np.zeros((P, S, S), dtype=np.float32)
        flat = np.zeros(P, dtype=bool)
        value = np.zeros(P, dtype=np.float32)
        if P == 0:
            return Maps(out, flat, value)
        if self.spatial.kind == "cnn":
            by_image: dict[int, list[int]] = {}
            for p, (i, _) in enumerate(pairs):
                by_image.setdefault(i, []).append(p)
            order = sorted(by_image)
            for a in range(0, len(order), self.batch_size):
                chunk = order[a:a + self.batch_size]
                A = self.feature_maps([images[i] for i in chunk])
                ps = [p for i in chunk for p in by_image[i]]
                got = self.maps_from(A, [(j, pairs[p][1]) for j, i in enumerate(chunk) for p in by_image[i]])
                out[ps], flat[ps], value[ps] = got.maps, got.flat, got.targets
        else:
            for a in range(0, P, self.batch_size):
                ps = list(range(a, min(P, a + self.batch_size)))
                x = self.spatial.pixels([images[pairs[p][0]] for p in ps])
                m, f, v = self._vit(x, [pairs[p][1] for p in ps])
                out[ps], flat[ps], value[ps] = m, f, v
        return Maps(out, flat, value)

    def feature_maps(self, images: Sequence[Image.Image]) -> Tensor:
        """CNN: the last convolutional block's output [B, C, h, w] of ``images`` (one
        forward pass, no gradient); several models on the same backbone can share it
        (:meth:`maps_from`)."""
        if self.spatial.kind != "cnn":
            raise SparcError("feature maps are shared between models on CNN backbones only")
        return self.spatial.feature_map(self.spatial.pixels(images))

    def maps_from(self, A: Tensor, pairs: Sequence[tuple[int, Query]]) -> Maps:
        """CNN: maps of (row of ``A``, query) pairs from :meth:`feature_maps`."""
        if not pairs:
            S = self.size
            return Maps(np.zeros((0, S, S), np.float32), np.zeros(0, bool), np.zeros(0, np.float32))
        rep = torch.tensor([i for i, _ in pairs], device=A.device)
        m, f, v = self._cnn(A[rep], [q for _, q in pairs])
        return Maps(m, f, v)

    def _targets(self, feats: Tensor, queries: list[Query]) -> Tensor:
        return target_values(self.model, self.stream, unit(feats.float()), queries)

    def _cnn(self, A: Tensor, queries: list[Query]):
        A = A.detach().float().requires_grad_(True)
        with torch.enable_grad():
            t = self._targets(self.spatial.pool(A), queries)
            (G,) = torch.autograd.grad(t.sum(), A, allow_unused=True)
        if G is None:
            G = torch.zeros_like(A)
        cam = gradcam(A.detach(), G)
        maps, flat = finish(cam, (self.size, self.size))
        return maps.numpy(), flat.numpy(), t.detach().numpy()

    def _vit(self, x: Tensor, queries: list[Query]):
        sp = self.spatial
        grid = sp.grid()
        blocks = sp.blocks()
        with torch.enable_grad():
            if self.method == "rollout":
                with AttentionCapture(blocks, self.start) as cap:
                    feats = sp.vit_features(x)
                probs = cap.from_start()
                prefix = probs[0].shape[-1] - grid[0] * grid[1]
                if prefix < 1:
                    raise SparcError(f"stream {self.stream!r}: {probs[0].shape[-1]} tokens do not fit a CLS token and "
                                     f"a {grid[0]}×{grid[1]} patch grid")
                t = self._targets(feats, queries)
                grads = torch.autograd.grad(t.sum(), probs, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g for p, g in zip(probs, grads)]
                R = rollout_map([p.detach().float() for p in probs], [g.float() for g in grads], prefix)
                cam = R.reshape(R.shape[0], *grid)
            else:
                store: list[Tensor] = []
                with leaf_output(sp.last_norm(), store):
                    feats = sp.vit_features(x)
                T = store[-1]
                t = self._targets(feats, queries)
                (G,) = torch.autograd.grad(t.sum(), T, allow_unused=True)
                G = torch.zeros_like(T) if G is None else G
                if T.shape[0] != x.shape[0]:  # sequence-first tokens [N, B, C]
                    T, G = T.transpose(0, 1), G.transpose(0, 1)
                prefix = T.shape[1] - grid[0] * grid[1]
                cam = token_gradcam(T.detach().float(), G.float(), prefix, grid)
        if cam.shape[-1] * cam.shape[-2] != grid[0] * grid[1] or min(cam.shape[-2:]) < 1:
            raise SparcError(f"stream {self.stream!r}: the token count does not fit a {grid[0]}×{grid[1]} patch grid")
        maps, flat = finish(cam, (self.size, self.size))
        return maps.numpy(), flat.numpy(), t.detach().float().numpy()


def to_image(map_: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A map at the model's resolution resized (bilinear) onto an image of ``size_hw``."""
    t = torch.from_numpy(np.ascontiguousarray(map_, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size_hw, mode="bilinear", align_corners=False)[0, 0].numpy()
