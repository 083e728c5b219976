"""Sparse codes of every evaluated row, kept as (indices, values) — never dense N×L.

A table is as wide as its widest code: a rule whose rows hold different numbers of
latents (BatchTopK) pads the shorter rows with entries of value 0, and so does a table
made wider by a later chunk (its padding repeats the row's first latent, with value 0:
every reader counts a latent where its value is positive, and sums values).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sparc.model import SparseCode
from sparc.model.kernels import csr_tensor, uniform_crow


class CodeTable:
    """The k (index, value) pairs of each of ``n_rows`` rows of one stream.

    Memory is ``n_rows × k × 8`` bytes (int32 indices, float32 values): 65 MB for
    126,000 rows at k = 64, against 4.1 GB for the dense codes at L = 8192.
    """

    def __init__(self, n_rows: int, k: int, n_latents: int):
        self.n_latents = n_latents
        self.indices = np.zeros((n_rows, k), dtype=np.int32)
        self.values = np.zeros((n_rows, k), dtype=np.float32)

    def put(self, start: int, code: SparseCode) -> None:
        """Store ``code`` as rows ``start, start + 1, ...`` (the table widens to a wider code)."""
        self.widen(code.indices.shape[1])
        idx, val = padded(code.indices.cpu().numpy(), code.values.float().cpu().numpy(), self.indices.shape[1])
        self.indices[start:start + len(idx)] = idx
        self.values[start:start + len(idx)] = val

    def widen(self, width: int) -> None:
        """At least ``width`` entries per row, the new ones padding of value 0."""
        self.indices, self.values = padded(self.indices, self.values, width)

    def code(self, rows: np.ndarray | slice, device: str | torch.device = "cpu") -> SparseCode:
        """The codes of ``rows`` as a :class:`SparseCode` (int64 indices)."""
        idx = torch.from_numpy(self.indices[rows].astype(np.int64)).to(device)
        return SparseCode(idx, torch.from_numpy(np.ascontiguousarray(self.values[rows])).to(device),
                          self.n_latents)


class SharedFiring:
    """Which latents fire on each row in each stream, when every stream of a row selects
    the same k latents (joint global TopK): the k indices once per row (int32) and one
    byte per stream and slot. Memory ``n_rows × k × (4 + S)`` bytes: 56 MB for 126,000
    rows, k = 64 and 3 streams. Enough for every figure that needs only firing (the
    permutation nulls), not the values.
    """

    def __init__(self, streams: list[str], n_rows: int, k: int, n_latents: int):
        self.streams = list(streams)
        self.n_latents = n_latents
        self.indices = np.zeros((n_rows, k), dtype=np.int32)
        self.fired = np.zeros((len(self.streams), n_rows, k), dtype=bool)

    def put(self, start: int, codes: dict[str, SparseCode]) -> None:
        """Store the codes of rows ``start, start + 1, ...`` (indices shared by the streams)."""
        first = codes[self.streams[0]].indices
        n, w = first.shape
        if w > self.indices.shape[1]:
            extra = w - self.indices.shape[1]
            self.indices = np.concatenate([self.indices, np.repeat(self.indices[:, :1], extra, axis=1)], axis=1)
            self.fired = np.concatenate([self.fired, np.zeros((*self.fired.shape[:2], extra), dtype=bool)], axis=2)
        width = self.indices.shape[1]
        for s, name in enumerate(self.streams):
            code = codes[name]
            if not torch.equal(code.indices, first):
                raise ValueError("SharedFiring needs codes whose streams share their indices (joint global TopK)")
            self.fired[s, start:start + n] = 0
            self.fired[s, start:start + n, :w] = (code.values > 0).cpu().numpy()
        self.indices[start:start + n] = padded(first.cpu().numpy(), np.zeros(first.shape, np.float32), width)[0]

    def stream(self, name: str) -> _FiringView:
        """A view with ``code(rows)`` for stream ``name``, as :meth:`CodeTable.code`."""
        return _FiringView(self, self.streams.index(name))


def padded(indices: np.ndarray, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) with at least ``width`` entries per row: the added ones repeat
    each row's first latent, with value 0."""
    extra = width - indices.shape[1]
    if extra <= 0:
        return indices, values
    return (np.concatenate([indices, np.repeat(indices[:, :1], extra, axis=1)], axis=1),
            np.concatenate([values, np.zeros((len(values), extra), dtype=values.dtype)], axis=1))


def same_width(tables: list[CodeTable]) -> None:
    """Widen ``tables`` to the widest of them (to stack their arrays)."""
    width = max(t.indices.shape[1] for t in tables)
    for t in tables:
        t.widen(width)


class _FiringView:
    def __init__(self, table: SharedFiring, s: int):
        self.table, self.s = table, s

    def code(self, rows: np.ndarray | slice, device: str | torch.device = "cpu") -> SparseCode:
        """The codes of ``rows`` with value 1 where the latent fires, 0 elsewhere."""
        idx = torch.from_numpy(self.table.indices[rows].astype(np.int64)).to(device)
        val = torch.from_numpy(self.table.fired[self.s][rows].astype(np.float32)).to(device)
        return SparseCode(idx, val, self.table.n_latents)


def unit_values(code: SparseCode) -> Tensor:
    """Values scaled so each row has unit L2 norm (all-zero rows stay zero): the code's
    cosine geometry."""
    norm = code.values.norm(dim=1, keepdim=True)
    return code.values / torch.where(norm > 0, norm, torch.ones_like(norm))


def csr(code: SparseCode, values: Tensor | None = None) -> Tensor:
    """The code as a sparse CSR [B, L] tensor (columns sorted within each row)."""
    vals = code.values if values is None else values
    idx, order = code.indices.sort(dim=1)
    vals = vals.gather(1, order)
    B, k = idx.shape
    return csr_tensor(uniform_crow(B, k, idx.device), idx.reshape(-1), vals.reshape(-1), (B, code.n_latents))


def dense_transposed(code: SparseCode, values: Tensor | None = None) -> Tensor:
    """[L, B] dense: column b holds row b of the code (one query chunk, not the whole split)."""
    vals = code.values if values is None else values
    B, k = code.indices.shape
    out = vals.new_zeros(code.n_latents, B)
    cols = torch.arange(B, device=vals.device).repeat_interleave(k)
    # Accumulated: a padding entry may repeat a latent of its row (with value 0).
    out.index_put_((code.indices.reshape(-1), cols), vals.reshape(-1), accumulate=True)
    return out
