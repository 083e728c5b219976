"""What a backbone is: something that turns images or captions into feature vectors.

A backbone family (OpenCLIP, DINOv2, EfficientNet-Lite, ...) lives in one small module
of this package and registers a factory under a name with :func:`register`. A stream of
a feature store is then ``NAME=FAMILY[:key=value,...]`` on the command line, e.g.
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
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from sparc.errors import SparcError

Modality = Literal["image", "text"]


class Backbone(abc.ABC):
    """A frozen feature extractor for one modality."""

    family: str = ""
    """Registry name of the family."""
    modality: Modality
    """Which field of a sample it encodes."""

    def __init__(self, *, device: str = "cpu", precision: Literal["fp32", "fp16", "bf16"] = "fp32"):
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


_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a backbone factory under ``name`` (a decorator)."""

    def deco(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available() -> list[str]:
    """Registered family names."""
    _import_families()
    return sorted(_REGISTRY)


def build(family: str, **options: Any) -> Backbone:
    """Instantiate a registered backbone (weights are not loaded yet)."""
    _import_families()
    if family not in _REGISTRY:
        raise SparcError(f"unknown backbone {family!r}; available: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[family](**options)
    except TypeError as e:
        raise SparcError(f"bad options for backbone {family!r}: {e}") from None


def _import_families() -> None:
    # Each family module registers itself on import; heavy packages are imported
    # inside the families' _load, so this stays cheap.
    from sparc.data.backbones import families  # noqa: F401
