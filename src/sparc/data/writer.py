"""StoreWriter: build a feature store batch by batch, publish it atomically."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from sparc.atomic import atomic_path
from sparc.data.manifest import (
    DTYPES,
    EXTRA_FILES,
    MANIFEST,
    ROWS,
    SPLITS,
    Manifest,
    StreamInfo,
    check_stream_name,
)
from sparc.data.normalize import l2_normalize
from sparc.data.npy import NpyAppender
from sparc.data.rows import RowMeta, encode_rows
from sparc.data.splits import assign_splits, check_fractions
from sparc.errors import SparcError
from sparc.workspace import STORE, check_replaceable, mark


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse to write over anything at ``path`` unless ``overwrite`` and it is a store
    that sparc made, holding nothing else (the rule of :mod:`sparc.workspace`)."""
    check_replaceable(path, STORE, "choose another output path or remove it")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SparcError(
            f"a feature store already exists at '{path}'; "
            "pass overwrite=True (--overwrite) to replace it or choose another path"
        )


class StoreWriter:
    """Write a feature store in batches; it appears at ``path`` only when complete.

    Use as a context manager. Rows are appended with :meth:`append`; leaving the
    ``with`` block normally validates the store and moves it into place atomically.
    Leaving it with an exception leaves nothing at ``path``. Memory stays bounded by
    the batch size: features go straight to disk.

    Parameters
    ----------
    path
        Store directory to create.
    streams
        Stream name -> feature width, in the order the store should list them.
    dtype
        ``"float32"`` or ``"float16"`` on disk.
    normalize
        L2-normalise every vector at write time (zero vectors stay zero).
    split_fractions
        ``(train, val, test)`` fractions; rows are assigned by group id.
    split_seed
        Seed of the group hash that assigns splits.
    overwrite
        Replace an existing store at ``path`` (never a non-store directory or file).
    drop_nonfinite
        Drop rows with NaN/Inf in any stream (and count them) instead of failing.
    sources
        Optional free-form provenance per stream (recorded in the manifest).
    dataset
        Optional description of the dataset (name, options, credits) for the manifest.
    label_hierarchy
        Optional label → parent label map (None for roots), for hierarchy-aware metrics.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        streams: Mapping[str, int],
        *,
        dtype: str = "float32",
        normalize: bool = True,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        overwrite: bool = False,
        drop_nonfinite: bool = False,
        sources: Mapping[str, Mapping[str, Any]] | None = None,
        dataset: Mapping[str, Any] | None = None,
        label_hierarchy: Mapping[str, str | None] | None = None,
    ):
        self.path = Path(path)
        if not streams:
            raise SparcError("a feature store needs at least one stream")
        for name, dim in streams.items():
            check_stream_name(name)
            if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
                raise SparcError(f"stream {name!r} needs a positive integer dim, got {dim!r}")
        if dtype not in DTYPES:
            raise SparcError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        unknown = set(sources or {}) - set(streams)
        if unknown:
            raise SparcError(f"sources given for unknown stream(s): {', '.join(sorted(unknown))}")
        self.streams = {name: int(dim) for name, dim in streams.items()}
        self.dtype = dtype
        self.normalize = normalize
        self.split_fractions = check_fractions(split_fractions)
        self.split_seed = int(split_seed)
        self.overwrite = overwrite
        self.drop_nonfinite = drop_nonfinite
        self.sources = {k: dict(v) for k, v in (sources or {}).items()}
        self.extra: dict[str, Any] = {}
        if dataset is not None:
            self.extra["dataset"] = dict(dataset)
        if label_hierarchy is not None:
            self.extra["label_hierarchy"] = dict(label_hierarchy)
        self.n_rows = 0
        self.n_dropped = 0
        check_target(self.path, overwrite)  # fail before any work is done
        self._stack: contextlib.ExitStack | None = None
        self._tmp: Path | None = None
        self._files: dict[str, NpyAppender] = {}
        self._splits: list[np.ndarray] = []  # int8 per batch: 1 byte per row in memory
        self._rows_file: Any = None

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> StoreWriter:
        if self._stack is not None:
            raise RuntimeError("StoreWriter can only be entered once")
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, is_dir=True))
        (self._tmp / "features").mkdir()
        for name, dim in self.streams.items():
            self._files[name] = NpyAppender(self._file_of(name), dim, np.dtype(self.dtype))
        self._rows_file = open(self._tmp / ROWS, "x", encoding="utf-8")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._stack is not None
        if exc is None:
            try:
                self._finish()
                check_target(self.path, self.overwrite)  # may have appeared meanwhile
            except BaseException as e:
                self._discard()
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
            self._stack.__exit__(None, None, None)  # os.replace into place
        else:
            self._discard()
            self._stack.__exit__(exc_type, exc, tb)

    # -- writing ---------------------------------------------------------------------

    def append(self, features: Mapping[str, np.ndarray], meta: Sequence[RowMeta]) -> None:
        """Append a batch of rows.

        Parameters
        ----------
        features
            Stream name -> array ``[n, d]`` (any float dtype; every stream of the store,
            the same ``n`` for all).
        meta
            One :class:`RowMeta` per row, in the same order.
        """
        if self._tmp is None:
            raise RuntimeError("use StoreWriter as a context manager: `with StoreWriter(...) as w:`")
        x = self._check_batch(features, meta)
        n = len(meta)
        finite_n = np.ones(n, dtype=bool)
        for x_nd in x.values():
            finite_n &= np.isfinite(x_nd).all(axis=1)
        n_bad = n - int(finite_n.sum())
        if n_bad:
            if not self.drop_nonfinite:
                raise SparcError(
                    f"{n_bad} of {n} rows in this batch have NaN/Inf features; "
                    "pass drop_nonfinite=True (--drop-nonfinite) to drop such rows"
                )
            self.n_dropped += n_bad
            x = {name: x_nd[finite_n] for name, x_nd in x.items()}
            meta = [m for m, ok in zip(meta, finite_n) if ok]
        if not meta:
            return
        for name, x_nd in x.items():
            self._files[name].append(self._prepare(name, x_nd))
        self._rows_file.write(encode_rows(meta))
        self._splits.append(
            assign_splits([m.group_id for m in meta], self.split_fractions, self.split_seed)
        )
        self.n_rows += len(meta)

    def extra_file(self, name: str) -> Path:
        """Where to write the store's extra file ``name`` (one of
        :data:`~sparc.data.manifest.EXTRA_FILES`, e.g. the planted truth) inside the store
        being written: it is published with the store, or not at all."""
        if self._tmp is None:
            raise RuntimeError("use StoreWriter as a context manager: `with StoreWriter(...) as w:`")
        if name not in EXTRA_FILES:
            raise ValueError(f"{name!r} is not a file a store may hold besides its own ({', '.join(EXTRA_FILES)})")
        return self._tmp / name

    def _check_batch(
        self, features: Mapping[str, np.ndarray], meta: Sequence[RowMeta]
    ) -> dict[str, np.ndarray]:
        """Validate names, shapes and row counts; return float arrays in store order."""
        for name in features:
            if name not in self.streams:
                have = ", ".join(self.streams)
                raise SparcError(f"unknown stream {name!r}; this store has: {have}")
        missing = [name for name in self.streams if name not in features]
        if missing:
            raise SparcError(
                f"append() is missing stream(s) {', '.join(missing)}; "
                f"every batch needs all streams: {', '.join(self.streams)}"
            )
        x = {name: np.asarray(features[name]) for name in self.streams}
        for name, x_nd in x.items():
            if x_nd.ndim != 2:
                raise SparcError(
                    f"stream {name!r} must be a 2-D array [rows, dim], got shape {x_nd.shape}"
                )
            if x_nd.shape[1] != self.streams[name]:
                raise SparcError(
                    f"stream {name!r} has dim {x_nd.shape[1]} but the store declares "
                    f"{self.streams[name]}; check the feature extractor or the streams argument"
                )
            if not (np.issubdtype(x_nd.dtype, np.floating) or np.issubdtype(x_nd.dtype, np.integer)):
                raise SparcError(f"stream {name!r} must hold numbers, got dtype {x_nd.dtype}")
        counts = {name: x_nd.shape[0] for name, x_nd in x.items()}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{k}={v}" for k, v in counts.items())
            raise SparcError(
                f"streams have different row counts in one append: {listed}; rows must be aligned"
            )
        n = next(iter(counts.values()))
        if len(meta) != n:
            raise SparcError(
                f"append() got {n} rows of features but {len(meta)} RowMeta; give one RowMeta per row"
            )
        return x

    def _prepare(self, name: str, x_nd: np.ndarray) -> np.ndarray:
        """Normalise in float32 and cast to the store dtype."""
        if self.normalize:
            x_nd = l2_normalize(np.array(x_nd, dtype=np.float32))  # own copy: caller's data untouched
        else:
            x_nd = np.asarray(x_nd, dtype=np.float32)
        if self.dtype == "float16":
            with np.errstate(over="ignore"):  # overflow is reported just below
                x_nd = x_nd.astype(np.float16)
            if not self.normalize and not np.isfinite(x_nd).all():
                raise SparcError(
                    f"stream {name!r} has values beyond the float16 range; "
                    "use dtype float32 or normalize=True"
                )
        return x_nd

    # -- finishing -------------------------------------------------------------------

    def _file_of(self, name: str) -> Path:
        assert self._tmp is not None
        return self._tmp / "features" / f"{name}.npy"

    def _finish(self) -> None:
        """Close files, write splits and manifest into the temporary directory."""
        assert self._tmp is not None
        if self.n_rows == 0:
            dropped = f" ({self.n_dropped} rows were dropped as non-finite)" if self.n_dropped else ""
            raise SparcError(f"no rows were written{dropped}; a feature store needs at least one row")
        for f in self._files.values():
            f.close()
        self._rows_file.close()
        splits_n = np.concatenate(self._splits).astype(np.int8)
        np.save(self._tmp / SPLITS, splits_n)
        manifest = Manifest(
            n_rows=self.n_rows,
            streams={
                name: StreamInfo(
                    dim=dim,
                    dtype=self.dtype,
                    file=f"features/{name}.npy",
                    source=self.sources.get(name),
                )
                for name, dim in self.streams.items()
            },
            normalized=self.normalize,
            split_seed=self.split_seed,
            split_fractions=self.split_fractions,
            dropped_nonfinite=self.n_dropped,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            extra=self.extra,
        )
        mark(self._tmp, STORE, "sparc")
        # Manifest last: a directory with a manifest is a finished store.
        (self._tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")

    def _discard(self) -> None:
        """Close open files so the temporary directory can be removed."""
        for f in self._files.values():
            f.discard()
        if self._rows_file is not None:
            self._rows_file.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
