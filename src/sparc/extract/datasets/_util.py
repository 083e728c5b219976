"""Small helpers shared by the dataset adapters: file lists, JSON, image checks, captions.

Options reach an adapter already typed and checked by its options dataclass (see
:mod:`sparc.options`); the helpers here report problems with the files as one-line
:class:`~sparc.errors.SparcError`s naming the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from sparc.errors import SparcError
from sparc.extract.datasets.base import Dataset, Sample
from sparc.extract.files import existing_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
MissingImages = Literal["error", "skip", "ignore"]


@dataclass(frozen=True, kw_only=True)
class MissingImagesOption:
    """The option of the adapters whose rows name image files (applied by :func:`check_images`)."""

    missing_images: MissingImages = "error"
    """error: fail if an image is missing; skip: drop its rows; ignore: do not check."""


def file_list(items: tuple[str, ...], what: str, dataset: str) -> list[Path]:
    """Files from paths and globs (a glob's matches sorted by path), in the given order."""
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if any(ch in item for ch in "*?["):
            matches = sorted(q for q in p.parent.glob(p.name) if q.is_file())
            if not matches:
                raise SparcError(f"dataset {dataset!r}: no {what} matches '{p}'")
            out.extend(matches)
        else:
            out.append(existing_file(p, f"dataset {dataset!r}: {what}"))
    if not out:
        raise SparcError(f"dataset {dataset!r}: {what} is required")
    return out


def load_json(path: Path, what: str, dataset: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SparcError(f"dataset {dataset!r}: {what} '{path}' is not valid JSON ({e})") from None


def jsonl_records(path: Path, what: str, dataset: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line of a JSON-lines file."""
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SparcError(f"dataset {dataset!r}: {what} '{path}' line {i} is not JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise SparcError(f"dataset {dataset!r}: {what} '{path}' line {i} must be a JSON object")
                yield i, rec
    except UnicodeDecodeError:
        raise SparcError(f"dataset {dataset!r}: {what} '{path}' is not UTF-8 text") from None


def check_images(samples: list[Any], root: Path, policy: MissingImages, dataset: str) -> list[Any]:
    """Apply the ``missing_images`` policy: ``error`` (default), ``skip`` or ``ignore``.

    ``error`` and ``skip`` stat every distinct image once; ``ignore`` trusts the index
    (``load_image`` then fails on the missing ones).
    """
    if policy == "ignore":
        return samples
    exists: dict[str, bool] = {}
    for s in samples:
        if s.image is not None and s.image not in exists:
            exists[s.image] = (root / s.image).is_file()
    missing = [name for name, ok in exists.items() if not ok]
    if not missing:
        return samples
    if policy == "error":
        raise SparcError(
            f"dataset {dataset!r}: {len(missing)} of {len(exists)} images are missing under '{root}' "
            f"(first: '{missing[0]}'); pass missing_images=skip to drop their rows"
        )
    gone = set(missing)
    return [s for s in samples if s.image not in gone]


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def dedupe(ids: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """Make ids unique: the 2nd, 3rd, … occurrence of ``x`` becomes ``x#1``, ``x#2``, …,
    skipping any id in ``taken`` (ids reserved elsewhere)."""
    seen: dict[str, int] = {}
    used = set(taken)
    out = []
    for base in ids:
        n = seen.get(base, 0)
        rid = base if n == 0 else f"{base}#{n}"
        while rid in used:
            n += 1
            rid = f"{base}#{n}"
        seen[base] = n + 1
        used.add(rid)
        out.append(rid)
    return out


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def format_caption(template: str, dataset: str, **fields: str) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise SparcError(
            f"dataset {dataset!r}: bad caption template {template!r} ({e}); fields are "
            + ", ".join("{" + k + "}" for k in fields)
        ) from None



class ListDataset(Dataset):
    """A dataset whose samples are built once, in order, at construction.

    Images are files under ``image_root`` (``Sample.image`` is relative to it), the
    label hierarchy (if any) is ``self._hierarchy``, the attribution ``CREDITS``.
    """

    CREDITS: str | None = None
    image_root: Path | None = None
    _hierarchy: dict[str, str | None] | None = None

    def __init__(self, samples: list[Sample]):
        self._samples = samples

    def load_image(self, sample: Sample) -> Image.Image:
        if sample.image is None or self.image_root is None:
            raise ValueError(f"sample {sample.row_id} has no image")
        return open_rgb(self.image_root / sample.image)

    def label_hierarchy(self) -> dict[str, str | None] | None:
        return None if self._hierarchy is None else dict(self._hierarchy)

    def credits(self) -> str | None:
        return self.CREDITS

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Sample:
        return self._samples[index]


def check_hierarchy(parent: dict[str, str | None], what: str, dataset: str) -> dict[str, str | None]:
    """Add missing parents as roots and refuse cycles (a label its own ancestor)."""
    out = dict(parent)
    for p in list(out.values()):
        if p is not None:
            out.setdefault(p, None)
    for start in out:
        seen = {start}
        node = out[start]
        while node is not None:
            if node in seen:
                raise SparcError(f"dataset {dataset!r}: {what} has a cycle through {node!r}")
            seen.add(node)
            node = out[node]
    return out
