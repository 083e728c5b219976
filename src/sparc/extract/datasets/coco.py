"""``coco``: COCO captions (``captions_*.json``) with the images and, optionally, labels.

One row per image–caption pair (row id = the caption annotation id), or one row per
image with its captions joined (``join_captions=true``, row id = the image id). The
group is the image id, so the five captions of an image never straddle splits. Rows
are ordered by image id, then annotation id. With ``instances`` (an
``instances_*.json`` of the same images) the labels are the names of the categories
annotated in the image, in COCO category-id order, and :meth:`label_hierarchy` maps
each category to its supercategory.

``Sample.image`` is the image's ``file_name`` relative to ``images``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparc.errors import SparcError
from sparc.extract.datasets._util import (
    ListDataset,
    MissingImagesOption,
    check_hierarchy,
    check_images,
    load_json,
)
from sparc.extract.datasets.base import DATASETS, Sample
from sparc.extract.files import existing_dir, existing_file

NAME = "coco"
CREDITS = (
    "COCO – Common Objects in Context (Lin et al., 2014), https://cocodataset.org: annotations "
    "CC BY 4.0; images belong to their Flickr authors under the licences listed in the annotation file."
)


@dataclass(frozen=True, kw_only=True)
class CocoOptions(MissingImagesOption):
    """Options of the ``coco`` adapter."""

    captions: Path
    """The captions annotation file, captions_<split>.json."""

    images: Path | None = None
    """Folder of the split's images (none: <split> beside the annotation folder, annotations/captions_val2017.json → val2017/)."""

    instances: Path | None = None
    """instances_<split>.json of the same images: labels = the image's category names (optional)."""

    join_captions: bool = False
    """One row per image with its captions joined by separator (false: one row per caption)."""

    separator: str = " "
    """Text between joined captions."""


@DATASETS.register(NAME)
class Coco(ListDataset):
    """COCO captions, one row per image–caption pair, labels from instances_*.json."""

    Options = CocoOptions

    CREDITS = CREDITS

    def __init__(self, options: CocoOptions):
        self.options = options
        cap_path = existing_file(options.captions, f"dataset {NAME!r}: captions annotation file (captions_*.json)")
        self.images = _image_dir(cap_path, options.images)

        data = load_json(cap_path, "captions file", NAME)
        files = _image_files(data, cap_path)
        by_image: dict[int, list[tuple[int, str]]] = {}
        for ann in _list(data, "annotations", cap_path):
            try:
                image_id, ann_id, text = int(ann["image_id"]), int(ann["id"]), ann["caption"]
            except (KeyError, TypeError, ValueError):
                raise SparcError(
                    f"dataset {NAME!r}: '{cap_path}' has a caption annotation without image_id, id and caption: "
                    f"{str(ann)[:80]}"
                ) from None
            if image_id not in files:
                raise SparcError(f"dataset {NAME!r}: '{cap_path}': caption {ann_id} refers to unknown image {image_id}")
            by_image.setdefault(image_id, []).append((ann_id, " ".join(str(text).split())))
        if not by_image:
            raise SparcError(f"dataset {NAME!r}: '{cap_path}' has no caption annotations (is it a captions_*.json?)")

        labels: dict[int, tuple[str, ...]] = {}
        self._hierarchy: dict[str, str | None] | None = None
        if options.instances is not None:
            inst_path = existing_file(options.instances, f"dataset {NAME!r}: instances annotation file (instances_*.json)")
            labels, self._hierarchy = _labels(inst_path, set(by_image))

        samples: list[Sample] = []
        for image_id in sorted(by_image):
            caps = sorted(by_image[image_id])
            group = str(image_id)
            lab = labels.get(image_id, ())
            if options.join_captions:
                text = options.separator.join(c for _, c in caps)
                samples.append(Sample(row_id=group, group_id=group, image=files[image_id], caption=text, labels=lab))
            else:
                for ann_id, text in caps:
                    samples.append(
                        Sample(row_id=str(ann_id), group_id=group, image=files[image_id], caption=text, labels=lab)
                    )
        if len({s.row_id for s in samples}) != len(samples):
            raise SparcError(f"dataset {NAME!r}: '{cap_path}' has duplicate caption annotation ids")
        self.image_root = self.images
        super().__init__(check_images(samples, self.images, options.missing_images, NAME))


def _image_dir(cap_path: Path, images: Path | None) -> Path:
    if images is not None:
        return existing_dir(images, f"dataset {NAME!r}: image folder (images)")
    m = re.match(r"captions_(.+)\.json$", cap_path.name)
    guess = cap_path.resolve().parent.parent / m.group(1) if m else None
    if guess is None or not guess.is_dir():
        raise SparcError(
            f"dataset {NAME!r}: give the image folder with images=... (looked for '{guess}')"
            if guess
            else f"dataset {NAME!r}: give the image folder with images=..."
        )
    return guess


def _list(data: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise SparcError(f"dataset {NAME!r}: '{path}' is not a COCO annotation file (no '{key}' list)")
    return data[key]


def _image_files(data: Any, path: Path) -> dict[int, str]:
    files: dict[int, str] = {}
    for im in _list(data, "images", path):
        try:
            files[int(im["id"])] = str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            raise SparcError(
                f"dataset {NAME!r}: '{path}' has an image without id and file_name: {str(im)[:80]}"
            ) from None
    return files


def _labels(path: Path, wanted: set[int]) -> tuple[dict[int, tuple[str, ...]], dict[str, str | None]]:
    data = load_json(path, "instances file", NAME)
    cats: dict[int, tuple[str, str | None]] = {}
    for c in _list(data, "categories", path):
        try:
            cats[int(c["id"])] = (str(c["name"]), c.get("supercategory"))
        except (KeyError, TypeError, ValueError):
            raise SparcError(f"dataset {NAME!r}: '{path}' has a category without id and name: {str(c)[:80]}") from None
    present: dict[int, set[int]] = {}
    for ann in _list(data, "annotations", path):
        try:
            image_id, cat = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError):
            raise SparcError(
                f"dataset {NAME!r}: '{path}' has an annotation without image_id and category_id: {str(ann)[:80]}"
            ) from None
        if cat not in cats:
            raise SparcError(f"dataset {NAME!r}: '{path}': annotation refers to unknown category {cat}")
        if image_id in wanted:
            present.setdefault(image_id, set()).add(cat)
    inst_images = {int(im["id"]) for im in _list(data, "images", path) if isinstance(im, dict) and "id" in im}
    if wanted and not (inst_images & wanted):
        raise SparcError(
            f"dataset {NAME!r}: instances file '{path}' describes none of the captioned images (wrong split?)"
        )
    labels = {i: tuple(cats[c][0] for c in sorted(cs)) for i, cs in present.items()}
    parent: dict[str, str | None] = {}
    for name, sup in cats.values():
        parent[name] = str(sup) if sup and str(sup) != name else None
    return labels, check_hierarchy(parent, f"categories of '{path}'", NAME)
