"""Sparse codes of every evaluated row, kept as (indices, values) — never dense N×L."""

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
        """Store ``code`` as rows ``start, start + 1, ...``."""
        n = code.indices.shape[0]
        self.indices[start:start + n] = code.indices.cpu().numpy()
        self.values[start:start + n] = code.values.float().cpu().numpy()

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
        n = first.shape[0]
        for s, name in enumerate(self.streams):
            code = codes[name]
            if not torch.equal(code.indices, first):
                raise ValueError("SharedFiring needs codes whose streams share their indices (joint global TopK)")
            self.fired[s, start:start + n] = (code.values > 0).cpu().numpy()
        self.indices[start:start + n] = first.cpu().numpy()

    def stream(self, name: str) -> _FiringView:
        """A view with ``code(rows)`` for stream ``name``, as :meth:`CodeTable.code`."""
        return _FiringView(self, self.streams.index(name))


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
    out.index_put_((code.indices.reshape(-1), cols), vals.reshape(-1))
    return out
