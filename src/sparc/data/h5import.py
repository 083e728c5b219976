"""Import the original code's HDF5 feature files (one file per stream) into a store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sparc.data.metadata import read_metadata
from sparc.data.rows import RowMeta
from sparc.data.store import FeatureStore
from sparc.data.writer import StoreWriter
from sparc.errors import SparcError
from sparc.workspace import clean_stale, exclusive_lock

INDICES = "indices"


def _datasets(f: Any) -> list[str]:
    """Names of all datasets in an open HDF5 file."""
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _open_stream(stack: contextlib.ExitStack, name: str, path: Path, dataset: str) -> Any:
    """Open ``path`` and return its 2-D ``dataset``; SparcError if absent or malformed."""
    import h5py

    if not path.is_file():
        raise SparcError(f"HDF5 file for stream {name!r} not found: '{path}'")
    try:
        f = stack.enter_context(h5py.File(path, "r"))
    except OSError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SparcError(f"cannot read '{path}' (stream {name!r}) as HDF5: {reason}") from None
    ds = f.get(dataset)
    if not isinstance(ds, h5py.Dataset):
        present = ", ".join(_datasets(f)) or "none"
        raise SparcError(
            f"'{path}' (stream {name!r}) has no dataset {dataset!r}; datasets present: {present}; "
            "pass dataset=... (--dataset) to pick one"
        )
    if ds.ndim != 2:
        raise SparcError(
            f"dataset {dataset!r} in '{path}' (stream {name!r}) has shape {ds.shape}; "
            "expected a 2-D array [rows, dim]"
        )
    if not np.issubdtype(ds.dtype, np.number):
        raise SparcError(f"dataset {dataset!r} in '{path}' holds {ds.dtype}, not numbers")
    return ds


def _row_ids(files: Mapping[str, Any], paths: Mapping[str, Path], n: int) -> np.ndarray | None:
    """The ``indices`` shared by the files (int64 ``[n]``), or None if none has them."""
    found: tuple[str, np.ndarray] | None = None
    for name, f in files.items():
        ds = f.get(INDICES)
        if ds is None:
            continue
        idx_n = np.asarray(ds[()])
        if idx_n.shape != (n,) or not np.issubdtype(idx_n.dtype, np.integer):
            raise SparcError(
                f"'{INDICES}' in '{paths[name]}' must be integers of shape ({n},), got "
                f"{idx_n.dtype} {idx_n.shape}; fix or remove it"
            )
        idx_n = idx_n.astype(np.int64)
        if found is None:
            found = (name, idx_n)
        elif not np.array_equal(found[1], idx_n):
            raise SparcError(
                f"the '{INDICES}' of streams {found[0]!r} and {name!r} differ; "
                "rows of all files must be aligned"
            )
    if found is None:
        return None
    if len(np.unique(found[1])) != n:
        raise SparcError(
            f"'{INDICES}' in '{paths[found[0]]}' has duplicate values; row ids must be unique"
        )
    return found[1]


def _check_metadata(meta: Mapping[str, RowMeta], ids: Sequence[str]) -> None:
    """Every metadata row must name an HDF5 row (else the ids are misaligned)."""
    known = set(ids)
    unknown = [rid for rid in meta if rid not in known]
    if unknown:
        raise SparcError(
            f"{len(unknown)} metadata row_id(s) match no HDF5 row (e.g. {unknown[0]!r}); "
            f"HDF5 row ids are the '{INDICES}' values if present, else positions 0..{len(ids) - 1}"
        )


def import_h5(
    streams: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    *,
    metadata: str | os.PathLike | None = None,
    dataset: str = "features",
    dtype: str = "float32",
    normalize: bool = True,
    drop_nonfinite: bool = False,
    overwrite: bool = False,
    chunk_rows: int = 65536,
    progress: bool = True,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
) -> FeatureStore:
    """Build a store from one HDF5 file per stream, rows aligned by position.

    Parameters
    ----------
    streams
        Stream name -> HDF5 file (dataset ``dataset`` of shape ``[N, d]``, optional
        ``indices`` ``[N]`` used as row ids).
    out
        Store directory to create.
    metadata
        Optional CSV or JSON lines (by extension: ``.jsonl``, ``.ndjson``, ``.json``)
        with columns ``row_id, group_id, image, caption, labels`` (labels as a JSON list
        or ``'a|b'``), joined on ``row_id``. Rows without an entry get only their id.
    dataset
        Name of the feature dataset in every file.
    dtype, normalize, drop_nonfinite, overwrite, split_fractions, split_seed
        As for :class:`~sparc.data.StoreWriter`.
    chunk_rows
        Rows read per step; peak memory is about ``2 * chunk_rows * sum(dims) * 4``
        bytes (1.3 GB at the default and 1024/768/768 streams).
    progress
        Show a progress bar.

    Returns
    -------
    FeatureStore
        The new store, opened.
    """
    try:
        import h5py  # noqa: F401  (optional dependency)
    except ImportError:
        raise SparcError("reading HDF5 needs h5py: pip install 'sparc-sae[h5]'") from None
    if not streams:
        raise SparcError("import_h5 needs at least one stream: name -> HDF5 file")
    if chunk_rows < 1:
        raise SparcError(f"chunk_rows must be >= 1, got {chunk_rows}")
    # One writer per store; what killed writers left is removed (docs/formats.md).
    with exclusive_lock(out, "sparc import-h5"):
        clean_stale(out)
        paths = {name: Path(p) for name, p in streams.items()}
        with contextlib.ExitStack() as stack:
            ds = {name: _open_stream(stack, name, path, dataset) for name, path in paths.items()}
            counts = {name: d.shape[0] for name, d in ds.items()}
            if len(set(counts.values())) > 1:
                listed = ", ".join(f"{name}={c} ({paths[name]})" for name, c in counts.items())
                raise SparcError(
                    f"streams have different row counts: {listed}; rows are aligned by position, "
                    "so every file needs the same rows"
                )
            n = next(iter(counts.values()))
            # Constructing the writer checks the output path before the slow steps below.
            writer = StoreWriter(
                out,
                {name: d.shape[1] for name, d in ds.items()},
                dtype=dtype,
                normalize=normalize,
                split_fractions=split_fractions,
                split_seed=split_seed,
                overwrite=overwrite,
                drop_nonfinite=drop_nonfinite,
                sources={
                    name: {"format": "hdf5", "path": str(path.resolve()), "dataset": dataset}
                    for name, path in paths.items()
                },
            )
            idx_n = _row_ids({name: d.file for name, d in ds.items()}, paths, n)
            ids = [str(i) for i in idx_n.tolist()] if idx_n is not None else [str(i) for i in range(n)]
            meta_by_id = read_metadata(metadata) if metadata is not None else {}
            _check_metadata(meta_by_id, ids)
            with writer:
                n_bad, first_bad = _copy_rows(writer, ds, ids, meta_by_id, chunk_rows, progress)
                if n_bad and not drop_nonfinite:
                    raise SparcError(
                        f"{n_bad} of {n} rows have NaN/Inf features (first: row {first_bad}); "
                        "pass --drop-nonfinite (drop_nonfinite=True) to drop them"
                    )
        return FeatureStore.open(out)


def _copy_rows(
    writer: StoreWriter,
    ds: Mapping[str, Any],
    ids: Sequence[str],
    meta_by_id: Mapping[str, RowMeta],
    chunk_rows: int,
    progress: bool,
) -> tuple[int, int | None]:
    """Stream all rows into ``writer`` chunk by chunk.

    Returns the number of rows with NaN/Inf and the position of the first. Unless the
    writer drops them, such rows stop the writing but the scan goes on, so the error
    can report the full count.
    """
    n = len(ids)
    n_bad, first_bad = 0, None
    with tqdm(total=n, unit="rows", desc="import", disable=not progress) as bar:
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            x = {name: np.asarray(d[a:b], dtype=np.float32) for name, d in ds.items()}
            finite_n = np.logical_and.reduce([np.isfinite(x_nd).all(axis=1) for x_nd in x.values()])
            if not finite_n.all():
                if first_bad is None:
                    first_bad = a + int(np.argmin(finite_n))
                n_bad += int((~finite_n).sum())
            if n_bad == 0 or writer.drop_nonfinite:
                meta = [meta_by_id.get(rid) or RowMeta(row_id=rid) for rid in ids[a:b]]
                writer.append(x, meta)
            bar.update(b - a)
    return n_bad, first_bad
