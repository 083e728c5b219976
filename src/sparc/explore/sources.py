"""Where a store's rows and features came from: the backbone of each stream (rebuilt from
the fingerprint the manifest records, refused when it differs) and the images of the
rows (through the dataset adapter the manifest names).

A store written by ``sparc extract`` records, per stream, ``manifest.streams[s].source``
= the backbone's :meth:`~sparc.extract.backbones.Backbone.fingerprint` (family, model,
weights digest, preprocessing or tokeniser, precision), and the dataset's name and
options. Encoding a new caption or image for a query must go through the very same
backbone, so :func:`backbone_for` builds the family from the fingerprint, computes the
fingerprint of what it built and refuses, naming the first differing key, when the two
differ (other weights installed, another preprocessing, another sparc extraction code).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from sparc.data import FeatureStore, RowMeta
from sparc.errors import SparcError
from sparc.options import env_value


def stream_modality(store: FeatureStore, stream: str) -> str | None:
    """``"image"``, ``"text"`` or None (the store records no backbone for the stream)."""
    source = store.manifest.streams[stream].source if stream in store.streams else None
    modality = (source or {}).get("modality")
    return modality if modality in ("image", "text") else None


def streams_of(store: FeatureStore, streams: list[str], modality: str) -> list[str]:
    """Those of ``streams`` whose backbone reads ``modality``."""
    return [s for s in streams if stream_modality(store, s) == modality]


def derived_options(family: str, source: dict[str, Any]) -> dict[str, Any]:
    """Options of ``family`` whose names and values the fingerprint records (those the
    options dataclass accepts), so a non-default build is rebuilt as it was."""
    from sparc.extract.backbones import BACKBONES

    out: dict[str, Any] = {}
    for f in dataclasses.fields(BACKBONES.get(family).Options):
        value = source.get(f.name)
        if not isinstance(value, (str, int, float, bool)):
            continue
        for candidate in dict.fromkeys([value, value.rstrip(": ").strip() if isinstance(value, str) else value]):
            try:
                BACKBONES.options(family, **{f.name: candidate})
            except SparcError:
                continue
            out[f.name] = candidate
            break
    return out


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}{key}"
            diff = _first_difference(a[key], b[key], f"{where}{key}.")
            if diff:
                return diff
        return None
    return None if a == b else where.rstrip(".") or "(value)"


def backbone_for(store: FeatureStore, stream: str, *, spec: str | None = None, device: str = "cpu"):
    """The backbone that made ``stream``'s features, rebuilt and checked.

    Parameters
    ----------
    spec
        ``FAMILY[:key=value,...]`` to build instead of deriving the options from the
        fingerprint (for options the fingerprint does not name); still checked.
    device
        Torch device of the backbone.

    Raises
    ------
    SparcError
        The stream records no backbone, the backbone cannot be built or loaded (package
        or weights missing), or its fingerprint differs from the recorded one.
    """
    from sparc.extract.backbones import BACKBONES
    from sparc.options import parse_spec

    source = store.manifest.streams[stream].source if stream in store.streams else None
    if not source or "family" not in source:
        raise SparcError(f"stream {stream!r} of store '{store.path}' records no backbone (features imported, "
                         "not extracted by sparc), so a new input cannot be encoded like its rows; query by --row")
    if spec is not None:
        family, options = parse_spec(spec, BACKBONES)
    else:
        family = source["family"]
        options = BACKBONES.options(family, **derived_options(family, source))
    backbone = BACKBONES.get(family)(options, device=device, precision=source.get("precision", "fp32"))
    try:
        backbone.load()
        fingerprint = json.loads(json.dumps(backbone.fingerprint()))
    except SparcError:
        raise
    except Exception as e:  # a backbone whose weights or package are missing
        raise SparcError(f"cannot load the {family} backbone of stream {stream!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}; install its weights or package") from None
    diff = _first_difference(source, fingerprint)
    if diff is not None:
        raise SparcError(
            f"the {family} backbone built here differs from the one that made stream {stream!r} of '{store.path}' "
            f"(fingerprint key {diff!r}); install the same weights and sparc version, or give the backbone with "
            "--backbone FAMILY:key=value,...")
    return backbone


def encode_with(backbone, items: list, stream: str):
    """Features [n, d] of ``items`` through ``backbone``, with one-line errors."""
    try:
        return backbone.encode(items)
    except SparcError:
        raise
    except Exception as e:
        raise SparcError(f"the backbone of stream {stream!r} failed: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None


MAX_IMAGE_PIXELS = 40_000_000
"""Images larger than this (width × height) are refused before they are decoded;
``SPARC_MAX_IMAGE_PIXELS`` changes it (README, "Reliability")."""
WORK_SIDE = 2048
"""Longer sides are scaled down to this before any work: maps are computed at the
backbone's resolution anyway, and the overlays need no more."""


def max_image_pixels() -> int:
    """The pixel limit in force: ``SPARC_MAX_IMAGE_PIXELS`` (an integer, by the rule of
    :mod:`sparc.options`) or :data:`MAX_IMAGE_PIXELS`."""
    value = env_value("SPARC_MAX_IMAGE_PIXELS", int, MAX_IMAGE_PIXELS)
    if value < 1:
        raise SparcError(f"SPARC_MAX_IMAGE_PIXELS must be a positive number of pixels, got {value}")
    return value


def read_image(path: str | Path | BinaryIO, *, max_side: int | None = WORK_SIDE, name: str | None = None) -> Image.Image:
    """An RGB image from a file (a path, or an open binary file such as an upload's
    bytes, called ``name`` in messages), its longer side at most ``max_side`` (None: as
    stored); a one-line SparcError when it does not decode or has more pixels than the
    limit (:func:`max_image_pixels`), checked from its header before decoding. Decoding
    holds at most about 3 bytes a pixel of the limit, then the scaled copy."""
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if not path.is_file():
            raise SparcError(f"image {path} does not exist")
    what = name or f"image {path}"
    limit = max_image_pixels()
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > limit:
                raise SparcError(f"{what} is {w}×{h} ({w * h / 1e6:.0f} Mpx), over the limit of "
                                 f"{limit / 1e6:g} Mpx; scale it down, or raise SPARC_MAX_IMAGE_PIXELS")
            if max_side is not None:
                im.draft("RGB", (max_side, max_side))  # JPEG decodes at 1/2, 1/4 or 1/8 scale
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise SparcError(f"cannot read {what}: {e}; give a PNG, JPEG or WebP file") from None
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side))
    return rgb


class RowImages:
    """Loads the image of a store's row through the dataset adapter recorded in the
    manifest (so references such as OpenMoji hexcodes resolve), else as a file path
    (absolute, or relative to the store). :attr:`note` says why images are unavailable."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self.note: str | None = None
        self._dataset = None
        info = store.dataset_info()
        name = info.get("name")
        if name:
            try:
                from sparc.extract.datasets import DATASETS

                if name in DATASETS.names():
                    self._dataset = DATASETS.get(name)(DATASETS.options(name, **(info.get("options") or {})))
            except Exception as e:  # the dataset's files are not here: fall back to paths
                self.note = f"dataset {name!r} unavailable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"

    def load(self, meta: RowMeta) -> Image.Image | None:
        """The row's RGB image, or None when it has none or it cannot be read."""
        if not meta.image:
            return None
        if self._dataset is not None:
            from sparc.extract.datasets import Sample

            try:
                return self._dataset.load_image(Sample(row_id=meta.row_id, group_id=meta.group_id or meta.row_id,
                                                       image=meta.image, caption=meta.caption, labels=meta.labels))
            except Exception:
                pass
        path = Path(meta.image)
        for candidate in (path, self.store.path / path):
            if candidate.is_file():
                try:
                    return read_image(candidate)
                except SparcError:
                    return None
        return None
