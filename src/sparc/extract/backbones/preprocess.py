"""Image preprocessing for every image backbone: PIL + numpy + torch, no torchvision.

One :class:`ImagePreprocess` describes the usual evaluation pipeline (resize, crop,
scale to [0, 1], normalise) and turns a list of PIL images into a float32 batch
[n, 3, size, size]. The steps reproduce torchvision's PIL code path exactly (same PIL
``resize`` calls, the same output-size arithmetic and rounding, the same float32
operations), so features match those of the reference pipelines
(``transforms.Resize(r, bicubic) → CenterCrop(s) → ToTensor → Normalize``, open_clip's
``image_transform``, timm's eval transform) bit for bit on PIL inputs.

Modes (``mode``):

- ``"crop"`` — resize the SHORTER side to ``resize`` (aspect kept), then centre-crop
  ``size`` × ``size`` (padding with ``fill`` if the image is smaller). The DINOv2 /
  ImageNet pipeline (resize 256, crop 224) and open_clip's ``resize_mode="shortest"``
  (resize = size).
- ``"pad"`` — resize the LONGER side to ``size``, then centre-pad to a square with
  ``fill`` (open_clip's ``resize_mode="longest"``).
- ``"squash"`` — resize straight to ``size`` × ``size``, ignoring the aspect ratio
  (open_clip's ``resize_mode="squash"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sparc.errors import SparcError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_PIL_CODE_TO_NAME = {int(v): k for k, v in _RESAMPLE.items()}

Mode = Literal["crop", "pad", "squash"]


def interpolation_name(value: str | int) -> str:
    """Canonical interpolation name from a name or a PIL resampling code (3 → bicubic)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _PIL_CODE_TO_NAME:
            raise SparcError(f"unknown PIL resampling code {value}; use one of {sorted(_PIL_CODE_TO_NAME)}")
        return _PIL_CODE_TO_NAME[value]
    name = str(value).lower()
    if name not in _RESAMPLE:
        raise SparcError(f"unknown interpolation {value!r}; use one of {', '.join(_RESAMPLE)}")
    return name


def resize_shorter(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side is ``size`` (torchvision ``Resize(int)`` on PIL)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def resize_longer(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the longer side is ``size`` (open_clip/timm ``ResizeKeepRatio(longest=1)``)."""
    w, h = img.size
    ratio = max(h / size, w / size)
    new_h, new_w = round(h / ratio), round(w / ratio)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def center_crop(img: Image.Image, size: int, fill: int = 0, offset: str = "round") -> Image.Image:
    """Centre ``size`` × ``size`` crop, padding with ``fill`` where the image is smaller
    (torchvision ``CenterCrop`` / open_clip ``CenterCropOrPad`` on PIL).

    ``offset``: where an odd margin puts the extra pixel — ``"round"`` as torchvision
    (``int(round(margin / 2))``, Python's round-half-to-even), ``"floor"`` as the Hugging
    Face image processors (``margin // 2``).
    """
    w, h = img.size
    if size > w or size > h:
        left = (size - w) // 2 if size > w else 0
        top = (size - h) // 2 if size > h else 0
        new_w, new_h = max(w, size), max(h, size)
        canvas = Image.new(img.mode, (new_w, new_h), (fill,) * len(img.getbands()))
        canvas.paste(img, (left, top))
        img = canvas
        w, h = img.size
        if (w, h) == (size, size):
            return img
    if offset == "floor":
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def to_float_array(img: Image.Image) -> np.ndarray:
    """HWC uint8 RGB image → CHW float32 in [0, 1] (torchvision ``ToTensor``)."""
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32) / np.float32(255.0)


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize / crop / normalise PIL images into a float32 batch [n, 3, size, size]."""

    size: int
    """Side of the square model input."""
    resize: int | None = None
    """``crop`` mode: shorter side after resizing (None: = ``size``)."""
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mode: Mode = "crop"
    fill: int = 0
    """Pixel value (0–255) used for padding."""
    offset: Literal["round", "floor"] = "round"
    """Centre-crop offset convention: torchvision (``round``) or Hugging Face (``floor``)."""

    def __post_init__(self) -> None:
        if int(self.size) <= 0 or (self.resize is not None and int(self.resize) <= 0):
            raise SparcError(f"image sizes must be positive (size={self.size}, resize={self.resize})")
        if self.mode not in ("crop", "pad", "squash"):
            raise SparcError(f"unknown resize mode {self.mode!r}; use crop, pad or squash")
        if self.offset not in ("round", "floor"):
            raise SparcError(f"unknown crop offset {self.offset!r}; use round or floor")
        if self.resize is not None and self.mode != "crop":
            raise SparcError(f"resize={self.resize} only applies to mode=crop (got mode={self.mode})")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "resize", None if self.resize is None else int(self.resize))
        object.__setattr__(self, "interpolation", interpolation_name(self.interpolation))
        for name in ("mean", "std"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) == 1:
                v = v * 3
            if len(v) != 3:
                raise SparcError(f"image {name} needs 3 values, got {len(v)}")
            object.__setattr__(self, name, v)
        if any(s <= 0 for s in self.std):
            raise SparcError(f"image std must be positive, got {self.std}")

    def geometry(self, img: Image.Image) -> Image.Image:
        """Resize and crop/pad one image (RGB) to ``size`` × ``size``."""
        if img.mode != "RGB":
            img = img.convert("RGB")
        if self.mode == "crop":
            img = resize_shorter(img, self.resize if self.resize is not None else self.size, self.interpolation)
            return center_crop(img, self.size, self.fill, self.offset)
        if self.mode == "pad":
            img = resize_longer(img, self.size, self.interpolation)
            return center_crop(img, self.size, self.fill)
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), _RESAMPLE[self.interpolation])
        return img

    def __call__(self, images: Sequence[Image.Image]) -> Tensor:
        if len(images) == 0:
            return torch.empty(0, 3, self.size, self.size)
        x = torch.from_numpy(np.stack([to_float_array(self.geometry(im)) for im in images]))
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def describe(self) -> dict[str, Any]:
        """JSON-able description, part of a backbone's fingerprint."""
        return {
            "size": self.size,
            "resize": self.resize,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "mode": self.mode,
            "fill": self.fill,
            "offset": self.offset,
        }
