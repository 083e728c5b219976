"""The row order of one epoch: chunked shuffle, a pure function of (seed, epoch).

A true global shuffle of a memory-mapped store reads rows in random order, which is
slow once the store exceeds the page cache. Instead the split's (sorted) rows are cut
into contiguous chunks; each epoch permutes the chunk order, groups consecutive chunks
into read buffers, and shuffles rows only within a buffer. Reads stay sequential within
a chunk while batches still mix rows from ``buffer_chunks`` far-apart parts of the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpochPlan:
    """Emission order of one epoch and where its read buffers start and end.

    Attributes
    ----------
    order_n
        Store row indices, int64 ``[n]``, in the order batches are cut from.
    bounds_b1
        Offsets into ``order_n``: buffer ``i`` is ``order_n[bounds_b1[i]:bounds_b1[i+1]]``.
    """

    order_n: np.ndarray
    bounds_b1: np.ndarray


def plan_epoch(
    rows_n: np.ndarray,
    *,
    chunk_size: int,
    buffer_chunks: int,
    shuffle: bool,
    seed: int,
    epoch: int,
) -> EpochPlan:
    """Return the :class:`EpochPlan` of ``epoch``.

    Parameters
    ----------
    rows_n
        Sorted row indices of the split, int64 ``[n]``.
    chunk_size
        Rows per contiguous chunk.
    buffer_chunks
        Chunks read together and shuffled as one buffer.
    shuffle
        If false the order is ``rows_n`` itself (buffers still bound memory).
    seed, epoch
        The order is a deterministic function of these (and the arguments above).
    """
    n = len(rows_n)
    buffer_rows = chunk_size * buffer_chunks
    if not shuffle:
        bounds = np.append(np.arange(0, n, buffer_rows), n)
        return EpochPlan(order_n=rows_n, bounds_b1=bounds.astype(np.int64))
    rng = np.random.default_rng([seed, epoch])
    n_chunks = -(-n // chunk_size)
    chunk_order = rng.permutation(n_chunks)
    pieces = []
    bounds = [0]
    for g in range(0, n_chunks, buffer_chunks):
        rows_b = np.concatenate(
            [rows_n[c * chunk_size : (c + 1) * chunk_size] for c in chunk_order[g : g + buffer_chunks]]
        )
        pieces.append(rows_b[rng.permutation(len(rows_b))])
        bounds.append(bounds[-1] + len(rows_b))
    order = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
    return EpochPlan(order_n=order, bounds_b1=np.asarray(bounds, dtype=np.int64))
