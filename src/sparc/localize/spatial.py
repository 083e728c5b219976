"""Image backbones seen with their spatial map: what a heatmap differentiates.

Every image family of :mod:`sparc.extract.backbones` has one:

| family | kind | map | methods |
|---|---|---|---|
| ``efficientnet-lite`` | CNN | the last convolutional block's output (1280 × 7 × 7 for lite0) | ``gradcam`` |
| ``dinov2-hub``, ``dinov2-timm``, ``dinov2-hf`` | ViT | attention of every block; tokens of the last block | ``rollout`` (default), ``gradcam`` |
| ``open-clip``, ``hf-clip`` (image tower) | ViT | the same | ``rollout`` (default), ``gradcam`` |

The pixels are the backbone's own normalisation of the WHOLE image resized to the
model's input size without a crop (the original's COCO protocol: "resized to 224×224
without crop"), so the map covers the image and maps back onto it by a plain resize. The
feature is computed exactly as the family computes it (pooled map, CLS after the norm,
projected CLS), so it goes on into the SPARC model like a stored feature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor, nn

from sparc.errors import SparcError

Method = Literal["gradcam", "rollout"]

CNN_FAMILIES = ("efficientnet-lite",)
VIT_FAMILIES = ("dinov2-hub", "dinov2-timm", "dinov2-hf", "open-clip", "hf-clip")


@dataclass
class Spatial:
    """An image backbone with the pieces a heatmap needs."""

    backbone: Any
    stream: str
    kind: Literal["cnn", "vit"]

    @property
    def methods(self) -> tuple[str, ...]:
        return ("gradcam",) if self.kind == "cnn" else ("rollout", "gradcam")

    @property
    def default_method(self) -> str:
        return self.methods[0]

    def check_method(self, method: str | None) -> str:
        method = method or self.default_method
        if method not in self.methods:
            fits = " or ".join(f"--method {m}" for m in self.methods)
            what = "a CNN: it has no attention to roll out" if self.kind == "cnn" else "a ViT"
            raise SparcError(f"stream {self.stream!r} ({self.backbone.family}) is {what}; use {fits}")
        return method

    # -- pixels ------------------------------------------------------------------------------
    @property
    def preprocess(self):
        """The backbone's preprocessing with the geometry replaced by a plain resize."""
        pre = getattr(self.backbone, "preprocess", None)
        if pre is None:
            raise SparcError(f"stream {self.stream!r}: the {self.backbone.family} backbone has no image preprocessing")
        return dataclasses.replace(pre, mode="squash", resize=None)

    @property
    def size(self) -> int:
        return self.preprocess.size

    def pixels(self, images: Sequence[Image.Image]) -> Tensor:
        bb = self.backbone
        return self.preprocess([im.convert("RGB") for im in images]).to(bb.device, bb.dtype)

    # -- CNN -----------------------------------------------------------------------------------
    def feature_map(self, x: Tensor) -> Tensor:
        """CNN: the last convolutional block's output [B, C, h, w] (no gradient)."""
        with torch.no_grad():
            return self.backbone.model.extract_features(x)

    def pool(self, A: Tensor) -> Tensor:
        """CNN: the family's feature from its map (global average pool)."""
        return A.mean(dim=(2, 3))

    # -- ViT -----------------------------------------------------------------------------------
    def image_module(self) -> nn.Module:
        bb, family = self.backbone, self.backbone.family
        model = bb.model
        if family == "open-clip":
            return model.visual
        if family == "hf-clip":
            return model.vision_model
        return model

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks of the image tower, in order."""
        family, module = self.backbone.family, self.image_module()
        found: Any = None
        if family in ("dinov2-hub", "dinov2-timm"):
            found = getattr(module, "blocks", None)
        elif family == "dinov2-hf":
            found = getattr(getattr(module, "encoder", None), "layer", None)
        elif family == "open-clip":
            found = getattr(getattr(module, "transformer", None), "resblocks", None)
            if found is None:
                found = getattr(getattr(module, "trunk", None), "blocks", None)
        elif family == "hf-clip":
            found = getattr(getattr(module, "encoder", None), "layers", None)
        if found is None:  # any other ViT: its longest list of modules
            lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
            found = max(lists, key=len) if lists else None
        if found is None or len(found) == 0:
            raise SparcError(f"stream {self.stream!r}: found no transformer blocks in the {family} image model")
        out: list[nn.Module] = []
        for b in found:  # DINOv2's BlockChunk: a list of blocks (and Identity padding)
            if isinstance(b, nn.ModuleList):
                out.extend(x for x in b if not isinstance(x, nn.Identity))
            else:
                out.append(b)
        return out

    def patch_size(self) -> int:
        """The patch embedding's stride (the first convolution whose kernel is its stride)."""
        for m in self.image_module().modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == m.stride and m.stride[0] > 1:
                return int(m.stride[0])
        raise SparcError(f"stream {self.stream!r}: found no patch embedding in the {self.backbone.family} model")

    def grid(self) -> tuple[int, int]:
        g = self.size // self.patch_size()
        return g, g

    def last_norm(self) -> nn.Module:
        """The first norm of the last block (Grad-CAM's layer on a ViT, as the original)."""
        for m in self.blocks()[-1].modules():
            if isinstance(m, nn.LayerNorm) or type(m).__name__ in ("LayerNorm", "LayerNormFp32", "RMSNorm"):
                return m
        raise SparcError(f"stream {self.stream!r}: the last block of the {self.backbone.family} model has no norm")

    def vit_features(self, x: Tensor) -> Tensor:
        """ViT: the family's feature of pixels ``x`` (differentiable where the graph is)."""
        bb, family = self.backbone, self.backbone.family
        if family == "dinov2-hub":
            return bb.cls_features(x)
        if family == "dinov2-timm":
            m = bb.model
            return m.forward_head(m.forward_features(x), pre_logits=True)
        if family == "dinov2-hf":
            return bb.model(pixel_values=x).pooler_output
        if family == "open-clip":
            return bb.model.encode_image(x)
        if family == "hf-clip":
            out = bb.model.get_image_features(pixel_values=x)
            return out if isinstance(out, Tensor) else out.pooler_output
        raise SparcError(f"stream {self.stream!r}: no feature path for {family}")


@contextmanager
def leaf_output(module: nn.Module, store: list[Tensor]):
    """Make ``module``'s output a leaf that needs a gradient (kept in ``store``)."""

    def hook(mod, inputs, output):
        out = output[0] if isinstance(output, tuple) else output
        leaf = out.detach().requires_grad_(True) if not out.requires_grad else out
        store.append(leaf)
        return (leaf, *output[1:]) if isinstance(output, tuple) else leaf

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def spatial_for(backbone: Any, stream: str) -> Spatial:
    """The backbone of an image stream with its spatial map, or a one-line error saying
    what fits."""
    family = getattr(backbone, "family", type(backbone).__name__)
    if getattr(backbone, "modality", None) != "image":
        raise SparcError(f"stream {stream!r} ({family}) reads texts, not images: it has no spatial map; "
                         "for a text stream use a caption without IMAGE (per-word attribution)")
    if family in CNN_FAMILIES:
        return Spatial(backbone.load(), stream, "cnn")
    if family in VIT_FAMILIES:
        return Spatial(backbone.load(), stream, "vit")
    raise SparcError(f"stream {stream!r}: the {family} backbone has no spatial map sparc knows; heatmaps need "
                     f"a CNN ({', '.join(CNN_FAMILIES)}: --method gradcam) or a ViT "
                     f"({', '.join(VIT_FAMILIES)}: --method rollout or gradcam)")
