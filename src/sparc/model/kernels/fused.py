"""The fused path: the numba CPU kernels (:mod:`.numba_sparse`, :mod:`.numba_bf16`,
:mod:`.numba_adam`) for float32/float64 CPU tensors, as a
:class:`~sparc.model.kernels.base.Kernels`. Any other tensor (another device or dtype,
not contiguous, requiring a gradient under grad mode) takes the PyTorch kernels.

Importing this module imports numba: :func:`sparc.model.kernels.implementation` does it
only when the fused path is chosen, and reports a missing numba in one line.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparc.model.kernels import numba_adam, numba_bf16, numba_sparse
from sparc.model.kernels.base import TableStep
from sparc.model.kernels.pytorch import PyTorchKernels, block_bounds

_DTYPES = (torch.float32, torch.float64)


def _np(t: Tensor):
    return t.detach().numpy()


def _suits(*tensors: Tensor) -> bool:
    """Whether the numba kernels take these tensors: CPU, one float dtype, contiguous,
    none needing a gradient (the kernels write through numpy, outside autograd)."""
    W = tensors[0]
    if W.device.type != "cpu" or W.dtype not in _DTYPES:
        return False
    return not any(t.dtype != W.dtype or not t.is_contiguous() or t.requires_grad and torch.is_grad_enabled()
                   for t in tensors if t.is_floating_point())


def _full_rows(R: int, D: int, lo: Tensor | None, hi: Tensor | None) -> tuple[Tensor, Tensor]:
    if lo is None:
        return torch.zeros(R, dtype=torch.int64), torch.full((R,), D, dtype=torch.int64)
    return lo, hi


def _bounds(bounds: list[int]):
    return torch.tensor(bounds).numpy()


def _step_args(W_ld: Tensor, step: TableStep) -> tuple:
    return (_np(W_ld), _np(step.exp_avg), _np(step.exp_avg_sq), _bounds(step.bounds), *step.scalars)


def _shadow_args(W_ld: Tensor, step: TableStep) -> tuple:
    """The bf16 copy's buffers for the kernels: (W16 as uint16, wn, dwn), empty when
    there is no copy to write."""
    if step.shadow is None:
        S = len(step.bounds) - 1
        W16, wn = torch.empty(0, W_ld.shape[1], dtype=torch.int16), torch.empty(S, 0, dtype=torch.float64)
        return W16.numpy().view("uint16"), wn.numpy(), wn.numpy()
    W16, wn, dwn = step.shadow
    return W16.numpy().view("uint16"), wn.numpy(), dwn.numpy()


def _buckets(col: Tensor, n_latents: int):
    return numba_sparse.bucket_by_latent(_np(col), n_latents)


class FusedKernels(PyTorchKernels):
    """The numba CPU kernels; the PyTorch kernels for tensors they do not take."""

    name = "fused"
    steps_tables = True
    keeps_grad_buffers = True

    def spmm(self, crow, col, val, W_ld, *, shared=(1, 0), lo=None, hi=None):
        if not _suits(W_ld, val) or col.numel() == 0:
            return super().spmm(crow, col, val, W_ld, shared=shared, lo=lo, hi=hi)
        R, D = crow.numel() - 1, W_ld.shape[1]
        lo, hi = _full_rows(R, D, lo, hi)
        out = W_ld.new_empty(R, D)
        numba_sparse.spmm(_np(crow), _np(col), _np(val), _np(W_ld), shared[0], shared[1], _np(lo), _np(hi), _np(out))
        return out

    def sddmm(self, crow, col, A_rd, W_ld, *, shared=(1, 0)):
        if not _suits(W_ld, A_rd) or col.numel() == 0:
            return super().sddmm(crow, col, A_rd, W_ld, shared=shared)
        out = W_ld.new_empty(col.numel())
        numba_sparse.sddmm(_np(crow), _np(col), _np(A_rd), _np(W_ld), shared[0], shared[1], _np(out))
        return out

    def spmm_t(self, crow, col, val, A_rd, n_latents, *, arow=None, lo=None, hi=None, out=None, accumulate=False):
        if not (_suits(A_rd, val) if out is None else _suits(out, A_rd, val)):
            return super().spmm_t(crow, col, val, A_rd, n_latents, arow=arow, lo=lo, hi=hi, out=out,
                                  accumulate=accumulate)
        R, D = crow.numel() - 1, A_rd.shape[1]
        if out is None:
            out, accumulate = A_rd.new_empty(n_latents, D), False
        arow = torch.arange(R) if arow is None else arow
        lo, hi = _full_rows(R, D, lo, hi)
        start, order = _buckets(col, n_latents)
        numba_sparse.spmm_t(start, order, numba_sparse.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(arow),
                            _np(lo), _np(hi), _np(out), accumulate)
        return out

    def spmm_t_sddmm(self, crow, col, val, A_rd, W_ld, *, out=None, accumulate=False, shared=(1, 0), lo=None,
                     hi=None):
        W = W_ld.detach()
        if not (_suits(W, A_rd, val) if out is None else _suits(out, W, A_rd, val)) or col.numel() == 0:
            return super().spmm_t_sddmm(crow, col, val, A_rd, W_ld, out=out, accumulate=accumulate, shared=shared,
                                        lo=lo, hi=hi)
        if out is None:
            out, accumulate = A_rd.new_empty(W.shape), False
        lo, hi = _full_rows(crow.numel() - 1, W.shape[1], lo, hi)
        gval = A_rd.new_empty(col.numel())
        start, order = _buckets(col, W.shape[0])
        numba_sparse.spmm_t_sddmm(start, order, numba_sparse.rows_of_entries(_np(crow)), _np(val), _np(A_rd),
                                  _np(W), _np(lo), _np(hi), _np(out), _np(gval), accumulate)
        return out, gval

    def block_row_sum(self, W_ld, coef_sl, cols):
        if not _suits(W_ld.detach(), coef_sl):
            return super().block_row_sum(W_ld, coef_sl, cols)
        out = W_ld.new_zeros(W_ld.shape[1])
        clo, chi = block_bounds(cols)
        numba_sparse.block_row_sum(_np(W_ld), _np(coef_sl), clo.numpy(), chi.numpy(), _np(out))
        return out

    def normalize_rows_(self, W_ld, bounds):
        if not _suits(W_ld.detach()):
            return super().normalize_rows_(W_ld, bounds)
        W = _np(W_ld)
        numba_sparse.normalize_rows(W, _bounds(bounds), W.dtype.type(torch.finfo(W_ld.dtype).tiny))

    def remove_parallel_(self, W_ld, G_ld, bounds):
        if not _suits(W_ld.detach(), G_ld):
            return super().remove_parallel_(W_ld, G_ld, bounds)
        numba_sparse.remove_parallel(_np(W_ld), _np(G_ld), _bounds(bounds))

    def bf16_shadow(self, W_ld, bounds):
        if W_ld.dtype != torch.float32 or not _suits(W_ld.detach()):
            return super().bf16_shadow(W_ld, bounds)
        L, D = W_ld.shape
        W16 = torch.empty(L, D, dtype=torch.int16)
        wn = torch.empty(len(bounds) - 1, L, dtype=torch.float64)
        dwn = torch.empty_like(wn)
        numba_bf16.bf16_shadow(_np(W_ld), _bounds(bounds), W16.numpy().view("uint16"), wn.numpy(), dwn.numpy())
        return W16.view(torch.bfloat16), wn, dwn

    def stream_dots(self, idx_bm, U_bd, W_ld, bounds, bias_sl=None):
        if not _suits(W_ld.detach(), U_bd):
            return super().stream_dots(idx_bm, U_bd, W_ld, bounds, bias_sl)
        B, m = idx_bm.shape
        out = U_bd.new_empty(len(bounds) - 1, B * m)
        bias = W_ld.new_empty(len(bounds) - 1, 0) if bias_sl is None else bias_sl.detach().contiguous()
        start, order = _buckets(idx_bm.reshape(-1), W_ld.shape[0])
        numba_bf16.stream_dots(start, order, m, _np(U_bd), _np(W_ld), _bounds(bounds), _np(bias), _np(out))
        return out.view(-1, B, m)

    def top_candidates(self, Z16_bl, bias_l, n):
        if (Z16_bl.device.type != "cpu" or not Z16_bl.is_contiguous() or bias_l.dtype != torch.float32
                or not _suits(bias_l)):
            return super().top_candidates(Z16_bl, bias_l, n)
        B = Z16_bl.shape[0]
        cand = torch.empty(B, n, dtype=torch.int64)
        z_least, abs_max = torch.empty(B), torch.empty(B)
        numba_bf16.top_candidates(Z16_bl.view(torch.int16).numpy().view("uint16"), _np(bias_l.contiguous()), n,
                                  cand.numpy(), z_least.numpy(), abs_max.numpy())
        return cand, z_least, abs_max

    def block_sse(self, M_rd, b_pre, X_bd, n, cols):
        if not _suits(M_rd.detach(), b_pre.detach(), X_bd.detach()):
            return super().block_sse(M_rd, b_pre, X_bd, n, cols)
        return BlockSSE.apply(M_rd, b_pre, X_bd, n, tuple(cols))

    # ------------------------------------------------------------------ the optimizer step in the kernels' pass

    def adam_step(self, W_ld: Tensor, G_ld: Tensor, step: TableStep, *, decoder: bool) -> None:
        """The Adam ``step`` of ``W_ld`` with its gradient ``G_ld`` in one pass over the rows
        (with the decoder constraint when ``decoder``)."""
        P, M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, tiny = _step_args(W_ld, step)
        numba_adam.adam_rows(P, _np(G_ld), M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, decoder, tiny,
                             *_shadow_args(W_ld, step))
        step.done()

    def spmm_t_step(self, crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, step: TableStep, *,
                    arow: Tensor, lo: Tensor, hi: Tensor, block_coef: Tensor | None = None) -> Tensor | None:
        """:meth:`spmm_t` as ``W_ld``'s gradient and the Adam ``step`` of ``W_ld`` with it, in
        one pass: the encoder's weight gradient is never written out. With ``block_coef``
        [S, L], also returns :meth:`block_row_sum` of the rows before the step."""
        start, order = _buckets(col, W_ld.shape[0])
        if block_coef is None:  # no rows of coefficients: the kernel skips the sum
            coef, rsum = W_ld.new_empty(0, W_ld.shape[0]), W_ld.new_empty(0)
        else:
            coef, rsum = block_coef.contiguous(), W_ld.new_zeros(W_ld.shape[1])
        numba_adam.spmm_t_adam(start, order, numba_sparse.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(arow),
                               _np(lo), _np(hi), *_step_args(W_ld, step), *_shadow_args(W_ld, step), _np(coef),
                               _np(rsum))
        step.done()
        return None if block_coef is None else rsum

    def spmm_t_sddmm_step(self, crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor,
                          step: TableStep, *, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
        """:meth:`spmm_t_sddmm`'s value gradient (returned, from the rows before the step) and
        the Adam ``step`` of ``W_ld`` with the decoder constraint, in one pass."""
        lo, hi = _full_rows(crow.numel() - 1, W_ld.shape[1], lo, hi)
        gval = A_rd.new_empty(col.numel())
        start, order = _buckets(col, W_ld.shape[0])
        P, M, V, bounds, *scalars = _step_args(W_ld, step)
        numba_adam.spmm_t_sddmm_adam(start, order, numba_sparse.rows_of_entries(_np(crow)), _np(val), _np(A_rd),
                                     _np(lo), _np(hi), P, M, V, _np(gval), bounds, *scalars)
        step.done()
        return gval


class BlockSSE(torch.autograd.Function):
    """:meth:`FusedKernels.block_sse`: the NMSE numerators and norms in one pass over the
    rows, gradients in another, no [n, B, D] temporaries.

    Arguments: ``M_rd`` [n·B, D], ``b_pre`` [D], ``X_bd`` [B, D], ``n``, ``cols`` (T
    column slices). Returns (num [n, B, T], den [B, T]).
    """

    @staticmethod
    def forward(ctx, M_rd, b_pre, X_bd, n, cols):
        lo, hi = block_bounds(cols)
        B, T = X_bd.shape[0], len(cols)
        num, den = M_rd.new_empty(n, B, T), X_bd.new_empty(B, T)
        numba_sparse.block_sse(_np(M_rd), _np(b_pre), _np(X_bd), n, lo.numpy(), hi.numpy(), num.numpy(), den.numpy())
        ctx.save_for_backward(M_rd, b_pre, X_bd, lo, hi)
        ctx.n = n
        return num, den

    @staticmethod
    def backward(ctx, g_num, g_den):
        M_rd, b_pre, X_bd, lo, hi = ctx.saved_tensors
        B, T = X_bd.shape[0], lo.shape[0]
        g_num = M_rd.new_zeros(ctx.n, B, T) if g_num is None else g_num.contiguous()
        g_den = X_bd.new_zeros(B, T) if g_den is None else g_den.contiguous()
        gM, gX = torch.empty_like(M_rd), torch.empty_like(X_bd)
        gB_parts = b_pre.new_empty(min(B, 16), b_pre.shape[0]) if B else b_pre.new_zeros(1, b_pre.shape[0])
        numba_sparse.block_sse_grad(_np(M_rd), _np(b_pre), _np(X_bd), ctx.n, lo.numpy(), hi.numpy(), g_num.numpy(),
                                    g_den.numpy(), gM.numpy(), gX.numpy(), gB_parts.numpy())
        gB = gB_parts.sum(0)
        return (gM if ctx.needs_input_grad[0] else None, gB if ctx.needs_input_grad[1] else None,
                gX if ctx.needs_input_grad[2] else None, None, None)
