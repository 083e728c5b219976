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
