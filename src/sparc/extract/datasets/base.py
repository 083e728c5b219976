"""What a dataset adapter is: a deterministic sequence of samples with their metadata.

A sample is one row of the feature store: an image (loaded on demand), a caption, and
labels. Adapters live one per module in this package and register in :data:`DATASETS`
under a name, with their options as a frozen dataclass (``Options``). ``Sample.image`` is a reference the adapter itself resolves in
:meth:`Dataset.load_image` (a file path, or an id into an array), so iterating samples
never decodes images.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from sparc.registry import Registry


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
    """Registry name of the adapter (set by :meth:`~sparc.registry.Registry.register`)."""
    Options: ClassVar[type[Any]]
    """The options dataclass its constructor takes (registered adapters)."""

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


DATASETS: Registry[Dataset] = Registry(
    "dataset", [f"sparc.extract.datasets.{m}" for m in ("coco", "fashion_mnist", "image_folder", "open_images", "openmoji")],
    name_attribute="name",
)
"""The dataset adapters by name; each module of this package registers its own."""


def build(name: str, /, **options: Any) -> Dataset:
    """Instantiate the adapter ``name`` with ``options`` (text or Python values, coerced
    and checked by its options dataclass)."""
    return DATASETS.get(name)(DATASETS.options(name, **options))  # type: ignore[call-arg]
