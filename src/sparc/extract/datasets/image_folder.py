"""``image-folder``: a folder of images with a captions/labels file, or scanned ImageNet-style.

With a captions file (CSV with a header, or JSON lines ``.jsonl``), each record is a
row, in file order. Columns:

- ``image`` (required): path of the image relative to ``root`` (absolute paths work too);
- ``caption``: the text (may be empty);
- ``labels``: ``'a|b'`` or a JSON list ``'["a", "b"]'`` (in JSONL, a list);
- ``row_id``: unique id; default the image path, with ``#1``, ``#2``, … for the
  image's 2nd, 3rd, … caption;
- ``group_id``: split group; default the image path, so the captions of one image
  never straddle splits.

Without a captions file the folder is scanned: every image under ``root`` (sorted by
path, hidden files and folders skipped) is a row, its labels are the names of the
sub-folders it sits in (``root/dog/1.jpg`` → ``("dog",)``; nested
``root/animal/dog/1.jpg`` → ``("animal", "dog")`` and a hierarchy dog → animal), and
its caption comes from ``caption_template`` with the innermost folder name.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparc.data.metadata import parse_labels
from sparc.errors import SparcError
from sparc.extract.datasets._util import (
    IMAGE_SUFFIXES,
    ListDataset,
    MissingImagesOption,
    article,
    check_hierarchy,
    check_images,
    dedupe,
    format_caption,
    jsonl_records,
    load_json,
)
from sparc.extract.datasets.base import DATASETS, Sample
from sparc.extract.files import existing_dir, existing_file

NAME = "image-folder"
DEFAULT_SCAN_TEMPLATE = "a photo of {article} {label}"


@dataclass(frozen=True, kw_only=True)
class ImageFolderOptions(MissingImagesOption):
    """Options of the ``image-folder`` adapter."""

    root: Path
    """The image folder."""

    captions: Path | None = None
    """CSV or JSONL captions/labels file (a relative path not found as given is looked up in root); none: scan root for images."""

    caption_template: str = DEFAULT_SCAN_TEMPLATE
    """Scan mode: caption with {label} (innermost folder name, _ as spaces) and {article} (a/an); empty: no captions."""

    hierarchy: Path | None = None
    """JSON file {"label": "parent label" or null, ...} (overrides the hierarchy of nested folders)."""


@DATASETS.register(NAME)
class ImageFolder(ListDataset):
    """Images under root with captions and labels from a CSV/JSONL file or from folder names."""

    Options = ImageFolderOptions

    def __init__(self, options: ImageFolderOptions):
        self.options = options
        self.root = existing_dir(options.root, f"dataset {NAME!r}: image folder (root)")
        self._hierarchy: dict[str, str | None] | None = None
        if options.captions is not None:
            path = options.captions.expanduser()
            if not path.is_absolute() and not path.exists() and (self.root / path).exists():
                path = self.root / path
            path = existing_file(path, f"dataset {NAME!r}: captions file (CSV or JSONL)")
            samples = _read_captions(path)
        else:
            samples, self._hierarchy = _scan(self.root, options.caption_template)
            if not samples:
                raise SparcError(
                    f"dataset {NAME!r}: no images ({', '.join(IMAGE_SUFFIXES)}) under '{self.root}' "
                    "and no captions file given"
                )
        if options.hierarchy is not None:
            self._hierarchy = _read_hierarchy(existing_file(options.hierarchy, f"dataset {NAME!r}: label hierarchy JSON"))
        self.image_root = self.root
        super().__init__(check_images(samples, self.root, options.missing_images, NAME))


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return list(jsonl_records(path, "captions file", NAME))
    if path.suffix.lower() != ".csv":
        raise SparcError(f"dataset {NAME!r}: captions file '{path}' must end in .csv or .jsonl")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                raise SparcError(
                    f"dataset {NAME!r}: captions file '{path}' needs a header with an 'image' column "
                    f"(and caption, labels, row_id, group_id); found {reader.fieldnames}"
                )
            return [(i, rec) for i, rec in enumerate(reader, start=2)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise SparcError(f"dataset {NAME!r}: cannot read captions file '{path}': {e}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _read_captions(path: Path) -> list[Sample]:
    records = _records(path)
    rows: list[tuple[str | None, str, str | None, str | None, tuple[str, ...]]] = []
    for line, rec in records:
        image = _text(rec.get("image"))
        if image is None:
            raise SparcError(f"dataset {NAME!r}: '{path}' line {line} has no 'image'")
        image = Path(image).as_posix()
        try:
            labels = parse_labels(rec.get("labels") if rec.get("labels") != "" else None)
        except (ValueError, TypeError) as e:
            raise SparcError(
                f"dataset {NAME!r}: '{path}' line {line}: bad labels ({e}); use 'a|b' or a JSON list"
            ) from None
        rows.append((_text(rec.get("row_id")), image, _text(rec.get("group_id")), _text(rec.get("caption")), labels))
    # Explicit row ids must be unique; implicit ones are the image path plus #n.
    explicit: dict[str, int] = {}
    for (rid, *_), (line, _) in zip(rows, records, strict=True):
        if rid is not None:
            if rid in explicit:
                raise SparcError(
                    f"dataset {NAME!r}: '{path}' line {line}: duplicate row_id {rid!r} (also line {explicit[rid]})"
                )
            explicit[rid] = line
    implicit = iter(dedupe((image for rid, image, *_ in rows if rid is None), taken=explicit))
    samples = []
    for rid, image, group, caption, labels in rows:
        if rid is None:
            rid = next(implicit)
        samples.append(Sample(row_id=rid, group_id=group or image, image=image, caption=caption, labels=labels))
    if not samples:
        raise SparcError(f"dataset {NAME!r}: captions file '{path}' has no rows")
    return samples


def _scan(root: Path, template: str) -> tuple[list[Sample], dict[str, str | None] | None]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            if not fn.startswith(".") and fn.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath, fn).relative_to(root).as_posix())
    found.sort()
    samples = []
    parent: dict[str, str | None] = {}
    nested = False
    for rel in found:
        labels = tuple(rel.split("/")[:-1])
        nested = nested or len(labels) > 1
        for i, label in enumerate(labels):
            parent.setdefault(label, labels[i - 1] if i else None)
        caption = None
        if labels and template:
            word = labels[-1].replace("_", " ")
            caption = format_caption(template, NAME, label=word, article=article(word))
        samples.append(
            Sample(row_id=rel, group_id=rel, image=rel, caption=caption, labels=tuple(dict.fromkeys(labels)))
        )
    return samples, (parent if nested else None)


def _read_hierarchy(path: Path) -> dict[str, str | None]:
    data = load_json(path, "label hierarchy", NAME)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in data.items()
    ):
        raise SparcError(f"dataset {NAME!r}: label hierarchy '{path}' must be a JSON object {{label: parent or null}}")
    return check_hierarchy(dict(data), f"label hierarchy '{path}'", NAME)
