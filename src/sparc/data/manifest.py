"""``manifest.json``: what a store holds, read and written as dataclasses; its values
are read by the rule of :mod:`sparc.options`, with the store's own checks on top."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparc.errors import SparcError
from sparc.options import read_value

FORMAT = "sparc-store"
VERSION = 1
"""A store of one part, its files at the top of the store's folder."""
VERSION_PARTS = 2
"""A store of several parts (``parts`` in the manifest), each a folder of the same files."""
MANIFEST = "manifest.json"
ROWS = "rows.jsonl"
SPLITS = "splits.npy"
PARTS_DIR = "parts"
DTYPES = ("float32", "float16")
EXTRA_FILES = ("truth.npz",)
"""Files a store may hold beside its own: the planted ground truth of ``sparc synth``
(sparc.data.truth), written with the store by StoreWriter.extra_file."""
EXTENSIONS = ("dataset", "label_hierarchy", "skipped_rows", "shard")
"""Optional top-level keys: the dataset's description, its label hierarchy, the rows
the extractor left out, and which shard of an extraction the store is (``sparc extract
--shard``). Any other unknown key is refused (the reading rule of :mod:`sparc.options`)."""


@dataclass(frozen=True)
class Part:
    """One part of a store: a folder (relative to the store; ``"."`` is the store's own)
    holding ``features/<stream>.npy``, ``rows.jsonl`` and ``splits.npy`` for its rows,
    which follow those of the parts before it."""

    path: str
    n_rows: int
# Stream names become file names: keep them to a safe alphabet.
STREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a store: its width, on-disk type and file (relative to the store)."""

    dim: int
    dtype: str
    file: str
    source: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` (stream order is meaningful)."""

    n_rows: int
    streams: dict[str, StreamInfo]
    normalized: bool
    split_seed: int
    split_fractions: tuple[float, float, float]
    dropped_nonfinite: int = 0
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """The optional keys of :data:`EXTENSIONS` present in the file."""
    parts: tuple[Part, ...] = ()
    """The parts, in row order (version 2); empty for a store of one part at its top
    (version 1)."""

    def part_list(self) -> tuple[Part, ...]:
        """The parts in row order; a version 1 store is one part, ``"."``."""
        return self.parts or (Part(".", self.n_rows),)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.extra) - set(EXTENSIONS))
        if unknown:
            raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                             "(written by a newer sparc, or not a sparc manifest)")

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        streams = {}
        for name, s in self.streams.items():
            entry: dict[str, Any] = {"dim": s.dim, "dtype": s.dtype, "file": s.file}
            if s.source is not None:
                entry["source"] = s.source
            streams[name] = entry
        f_train, f_val, f_test = self.split_fractions
        parts = {"parts": [{"path": p.path, "n_rows": p.n_rows} for p in self.parts]} if self.parts else {}
        return {
            "format": FORMAT,
            "version": VERSION_PARTS if self.parts else VERSION,
            "n_rows": self.n_rows,
            "streams": streams,
            **parts,
            "normalized": self.normalized,
            "splits": {
                "seed": self.split_seed,
                "fractions": {"train": f_train, "val": f_val, "test": f_test},
            },
            "dropped_nonfinite": self.dropped_nonfinite,
            "created": self.created,
            **self.extra,
        }


def check_stream_name(name: str) -> str:
    """Return ``name`` if it is usable as a stream (and file) name, else SparcError."""
    if not isinstance(name, str) or not STREAM_NAME.fullmatch(name):
        raise SparcError(
            f"invalid stream name {name!r}; use letters, digits, '_', '-' or '.' "
            "(not starting with '.' or '-')"
        )
    return name


def read_manifest(store: Path) -> Manifest:
    """Read and validate ``store/manifest.json``; SparcError with a fix if bad."""
    path = store / MANIFEST
    if not store.is_dir():
        raise SparcError(f"no feature store at '{store}' (directory not found); check the path")
    if not path.is_file():
        raise SparcError(
            f"'{store}' is not a sparc feature store (no {MANIFEST}); "
            "point to a directory written by sparc"
        )
    try:
        obj = json.loads(path.read_text())
        return _parse(obj)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, KeyError):
            reason = f"missing key {e}"
        raise SparcError(
            f"invalid manifest '{path}': {reason}; re-create the store"
        ) from None


def _parse(obj: Any) -> Manifest:
    """Turn the JSON object into a :class:`Manifest` (``ValueError`` on bad content)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"'format' is not {FORMAT!r}")
    if obj["version"] not in (VERSION, VERSION_PARTS):
        raise ValueError(f"version {obj['version']!r} is not supported (this sparc reads {VERSION} and {VERSION_PARTS})")
    n_rows = obj["n_rows"]
    if not isinstance(n_rows, int) or isinstance(n_rows, bool) or n_rows < 0:
        raise ValueError(f"n_rows must be an integer >= 0, got {n_rows!r}")
    if not isinstance(obj["streams"], dict) or not obj["streams"]:
        raise ValueError("'streams' must be a non-empty object")
    streams = {}
    for name, s in obj["streams"].items():
        if not STREAM_NAME.fullmatch(name):
            raise ValueError(f"invalid stream name {name!r}")
        unknown = sorted(set(s) - {"dim", "dtype", "file", "source"})
        if unknown:
            raise ValueError(f"stream {name!r}: unknown key {', '.join(map(repr, unknown))}")
        dim, dtype, file = s["dim"], s["dtype"], s["file"]
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"stream {name!r}: dim must be a positive integer, got {dim!r}")
        if dtype not in DTYPES:
            raise ValueError(f"stream {name!r}: dtype must be one of {DTYPES}, got {dtype!r}")
        if not isinstance(file, str) or Path(file).is_absolute() or ".." in Path(file).parts:
            raise ValueError(f"stream {name!r}: file must be a relative path inside the store")
        streams[name] = StreamInfo(dim=dim, dtype=dtype, file=file, source=s.get("source"))
    splits = obj["splits"]
    fr = splits["fractions"]
    known = {"format", "version", "n_rows", "streams", "normalized", "splits",
             "dropped_nonfinite", "created", "parts"}
    return Manifest(
        n_rows=n_rows,
        streams=streams,
        normalized=read_value(bool, obj["normalized"], where="normalized"),
        split_seed=read_value(int, splits["seed"], where="splits.seed"),
        split_fractions=tuple(read_value(float, fr[k], where=f"splits.fractions.{k}") for k in ("train", "val", "test")),
        dropped_nonfinite=read_value(int, obj.get("dropped_nonfinite", 0), where="dropped_nonfinite"),
        created=read_value(str, obj.get("created", ""), where="created"),
        extra={k: v for k, v in obj.items() if k not in known},
        parts=_parse_parts(obj, n_rows),
    )


def _parse_parts(obj: dict[str, Any], n_rows: int) -> tuple[Part, ...]:
    """The ``parts`` of a version 2 manifest (a version 1 manifest has none)."""
    if obj["version"] == VERSION:
        if "parts" in obj:
            raise ValueError("'parts' needs version 2")
        return ()
    if not isinstance(obj["parts"], list) or not obj["parts"]:
        raise ValueError("'parts' must be a non-empty list")
    parts = []
    for entry in obj["parts"]:
        if not isinstance(entry, dict) or set(entry) != {"path", "n_rows"}:
            raise ValueError(f"each part must be {{'path': ..., 'n_rows': ...}}, got {entry!r}")
        path, rows = entry["path"], entry["n_rows"]
        if (not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts
                or any(p.path == path for p in parts)):
            raise ValueError(f"part path {path!r} must be a new relative path inside the store")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise ValueError(f"part {path!r}: n_rows must be a positive integer, got {rows!r}")
        parts.append(Part(path, rows))
    if sum(p.n_rows for p in parts) != n_rows:
        raise ValueError(f"the parts hold {sum(p.n_rows for p in parts)} rows but n_rows is {n_rows}")
    return tuple(parts)
