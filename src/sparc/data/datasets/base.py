"""What a dataset adapter is: a deterministic sequence of samples with their metadata.

A sample is one row of the feature store: an image (loaded on demand), a caption, and
labels. Adapters live one per module in this package and register under a name, like
backbones. ``Sample.image`` is a reference the adapter itself resolves in
:meth:`Dataset.load_image` (a file path, or an id into an array), so iterating samples
never decodes images.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sparc.errors import SparcError


@dataclass(frozen=True)
class Sample:
    """One row: its ids, an image reference, a caption and label names."""

    row_id: str
    group_id: str
    """Rows sharing a group (e.g. the captions of one image) never straddle splits."""
    image: str | None = None
    caption: str | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)


class Dataset(abc.ABC):
    """A deterministic, finite sequence of :class:`Sample`."""

    name: str = ""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Sample]:
        """Samples in a fixed order (the row order of the store)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def load_image(self, sample: Sample) -> Image.Image:
        """The RGB image of ``sample``; raises an exception if it cannot be read."""
        if sample.image is None:
            raise ValueError(f"sample {sample.row_id} has no image")
        with Image.open(sample.image) as im:
            return im.convert("RGB")

    def label_hierarchy(self) -> dict[str, str | None] | None:
        """Label → parent label (None for a root), if the labels form a hierarchy."""
        return None

    def credits(self) -> str | None:
        """Licence / attribution text to show and to store with the features."""
        return None


_REGISTRY: dict[str, Callable[..., Dataset]] = {}


def register(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a dataset factory under ``name`` (a decorator)."""

    def deco(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available() -> list[str]:
    _import_adapters()
    return sorted(_REGISTRY)


def build(name: str, **options: Any) -> Dataset:
    """Instantiate a registered dataset adapter."""
    _import_adapters()
    if name not in _REGISTRY:
        raise SparcError(f"unknown dataset {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**options)
    except TypeError as e:
        raise SparcError(f"bad options for dataset {name!r}: {e}") from None


def _import_adapters() -> None:
    from sparc.data.datasets import adapters  # noqa: F401
