"""FeatureStore: read-only, memory-mapped access to a store written by StoreWriter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparc.data.manifest import ROWS, SPLITS, Manifest, read_manifest
from sparc.data.parted import PartedArray
from sparc.data.rows import RowMeta, decode_row
from sparc.data.splits import Split
from sparc.errors import SparcError


class FeatureStore:
    """An opened feature store. Create with :meth:`FeatureStore.open`.

    Features are memory-mapped, so opening is cheap and rows are read from the page
    cache on demand; row metadata is parsed on first use of :meth:`rows`. A store of
    several parts (DESIGN.md) reads as one: its features are a :class:`PartedArray`.
    """

    def __init__(self, path: Path, manifest: Manifest, features: dict[str, np.ndarray | PartedArray],
                 splits_n: np.ndarray):
        self._path = path
        self.manifest = manifest
        self._features = features
        self._splits_n = splits_n
        self._rows: list[RowMeta] | None = None
        self._split_rows: dict[Split, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open the store at ``path``; SparcError (with a fix) if it is missing or broken."""
        path = Path(path)
        manifest = read_manifest(path)
        parts = manifest.part_list()
        features: dict[str, np.ndarray | PartedArray] = {}
        for name, info in manifest.streams.items():
            arrays = [_open_feature(path / part.path, name, info.file, (part.n_rows, info.dim), info.dtype)
                      for part in parts]
            features[name] = arrays[0] if len(arrays) == 1 else PartedArray(arrays)
        splits = [_open_splits(path / part.path, part.n_rows) for part in parts]
        splits_n = splits[0] if len(splits) == 1 else np.concatenate(splits)
        splits_n.flags.writeable = False
        return cls(path, manifest, features, splits_n)

    # -- description ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Directory of the store."""
        return self._path

    @property
    def n_rows(self) -> int:
        """Number of rows (all splits)."""
        return self.manifest.n_rows

    @property
    def streams(self) -> dict[str, int]:
        """Stream name -> feature width, in store order."""
        return {name: info.dim for name, info in self.manifest.streams.items()}

    @property
    def dtype(self) -> str:
        """On-disk dtype shared by all streams (``"mixed"`` if they differ)."""
        dtypes = {info.dtype for info in self.manifest.streams.values()}
        return dtypes.pop() if len(dtypes) == 1 else "mixed"

    @property
    def normalized(self) -> bool:
        """Whether vectors were L2-normalised at write time."""
        return self.manifest.normalized

    def __repr__(self) -> str:
        dims = ", ".join(f"{name}={dim}" for name, dim in self.streams.items())
        return (
            f"FeatureStore('{self._path}', n_rows={self.n_rows}, streams=[{dims}], "
            f"dtype={self.dtype})"
        )

    # -- data -------------------------------------------------------------------------

    def select_streams(self, names: Sequence[str] | None = None) -> list[str]:
        """Validate stream names (``None`` -> all, in store order); SparcError if unknown."""
        if names is None:
            return list(self.streams)
        if isinstance(names, str):
            names = [names]
        out: list[str] = []
        for name in names:
            if name not in self.streams:
                have = ", ".join(self.streams)
                raise SparcError(f"unknown stream {name!r}; this store has: {have}")
            if name in out:
                raise SparcError(f"stream {name!r} is listed twice; give each stream once")
            out.append(name)
        if not out:
            raise SparcError(f"no streams selected; this store has: {', '.join(self.streams)}")
        return out

    @property
    def n_parts(self) -> int:
        """Parts the store consists of (1 for a store written in one go)."""
        return len(self.manifest.part_list())

    def features(self, stream: str) -> np.ndarray | PartedArray:
        """Memory-mapped features of ``stream``, ``[n_rows, dim]`` (read-only); for a
        store of several parts, a :class:`PartedArray` over theirs."""
        self.select_streams([stream])
        return self._features[stream]

    def split_codes(self) -> np.ndarray:
        """Split code of every row, int8 ``[n_rows]`` (0 train, 1 val, 2 test)."""
        return self._splits_n

    def split_rows(self, split: str | Split = Split.ALL) -> np.ndarray:
        """Sorted row indices (int64) of ``split``."""
        split = Split.parse(split)
        if split not in self._split_rows:
            if split is Split.ALL:
                rows_n = np.arange(self.n_rows, dtype=np.int64)
            else:
                rows_n = np.flatnonzero(self._splits_n == split.code).astype(np.int64)
            rows_n.flags.writeable = False  # cached and shared: protect it
            self._split_rows[split] = rows_n
        return self._split_rows[split]

    def rows(self) -> list[RowMeta]:
        """Metadata of every row (parsed on first call, then cached)."""
        if self._rows is None:
            rows: list[RowMeta] = []
            for part in self.manifest.part_list():
                rows.extend(_read_rows(self._path / part.path / ROWS, part.n_rows))
            self._rows = rows
        return self._rows

    def label_hierarchy(self) -> dict[str, str | None] | None:
        """Label → parent label (None for a root), when the dataset has a hierarchy."""
        return self.manifest.extra.get("label_hierarchy")

    def dataset_info(self) -> dict[str, Any]:
        """What the manifest says about the source dataset (name, options, credits)."""
        return dict(self.manifest.extra.get("dataset", {}))

    def labels_vocab(self) -> list[str]:
        """Sorted names of all labels used by any row."""
        return sorted({label for m in self.rows() for label in m.labels})


def _open_feature(store: Path, name: str, file: str, shape: tuple[int, int], dtype: str) -> np.ndarray:
    """Memory-map one stream and check its shape and dtype against the manifest."""
    path = store / file
    fix = "the store is incomplete or corrupted; re-create it"
    if not path.is_file():
        raise SparcError(f"store '{store}' is missing {file} (stream {name!r}); {fix}")
    try:
        if shape[0] == 0:
            x_nd = np.load(path)  # an empty file cannot be memory-mapped
        else:
            x_nd = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SparcError(f"cannot read {path} (stream {name!r}): {reason}; {fix}") from None
    if x_nd.shape != shape or x_nd.dtype != np.dtype(dtype):
        raise SparcError(
            f"{path} holds {x_nd.dtype} {list(x_nd.shape)} but the manifest says "
            f"{dtype} {list(shape)} (stream {name!r}); {fix}"
        )
    return x_nd


def _open_splits(store: Path, n_rows: int) -> np.ndarray:
    """Load ``splits.npy`` (small: one byte per row) and check it."""
    path = store / SPLITS
    fix = "the store is incomplete or corrupted; re-create it"
    if not path.is_file():
        raise SparcError(f"store '{store}' is missing {SPLITS}; {fix}")
    try:
        splits_n = np.load(path)
    except (ValueError, OSError, EOFError) as e:
        raise SparcError(f"cannot read {path}: {str(e).splitlines()[0]}; {fix}") from None
    if splits_n.shape != (n_rows,) or splits_n.dtype != np.int8 or (
        n_rows and (splits_n.min() < 0 or splits_n.max() > 2)
    ):
        raise SparcError(
            f"{path} does not hold one split code (0, 1, 2) per row for {n_rows} rows; {fix}"
        )
    splits_n.flags.writeable = False
    return splits_n


def _read_rows(path: Path, n_rows: int) -> list[RowMeta]:
    """Parse ``rows.jsonl``; SparcError if missing, malformed or the wrong length."""
    fix = "the store is incomplete or corrupted; re-create it"
    if not path.is_file():
        raise SparcError(f"store is missing {path}; {fix}")
    rows: list[RowMeta] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            try:
                rows.append(decode_row(line))
            except (ValueError, KeyError, TypeError) as e:
                raise SparcError(f"{path} line {i + 1} is not a valid row ({e}); {fix}") from None
    if len(rows) != n_rows:
        raise SparcError(f"{path} has {len(rows)} rows but the manifest says {n_rows}; {fix}")
    return rows
