"""Sparse kernels of the efficient formulation (SPEC §4), in pure PyTorch.

A row-sparse code is ``idx_rk`` [R, k] latent ids with values ``val_rk`` [R, k]; a
weight table ``W_ld`` [L, D] holds one row per latent (the encoder or the decoder of
all streams side by side). The three primitives:

- ``spmm``:   out[r]    = Σ_j val[r, j] · W[idx[r, j]]               decode
- ``sddmm``:  out[r, j] = W[idx[r, j]] · A[r]                        gather-dot
- ``spmm_t``: out[l]    = Σ_{(r, j): idx[r, j] = l} val[r, j] · A[r]   weight gradient

Each costs O(R·k·D) instead of the O(R·L·D) of the dense products they replace. On top
of them, two autograd functions give the model its gradients only where the maths has
them: :class:`SelectLogits` (encoder values at the chosen latents) and
:class:`DecodeSelected` (decoding a sparse code).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def spmm(idx_rk: Tensor, val_rk: Tensor, W_ld: Tensor) -> Tensor:
    """[R, D]: each row's code decoded through the weight table."""
    return F.embedding_bag(idx_rk, W_ld, per_sample_weights=val_rk, mode="sum")


def sddmm(idx_rk: Tensor, A_rd: Tensor, W_ld: Tensor) -> Tensor:
    """[R, k]: dot product of each selected weight row with its sample's row of ``A``."""
    R, k = idx_rk.shape
    if A_rd.dtype in (torch.float32, torch.float64):
        crow = torch.arange(0, R * k + 1, k, device=idx_rk.device)
        pattern = torch.sparse_csr_tensor(
            crow, idx_rk.reshape(-1), A_rd.new_zeros(R * k), (R, W_ld.shape[0]),
            check_invariants=False,
        )
        return torch.sparse.sampled_addmm(pattern, A_rd, W_ld.t(), beta=0.0).values().view(R, k)
    # Half precision: sampled_addmm lacks kernels, so gather rows in slabs instead.
    out = A_rd.new_empty(R, k)
    step = max(1, (1 << 22) // max(1, k * W_ld.shape[1]))
    for r in range(0, R, step):
        rows = W_ld[idx_rk[r : r + step]]
        out[r : r + step] = torch.bmm(rows, A_rd[r : r + step, :, None]).squeeze(-1)
    return out


def spmm_t(idx_rk: Tensor, val_rk: Tensor, A_rd: Tensor, n_latents: int) -> Tensor:
    """[L, D]: the transpose product, i.e. the gradient of a weight table."""
    k = idx_rk.shape[1]
    flat = idx_rk.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_latents)
    offsets = counts.cumsum(0) - counts
    rows = torch.div(order, k, rounding_mode="floor")
    return F.embedding_bag(
        rows, A_rd, offsets, per_sample_weights=val_rk.reshape(-1)[order], mode="sum"
    )


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
        if ctx.needs_input_grad[3]:
            grad_x = x_bd.new_zeros(B, D)
            for i, col in enumerate(ctx.cols):
                grad_x[:, col] = spmm(idx_sbk[i], grad_sbk[i], W_enc[:, col])
        if ctx.needs_input_grad[0]:
            # Each sample row of stream s contributes only to its own columns.
            table = x_bd.new_zeros(n * B, D)
            for i, col in enumerate(ctx.cols):
                torch.sub(x_bd[:, col], b_pre[col], out=table[i * B : (i + 1) * B, col])
            grad_W = spmm_t(idx_sbk.reshape(n * B, k), grad_sbk.reshape(n * B, k), table, L)
        return grad_W, grad_b_pre, grad_b_lat, grad_x, None, None, None, None


class DecodeSelected(torch.autograd.Function):
    """``spmm`` with gradients for the values and the weight table (no bias)."""

    @staticmethod
    def forward(ctx, W_ld, idx_rk, val_rk):
        ctx.save_for_backward(W_ld, idx_rk, val_rk)
        return spmm(idx_rk, val_rk, W_ld)

    @staticmethod
    def backward(ctx, grad_rd):
        W_ld, idx_rk, val_rk = ctx.saved_tensors
        grad_W = grad_val = None
        grad_rd = grad_rd.contiguous()
        if ctx.needs_input_grad[0]:
            grad_W = spmm_t(idx_rk, val_rk, grad_rd, W_ld.shape[0])
        if ctx.needs_input_grad[2]:
            grad_val = sddmm(idx_rk, grad_rd, W_ld)
        return grad_W, None, grad_val
