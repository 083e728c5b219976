"""``fashion-mnist``: Fashion-MNIST from its idx files (Debian package ``dataset-fashion-mnist``).

Reads ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each optionally ``.gz``) from
``root`` (default ``/usr/share/datasets/fashion-mnist``, where ``apt-get install
dataset-fashion-mnist`` puts them). Rows: the chosen splits in order (``train`` then
``test``), images in file order; row id ``train/00042`` / ``test/00042``, which is
also ``Sample.image`` — :meth:`load_image` decodes the 28×28 grey array and returns it
as RGB. Every image is its own group. Labels: the class name (``T-shirt/top``, …);
caption: ``caption_template`` with ``{name}`` (a readable class name, e.g.
``t-shirt or top``, ``ankle boot``), ``{article}`` (a/an) and ``{label}`` (the class
name). Pixel arrays are decompressed on the first :meth:`load_image` of a split.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.datasets._util import (
    ListDataset,
    article,
    format_caption,
)
from sparc.extract.datasets.base import DATASETS, Sample
from sparc.extract.files import existing_dir
from sparc.options import OptionError

NAME = "fashion-mnist"
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
READABLE = (
    "t-shirt or top", "pair of trousers", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip
DEFAULT_TEMPLATE = "a photo of {article} {name}"
PREFIX = {"train": "train", "test": "t10k"}
CREDITS = (
    "Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017), https://github.com/zalandoresearch/fashion-mnist, "
    "© 2017 Zalando SE, MIT licence."
)


@dataclass(frozen=True, kw_only=True)
class FashionMnistOptions:
    """Options of the ``fashion-mnist`` adapter."""

    root: Path = Path(DEFAULT_ROOT)
    """Folder with the idx files (.gz or not); apt-get install dataset-fashion-mnist puts them here."""

    split: tuple[str, ...] = ("all",)
    """Splits in row order: train (60,000), test (10,000), all (train then test), or a list (train|test)."""

    caption_template: str = DEFAULT_TEMPLATE
    """Caption with {name} (readable class name), {article} (a/an) and {label} (class name); empty: no captions."""

    limit: int = 0
    """Keep only the first N images of each split (0: all)."""

    def __post_init__(self) -> None:
        bad = [s for s in self.split if s not in PREFIX]
        if self.split != ("all",) and (not self.split or bad or len(set(self.split)) != len(self.split)):
            raise OptionError("split", "|".join(self.split), "must be train, test, all or train|test")
        if self.limit < 0:
            raise OptionError("limit", self.limit, "must be at least 0")

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits to read, ``all`` expanded."""
        return ("train", "test") if self.split == ("all",) else self.split


@DATASETS.register(NAME)
class FashionMnist(ListDataset):
    """Fashion-MNIST from its idx files: 28×28 grey clothing images in 10 classes."""

    Options = FashionMnistOptions

    CREDITS = CREDITS

    def __init__(self, options: FashionMnistOptions = FashionMnistOptions()):
        self.options = options
        self.root = existing_dir(
            options.root,
            f"dataset {NAME!r}: Fashion-MNIST folder (install it with 'apt-get install dataset-fashion-mnist' or give root=)",
        )
        caption_template, limit = options.caption_template, options.limit
        captions = [
            format_caption(caption_template, NAME, name=r, article=article(r), label=c) if caption_template else None
            for c, r in zip(CLASSES, READABLE, strict=True)
        ]
        self._files: dict[str, Path] = {}
        self._pixels: dict[str, np.ndarray] = {}
        samples: list[Sample] = []
        for sp in options.splits:
            labels = _read_idx(self._file(sp, "labels-idx1"), 1)
            if labels.max(initial=0) >= len(CLASSES):
                raise SparcError(f"dataset {NAME!r}: '{self._file(sp, 'labels-idx1')}' has labels above 9")
            self._file(sp, "images-idx3")  # fail now, not at the first image, if it is missing
            if limit:
                labels = labels[:limit]
            width = max(5, len(str(len(labels) - 1)))
            for i, y in enumerate(labels.tolist()):
                rid = f"{sp}/{i:0{width}d}"
                samples.append(Sample(row_id=rid, group_id=rid, image=rid, caption=captions[y], labels=(CLASSES[y],)))
        super().__init__(samples)

    def _file(self, split: str, kind: str) -> Path:
        key = f"{split}:{kind}"
        if key not in self._files:
            stem = f"{PREFIX[split]}-{kind}-ubyte"
            for name in (stem, stem + ".gz"):
                if (self.root / name).is_file():
                    self._files[key] = self.root / name
                    break
            else:
                raise SparcError(f"dataset {NAME!r}: '{self.root / stem}' (or .gz) not found")
        return self._files[key]

    def pixels(self, split: str) -> np.ndarray:
        """uint8 [n, 28, 28] images of ``split`` (read once, then kept)."""
        if split not in self._pixels:
            path = self._file(split, "images-idx3")
            arr = _read_idx(path, 3)
            n_labels = len(_read_idx(self._file(split, "labels-idx1"), 1))
            if arr.shape[0] != n_labels:
                raise SparcError(f"dataset {NAME!r}: '{path}' has {arr.shape[0]} images but the labels file {n_labels}")
            self._pixels[split] = arr
        return self._pixels[split]

    def load_image(self, sample: Sample) -> Image.Image:
        if sample.image is None:
            raise ValueError(f"sample {sample.row_id} has no image")
        split, _, index = sample.image.partition("/")
        if split not in PREFIX or not index.isdigit():
            raise ValueError(f"not a Fashion-MNIST image reference: {sample.image!r}")
        return Image.fromarray(self.pixels(split)[int(index)]).convert("RGB")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (unsigned bytes, ``ndim`` dimensions) as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise SparcError(f"dataset {NAME!r}: cannot read '{path}': {e}") from None
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SparcError(f"dataset {NAME!r}: '{path}' is too short for an idx file")
    zero, dtype, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or nd != ndim:
        raise SparcError(
            f"dataset {NAME!r}: '{path}' is not an idx{ndim} file of unsigned bytes "
            f"(magic {data[:4].hex()}, expected 000008{ndim:02x})"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise SparcError(f"dataset {NAME!r}: '{path}' holds {len(data) - header} bytes of data, its header says {size}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
