"""Read a sorted set of rows from a memory-mapped array with sequential access."""

from __future__ import annotations

import mmap

import numpy as np

# Below this mean run length, one fancy-index gather beats a Python loop over slices.
_MIN_MEAN_RUN = 64


def read_rows(x_nd: np.ndarray, rows_r: np.ndarray) -> np.ndarray:
    """Copy rows ``rows_r`` (sorted ascending, unique) of ``x_nd`` into a new array.

    Contiguous runs are copied as slices (a single ``memcpy`` from the page cache);
    scattered rows use one vectorised gather, still in ascending file order.
    """
    read_sorted = getattr(x_nd, "read_sorted", None)
    if read_sorted is not None:  # a store of several parts (sparc.data.parted)
        return read_sorted(rows_r)
    n = len(rows_r)
    if n == 0:
        return np.empty((0, x_nd.shape[1]), dtype=x_nd.dtype)
    if rows_r[-1] - rows_r[0] == n - 1:
        return np.array(x_nd[rows_r[0] : rows_r[-1] + 1])
    starts_k = np.flatnonzero(np.diff(rows_r) != 1) + 1
    n_runs = len(starts_k) + 1
    if n < n_runs * _MIN_MEAN_RUN:
        return x_nd[rows_r]
    out_rd = np.empty((n, x_nd.shape[1]), dtype=x_nd.dtype)
    bounds = np.concatenate(([0], starts_k, [n]))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        first = int(rows_r[a])
        out_rd[a:b] = x_nd[first : first + (b - a)]
    return out_rd


def release_pages(x_nd) -> None:
    """Take the pages of the memory map ``x_nd`` (or of each part of a
    :class:`~sparc.data.parted.PartedArray`) out of this process's resident set. They
    stay in the page cache, and a later read maps them again; without this, every page
    an epoch has read counts in the process's RSS until the kernel reclaims it, so a
    pass over a store larger than memory looks like a process of the store's size."""
    for part in getattr(x_nd, "parts", (x_nd,)):
        mm = getattr(part, "_mmap", None)
        if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # closed, or not supported here: only an optimisation
                pass
