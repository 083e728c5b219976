"""A read-only array of rows held by several arrays, one after another: the features of
a store of several parts (DESIGN.md, "Parts")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparc.data.gather import read_rows


class PartedArray:
    """Rows ``[Σ n_i, d]`` of the arrays ``[n_i, d]`` (memory maps), in order, without
    copying them into one.

    Reads copy just the rows asked for: ``x[i]``, ``x[a:b]``, ``x[rows]`` (any integer
    array, any order), ``x[rows, cols]``; :func:`sparc.data.gather.read_rows` reads a
    sorted row set part by part with sequential access. ``np.asarray(x)`` copies the
    whole array (small stores and tests only). Writing is refused, as with a read-only
    memory map.
    """

    def __init__(self, parts: Sequence[np.ndarray]):
        if not parts:
            raise ValueError("a PartedArray needs at least one part")
        shapes = {(p.ndim, p.shape[1:], p.dtype) for p in parts}
        if len(shapes) != 1 or parts[0].ndim != 2:
            raise ValueError("the parts must be 2-D arrays of one width and dtype")
        self.parts = list(parts)
        self.starts = np.cumsum([0, *(len(p) for p in parts)]).astype(np.int64)
        """Row offsets: part ``i`` holds rows ``[starts[i], starts[i + 1])``."""

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), int(self.parts[0].shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"PartedArray(shape={self.shape}, dtype={self.dtype}, parts={len(self.parts)})"

    def read_sorted(self, rows_r: np.ndarray) -> np.ndarray:
        """Rows ``rows_r`` (sorted ascending, unique), part by part."""
        out = np.empty((len(rows_r), self.shape[1]), dtype=self.dtype)
        bounds = np.searchsorted(rows_r, self.starts)
        for i, part in enumerate(self.parts):
            a, b = int(bounds[i]), int(bounds[i + 1])
            if a < b:
                out[a:b] = read_rows(part, rows_r[a:b] - self.starts[i])
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any integers in range, any order, repeats allowed)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"boolean index of shape {rows.shape} does not match {len(self)} rows")
            rows = np.flatnonzero(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError("index rows with integers, a slice or a 1-D integer or boolean array")
        rows = np.where(rows < 0, rows + len(self), rows).astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        unique, inverse = np.unique(rows, return_inverse=True)
        got = self.read_sorted(unique)
        return got if len(unique) == len(rows) and (unique == rows).all() else got[inverse]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if not key:
                return self[slice(None)]
            head, rest = key[0], key[1:]
            got = self[head]
            return got[(slice(None), *rest)] if got.ndim == 2 else got[rest]
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(len(self))))
        return self.take(key)

    def __setitem__(self, key, value) -> None:
        raise ValueError("assignment destination is read-only")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype, copy=False)
