"""``open-images``: Open Images with Localized Narratives, as in the SPARC paper.

Rows: one per image–narrative pair, in the order of the narratives files (a glob is
sorted by path, a list kept in its order) and of their lines. Row id
``<ImageID>:<annotator_id>`` (``#n`` appended if repeated), group = the image id, so
all narratives of an image stay in one split. The image is ``<ImageID>.jpg`` under
``images``.

Labels: the image-level labels (``ImageID,Source,LabelName,Confidence`` CSV, e.g.
``test-annotations-human-imagelabels-boxable.csv``) with ``Confidence`` 1 whose
``LabelName`` is one of the classes in ``classes`` (the boxable class descriptions,
``LabelName,DisplayName``, with or without a header — the 601 boxable classes),
reported by display name and sorted. Label rows of images without a narrative are
ignored.

Hierarchy (``bbox_labels_600_hierarchy.json``): nested
``{"LabelName": ..., "Subcategory": [...], "Part": [...]}``. :meth:`label_hierarchy`
maps each class's display name to its parent's: the ``Subcategory`` edges, first
occurrence in depth-first order when a class appears under several parents (the file
is a DAG for a few classes); a class reachable only through ``Part`` gets the whole it
is part of. Nodes that are not classes (the root ``/m/0bl9f`` "Entity") are skipped,
so the top-level classes are roots (parent None); classes absent from the file are
roots too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparc.errors import SparcError
from sparc.extract.datasets._util import (
    ListDataset,
    MissingImagesOption,
    check_hierarchy,
    check_images,
    dedupe,
    file_list,
    jsonl_records,
    load_json,
)
from sparc.extract.datasets.base import DATASETS, Sample
from sparc.extract.files import existing_dir, existing_file

NAME = "open-images"
CREDITS = (
    "Open Images Dataset (Kuznetsova et al., 2020; Google), https://storage.googleapis.com/openimages/web/index.html: "
    "annotations CC BY 4.0, images CC BY 2.0 as listed per image; Localized Narratives (Pont-Tuset et al., "
    "ECCV 2020), https://google.github.io/localized-narratives/: CC BY 4.0."
)


@dataclass(frozen=True, kw_only=True)
class OpenImagesOptions(MissingImagesOption):
    """Options of the ``open-images`` adapter."""

    narratives: tuple[str, ...]
    """Localized Narratives JSONL files (image_id, caption, optional annotator_id): paths or globs, a|b."""

    images: Path
    """Folder holding <ImageID><image_ext>."""

    labels: tuple[str, ...] = ()
    """Image-level labels CSV files (ImageID,Source,LabelName,Confidence): paths or globs, a|b (optional)."""

    classes: Path | None = None
    """Class descriptions CSV LabelName,DisplayName (boxable: 601 classes); needed with labels or hierarchy."""

    hierarchy: Path | None = None
    """bbox_labels_600_hierarchy.json (optional)."""

    image_ext: str = ".jpg"
    """Image file suffix."""


@DATASETS.register(NAME)
class OpenImages(ListDataset):
    """Open Images with Localized Narratives: one row per image–narrative pair, boxable labels."""

    Options = OpenImagesOptions

    CREDITS = CREDITS

    def __init__(self, options: OpenImagesOptions):
        self.options = options
        narrative_files = file_list(options.narratives, "Localized Narratives JSONL file", NAME)
        self.images = existing_dir(options.images, f"dataset {NAME!r}: image folder (images)")
        has_labels, has_hierarchy = bool(options.labels), options.hierarchy is not None
        names: dict[str, str] = {}
        if options.classes is not None:
            names = _read_classes(
                existing_file(options.classes, f"dataset {NAME!r}: class descriptions CSV (LabelName,DisplayName)")
            )
        elif has_labels or has_hierarchy:
            raise SparcError(
                f"dataset {NAME!r}: labels and hierarchy need classes=<class-descriptions-boxable.csv> "
                "(LabelName,DisplayName) to name the classes"
            )

        rows: list[tuple[str, str, str]] = []  # (base row id, image id, caption)
        for path in narrative_files:
            for line, rec in jsonl_records(path, "narratives file", NAME):
                image_id, caption = rec.get("image_id"), rec.get("caption")
                if not image_id or caption is None:
                    raise SparcError(
                        f"dataset {NAME!r}: '{path}' line {line} needs 'image_id' and 'caption' "
                        "(Localized Narratives JSONL)"
                    )
                image_id = str(image_id)
                annotator = rec.get("annotator_id")
                base = f"{image_id}:{annotator}" if annotator not in (None, "") else image_id
                rows.append((base, image_id, " ".join(str(caption).split())))
        if not rows:
            raise SparcError(
                f"dataset {NAME!r}: the narratives files have no rows: {', '.join(map(str, narrative_files))}"
            )

        image_labels: dict[str, tuple[str, ...]] = {}
        if has_labels:
            label_files = file_list(options.labels, "image-level labels CSV", NAME)
            image_labels = _read_labels(label_files, {r[1] for r in rows}, names)
        self._hierarchy: dict[str, str | None] | None = None
        if has_hierarchy:
            path = existing_file(
                options.hierarchy, f"dataset {NAME!r}: class hierarchy JSON (bbox_labels_600_hierarchy.json)"
            )
            self._hierarchy = _read_hierarchy(path, names)

        image_ext = options.image_ext
        ext = image_ext if image_ext.startswith(".") or image_ext == "" else f".{image_ext}"
        ids = dedupe(r[0] for r in rows)
        samples = [
            Sample(
                row_id=rid,
                group_id=image_id,
                image=f"{image_id}{ext}",
                caption=caption,
                labels=image_labels.get(image_id, ()),
            )
            for rid, (_, image_id, caption) in zip(ids, rows, strict=True)
        ]
        self.image_root = self.images
        super().__init__(check_images(samples, self.images, options.missing_images, NAME))


def _read_classes(path: Path) -> dict[str, str]:
    """LabelName (MID) → display name; display names made unique with the MID if needed."""
    mids: list[tuple[str, str]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for i, rec in enumerate(csv.reader(f), start=1):
                if not rec or not "".join(rec).strip():
                    continue
                if len(rec) < 2:
                    raise SparcError(f"dataset {NAME!r}: '{path}' line {i} must be LabelName,DisplayName")
                if i == 1 and rec[0].strip() == "LabelName":
                    continue  # header (oidv6/v7 files have one, v4-v5 files do not)
                mids.append((rec[0].strip(), rec[1].strip()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise SparcError(f"dataset {NAME!r}: cannot read class descriptions '{path}': {e}") from None
    if not mids:
        raise SparcError(f"dataset {NAME!r}: class descriptions '{path}' list no classes")
    count: dict[str, int] = {}
    for _, name in mids:
        count[name] = count.get(name, 0) + 1
    return {mid: (name if count[name] == 1 else f"{name} ({mid})") for mid, name in mids}


def _read_labels(files: list[Path], wanted: set[str], names: dict[str, str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, set[str]] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                cols = {c.strip(): i for i, c in enumerate(header or [])}
                if not {"ImageID", "LabelName", "Confidence"} <= cols.keys():
                    raise SparcError(
                        f"dataset {NAME!r}: image-level labels '{path}' needs the header "
                        f"ImageID,Source,LabelName,Confidence (found {header})"
                    )
                ci, cl, cc = cols["ImageID"], cols["LabelName"], cols["Confidence"]
                for line, rec in enumerate(reader, start=2):
                    if not rec:
                        continue
                    try:
                        image_id, mid, conf = rec[ci], rec[cl], float(rec[cc])
                    except (IndexError, ValueError):
                        raise SparcError(
                            f"dataset {NAME!r}: '{path}' line {line} is not ImageID,Source,LabelName,Confidence"
                        ) from None
                    if conf == 1.0 and image_id in wanted and mid in names:
                        found.setdefault(image_id, set()).add(names[mid])
        except (UnicodeDecodeError, csv.Error) as e:
            raise SparcError(f"dataset {NAME!r}: cannot read image-level labels '{path}': {e}") from None
    return {i: tuple(sorted(s)) for i, s in found.items()}


def _read_hierarchy(path: Path, names: dict[str, str]) -> dict[str, str | None]:
    root = load_json(path, "class hierarchy", NAME)
    if not isinstance(root, dict) or "LabelName" not in root:
        raise SparcError(
            f"dataset {NAME!r}: class hierarchy '{path}' must be a nested object "
            '{"LabelName": ..., "Subcategory": [...]} (bbox_labels_600_hierarchy.json)'
        )
    parent: dict[str, str | None] = {}  # first Subcategory parent (DFS order)
    part_of: dict[str, str | None] = {}  # first whole, for classes seen as a Part

    def walk(node: Any, above: str | None, as_part: bool) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
            raise SparcError(
                f"dataset {NAME!r}: class hierarchy '{path}' has a node without LabelName: {str(node)[:80]}"
            )
        mid, here = node["LabelName"], above
        if mid in names:
            (part_of if as_part else parent).setdefault(mid, above)
            here = mid
        for key, child_as_part in (("Subcategory", False), ("Part", True)):
            children = node.get(key) or []
            if not isinstance(children, list):
                raise SparcError(f"dataset {NAME!r}: class hierarchy '{path}': '{key}' of {mid} must be a list")
            for child in children:
                walk(child, here, child_as_part)

    walk(root, None, False)
    for mid, whole in part_of.items():
        parent.setdefault(mid, whole)
    out: dict[str, str | None] = {}
    for mid, name in names.items():
        p = parent.get(mid)
        out[name] = names[p] if p is not None else None
    return check_hierarchy(out, f"class hierarchy '{path}'", NAME)
