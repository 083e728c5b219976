"""The sparse kernels in pure PyTorch: the path that runs everywhere, and the oracle of
the fused kernels (:mod:`sparc.model.kernels.fused`).

Sparse codes are handled as the rows of a CSR matrix [R, L]: row r holds the entries
``col[crow[r]:crow[r+1]]`` (latent ids) with values ``val[...]``. Rows may have different
lengths, so the main codes (k entries) and the AuxK codes (k_aux entries) go through one
call. A weight table ``W_ld`` [L, D] holds one row per latent (the encoder or the
decoder of all streams side by side). The three primitives:

- ``spmm``:   out[r]   = Σ_{e in row r} val[e] · W[col[e]]            decode
- ``sddmm``:  out[e]   = W[col[e]] · A[row(e)]                       gather-dot
- ``spmm_t``: out[l]   = Σ_{e: col[e] = l} val[e] · A[row(e)]        weight gradient

Each costs O(nnz·D) instead of the O(R·L·D) of the dense products they replace. The
decoder constraint's two row operations (:func:`normalize_rows_`, :func:`remove_parallel_`)
complete the set. :class:`PyTorchKernels` offers them as a :class:`~sparc.model.kernels.base.Kernels`.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor


def csr_tensor(crow: Tensor, col: Tensor, val: Tensor, shape: tuple[int, int]) -> Tensor:
    """A sparse CSR tensor, built without PyTorch's "support is in beta" notice (the
    kernels use only its stable operations; the notice is silenced here, not process-wide)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False)


def uniform_crow(n_rows: int, k: int, device: torch.device | None = None) -> Tensor:
    """Row pointers of ``n_rows`` rows of ``k`` entries each."""
    return torch.arange(0, n_rows * k + 1, k, device=device)


def spmm(crow: Tensor, col: Tensor, val: Tensor, W_ld: Tensor) -> Tensor:
    """[R, D]: each row's code decoded through the weight table."""
    if col.numel() == 0:
        return W_ld.new_zeros(crow.numel() - 1, W_ld.shape[1])
    return F.embedding_bag(col, W_ld, crow[:-1], per_sample_weights=val, mode="sum")


def sddmm(crow: Tensor, col: Tensor, A_rd: Tensor, W_ld: Tensor) -> Tensor:
    """[nnz]: dot product of each entry's weight row with its row of ``A``."""
    if A_rd.dtype in (torch.float32, torch.float64):
        pattern = csr_tensor(crow, col, A_rd.new_zeros(col.numel()), (A_rd.shape[0], W_ld.shape[0]))
        return torch.sparse.sampled_addmm(pattern, A_rd, W_ld.t(), beta=0.0).values()
    # Half precision: sampled_addmm lacks kernels, so gather rows in slabs instead.
    rows = torch.repeat_interleave(torch.arange(A_rd.shape[0], device=col.device), crow.diff())
    out = A_rd.new_empty(col.numel())
    step = max(1, (1 << 22) // max(1, W_ld.shape[1]))
    for e in range(0, col.numel(), step):
        out[e : e + step] = (W_ld[col[e : e + step]] * A_rd[rows[e : e + step]]).sum(1)
    return out


def spmm_t(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int,
           arow: Tensor | None = None, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """[L, D]: the transpose product, i.e. the gradient of a weight table. Row r of the
    code reads ``A[arow[r], lo[r]:hi[r]]`` (default: ``A[r]``, all columns)."""
    if arow is not None or lo is not None:
        R, D = crow.numel() - 1, A_rd.shape[1]
        arow = torch.arange(R, device=col.device) if arow is None else arow
        table = A_rd[arow]
        if lo is not None:
            c = torch.arange(D, device=col.device)
            table = table * ((c >= lo[:, None]) & (c < hi[:, None])).to(table.dtype)
        A_rd = table
    order = torch.argsort(col, stable=True)
    counts = torch.bincount(col, minlength=n_latents)
    offsets = counts.cumsum(0) - counts
    rows = torch.repeat_interleave(torch.arange(A_rd.shape[0], device=col.device), crow.diff())
    return F.embedding_bag(rows[order], A_rd, offsets, per_sample_weights=val[order], mode="sum")


def block_row_sum(W_ld: Tensor, coef_sl: Tensor, cols: list[slice]) -> Tensor:
    """[D]: ``Σ_l coef[i, l] · W[l, cols[i]]`` in the columns of each block i, 0 elsewhere."""
    out = W_ld.new_zeros(W_ld.shape[1])
    for i, col in enumerate(cols):
        torch.mv(W_ld[:, col].t(), coef_sl[i], out=out[col])
    return out


def normalize_rows_(W_ld: Tensor, bounds: list[int]) -> None:
    """Scale each row to unit norm within every column block [bounds[i], bounds[i+1])."""
    for a, b in zip(bounds[:-1], bounds[1:]):
        block = W_ld[:, a:b]
        block.div_(block.norm(dim=1, keepdim=True).clamp_min(torch.finfo(block.dtype).tiny))


def remove_parallel_(W_ld: Tensor, G_ld: Tensor, bounds: list[int]) -> None:
    """``G[l] −= (W[l]·G[l]) W[l]`` within every column block (W's rows unit there)."""
    for a, b in zip(bounds[:-1], bounds[1:]):
        w, g = W_ld[:, a:b], G_ld[:, a:b]
        g.addcmul_(torch.linalg.vecdot(w, g, dim=1)[:, None], w, value=-1)


def bf16_shadow(W_ld: Tensor, bounds: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """(bfloat16 copy of W, wn [S, L] = block norms of W, dwn [S, L] = block norms of
    W − bf16(W)), the norms in float64."""
    W16 = W_ld.bfloat16()
    wn = torch.stack([W_ld[:, a:b].double().norm(dim=1) for a, b in zip(bounds[:-1], bounds[1:])])
    dwn = torch.stack([(W_ld[:, a:b].double() - W16[:, a:b].double()).norm(dim=1)
                       for a, b in zip(bounds[:-1], bounds[1:])])
    return W16, wn, dwn


def stream_dots(idx_bm: Tensor, U_bd: Tensor, W_ld: Tensor, bounds: list[int], rows: int = 16) -> Tensor:
    """[S, B, m]: ``W[idx[b, j], block s] · U[b, block s]`` in float64, rounded once;
    ``rows`` samples at a time (the gathered rows are B·m·D numbers)."""
    S, (B, m) = len(bounds) - 1, idx_bm.shape
    out = U_bd.new_empty(S, B, m)
    for r in range(0, B, rows):
        Wg = W_ld[idx_bm[r : r + rows]].double()            # [r, m, D]
        Ug = U_bd[r : r + rows, None, :].double()
        for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            out[s, r : r + rows] = (Wg[..., a:b] * Ug[..., a:b]).sum(-1)
    return out


def top_candidates(Z16_bl: Tensor, bias_l: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(the n latents of largest ``float(Z16) + bias`` per row, their least, ``max |float(Z16)|``)."""
    out = Z16_bl.float()
    top = (out + bias_l).topk(n, dim=1, sorted=False)
    return top.indices, top.values.min(1).values, out.abs().amax(1)


def block_sse(M_rd: Tensor, b_pre: Tensor, X_bd: Tensor, n: int, cols: list[slice]) -> tuple[Tensor, Tensor]:
    """(num [n, B, T], den [B, T]): per block t (the columns ``cols[t]``) the sums of
    ``(M[a·B + b] + b_pre − X[b])²`` and of ``X[b]²``, through one product with a [D, T]
    block indicator; differentiable."""
    B, D = X_bd.shape
    blocks = X_bd.new_zeros(D, len(cols))
    for t, col in enumerate(cols):
        blocks[col, t] = 1
    res = M_rd.view(n, B, D) + b_pre - X_bd
    num = ((res * res).view(n * B, D) @ blocks).view(n, B, len(cols))
    return num, (X_bd * X_bd) @ blocks


def block_bounds(cols: list[slice], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(starts, stops) [T] int64 of the column blocks ``cols``."""
    return (torch.tensor([c.start for c in cols], dtype=torch.int64, device=device),
            torch.tensor([c.stop for c in cols], dtype=torch.int64, device=device))


def row_mask(lo: Tensor, hi: Tensor, D: int, dtype: torch.dtype) -> Tensor:
    """[R, D]: 1 in each row's columns ``lo[r]:hi[r]``, else 0."""
    c = torch.arange(D, device=lo.device)
    return ((c >= lo[:, None]) & (c < hi[:, None])).to(dtype)


class PyTorchKernels:
    """The PyTorch path: runs on every device and dtype; the oracle of the others, which
    subclass it and fall back to it for tensors they do not serve."""

    name = "pytorch"
    steps_tables = False
    keeps_grad_buffers = False

    def spmm(self, crow, col, val, W_ld, *, shared=(1, 0), lo=None, hi=None):
        out = spmm(crow, col, val, W_ld)
        return out if lo is None else out * row_mask(lo, hi, out.shape[1], out.dtype)

    def sddmm(self, crow, col, A_rd, W_ld, *, shared=(1, 0)):
        return sddmm(crow, col, A_rd, W_ld)

    def spmm_t(self, crow, col, val, A_rd, n_latents, *, arow=None, lo=None, hi=None, out=None, accumulate=False):
        res = spmm_t(crow, col, val, A_rd, n_latents, arow, lo, hi)
        if out is None:
            return res
        return out.add_(res) if accumulate else out.copy_(res)

    def spmm_t_sddmm(self, crow, col, val, A_rd, W_ld, *, out=None, accumulate=False, shared=(1, 0), lo=None,
                     hi=None):
        if lo is not None:
            A_rd = A_rd * row_mask(lo, hi, A_rd.shape[1], A_rd.dtype)
        return (self.spmm_t(crow, col, val, A_rd, W_ld.shape[0], out=out, accumulate=accumulate),
                self.sddmm(crow, col, A_rd, W_ld, shared=shared))

    def block_row_sum(self, W_ld, coef_sl, cols):
        return block_row_sum(W_ld.detach(), coef_sl, cols)

    def normalize_rows_(self, W_ld, bounds):
        normalize_rows_(W_ld, bounds)

    def remove_parallel_(self, W_ld, G_ld, bounds):
        remove_parallel_(W_ld, G_ld, bounds)

    def bf16_shadow(self, W_ld, bounds):
        return bf16_shadow(W_ld.detach(), bounds)

    def stream_dots(self, idx_bm, U_bd, W_ld, bounds, bias_sl=None):
        out = stream_dots(idx_bm, U_bd, W_ld.detach(), bounds)
        return out if bias_sl is None else out + bias_sl.detach()[:, idx_bm]

    def top_candidates(self, Z16_bl, bias_l, n):
        return top_candidates(Z16_bl, bias_l, n)

    def block_sse(self, M_rd, b_pre, X_bd, n, cols):
        return block_sse(M_rd, b_pre, X_bd, n, cols)
