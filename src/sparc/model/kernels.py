"""Sparse kernels of the efficient formulation (docs/method.md §4), in pure PyTorch.

Sparse codes are handled as the rows of a CSR matrix [R, L]: row r holds the entries
``col[crow[r]:crow[r+1]]`` (latent ids) with values ``val[...]``. Rows may have different
lengths, so the main codes (k entries) and the AuxK codes (k_aux entries) go through one
call. A weight table ``W_ld`` [L, D] holds one row per latent (the encoder or the
decoder of all streams side by side). The three primitives:

- ``spmm``:   out[r]   = Σ_{e in row r} val[e] · W[col[e]]            decode
- ``sddmm``:  out[e]   = W[col[e]] · A[row(e)]                       gather-dot
- ``spmm_t``: out[l]   = Σ_{e: col[e] = l} val[e] · A[row(e)]        weight gradient

Each costs O(nnz·D) instead of the O(R·L·D) of the dense products they replace. On top
of them, two autograd functions give the model its gradients only where the maths has
them: :class:`SelectLogits` (encoder values at the chosen latents) and
:class:`DecodeSelected` (decoding sparse codes).
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


def spmm_t(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int) -> Tensor:
    """[L, D]: the transpose product, i.e. the gradient of a weight table."""
    order = torch.argsort(col, stable=True)
    counts = torch.bincount(col, minlength=n_latents)
    offsets = counts.cumsum(0) - counts
    rows = torch.repeat_interleave(torch.arange(A_rd.shape[0], device=col.device), crow.diff())
    return F.embedding_bag(rows[order], A_rd, offsets, per_sample_weights=val[order], mode="sum")


class SelectLogits(torch.autograd.Function):
    """Per-stream encoder logits at the selected latents, differentiable there only.

    The logits themselves come from the dense no-grad GEMM the model already did; this
    function gathers them and supplies the gradients that the gathered product
    ``W_enc[I] · (x − b_pre) + b_lat[I]`` has, for ``W_enc``, ``b_pre``, ``b_lat`` and
    the inputs ``x``.

    Arguments: ``W_enc`` [L, D], ``b_pre`` [D], ``b_lat`` [S, L], ``x_bd`` [B, D] (all
    streams side by side), ``logits_sbl`` [S', B, L] (streams present, with latent
    bias), ``idx_sbk`` [S', B, k], ``stream_ids`` (S' ints), ``cols`` (S' column
    slices). Returns the values [S', B, k] before the ReLU.
    """

    @staticmethod
    def forward(ctx, W_enc, b_pre, b_lat, x_bd, logits_sbl, idx_sbk, stream_ids, cols):
        ctx.save_for_backward(W_enc, b_pre, x_bd, idx_sbk)
        ctx.stream_ids, ctx.cols, ctx.n_streams = stream_ids, cols, b_lat.shape[0]
        return logits_sbl.gather(2, idx_sbk)

    @staticmethod
    def backward(ctx, grad_sbk):
        W_enc, b_pre, x_bd, idx_sbk = ctx.saved_tensors
        n, B, k = idx_sbk.shape
        L, D = W_enc.shape
        grad_W = grad_b_pre = grad_b_lat = grad_x = None
        # c[s, l]: total upstream gradient landing on latent l of stream s.
        c_sl = grad_sbk.new_zeros(n, L).scatter_add_(1, idx_sbk.reshape(n, -1), grad_sbk.reshape(n, -1))
        if ctx.needs_input_grad[2]:
            grad_b_lat = c_sl.new_zeros(ctx.n_streams, L)
            grad_b_lat[list(ctx.stream_ids)] = c_sl
        if ctx.needs_input_grad[1]:
            # d/d b_pre of W[I]·(x − b_pre) = −Σ c[l]·W[l] over each stream's columns.
            grad_b_pre = W_enc.new_zeros(D)
            for i, col in enumerate(ctx.cols):
                torch.mv(W_enc[:, col].t(), c_sl[i], out=grad_b_pre[col]).neg_()
        crow = uniform_crow(B, k, idx_sbk.device)
        if ctx.needs_input_grad[3]:
            grad_x = x_bd.new_zeros(B, D)
            for i, col in enumerate(ctx.cols):
                grad_x[:, col] = spmm(crow, idx_sbk[i].reshape(-1), grad_sbk[i].reshape(-1), W_enc[:, col])
        if ctx.needs_input_grad[0]:
            # Each sample row of stream s contributes only to its own columns.
            table = x_bd.new_zeros(n * B, D)
            for i, col in enumerate(ctx.cols):
                torch.sub(x_bd[:, col], b_pre[col], out=table[i * B : (i + 1) * B, col])
            grad_W = spmm_t(uniform_crow(n * B, k, idx_sbk.device), idx_sbk.reshape(-1),
                            grad_sbk.reshape(-1), table, L)
        return grad_W, grad_b_pre, grad_b_lat, grad_x, None, None, None, None


class DecodeSelected(torch.autograd.Function):
    """``spmm`` with gradients for the values and the weight table (no bias).

    Arguments: ``W_ld`` [L, D], ``crow`` [R + 1], ``col`` [nnz], ``val`` [nnz].
    """

    @staticmethod
    def forward(ctx, W_ld, crow, col, val):
        ctx.save_for_backward(W_ld, crow, col, val)
        return spmm(crow, col, val, W_ld)

    @staticmethod
    def backward(ctx, grad_rd):
        W_ld, crow, col, val = ctx.saved_tensors
        grad_W = grad_val = None
        grad_rd = grad_rd.contiguous()
        if ctx.needs_input_grad[0]:
            grad_W = spmm_t(crow, col, val, grad_rd, W_ld.shape[0])
        if ctx.needs_input_grad[3]:
            grad_val = sddmm(crow, col, grad_rd, W_ld)
        return grad_W, None, None, grad_val
