"""The two autograd functions of the efficient formulation (docs/method.md §4): gradients
only where the maths has them, computed by the kernels of :mod:`sparc.model.kernels`.

Both take an optional persistent gradient buffer for their weight table. With one, the
weight's gradient is written into it and the buffer becomes ``W.grad`` (or, when
``W.grad`` already holds a gradient, is added to ``W.grad`` in place), so a training
step allocates no 84 MB gradient; the function then returns no gradient for ``W`` (it
is already in ``.grad``). That suits ``loss.backward()`` followed by an optimizer step
and ``zero_grad(set_to_none=True)`` — the trainer's loop — but not
``torch.autograd.grad``, so it is opt-in (:class:`sparc.model.engine.StepEngine`).

Further still, both take an optional ``table_step``: a callable giving, at backward
time, a :class:`~sparc.model.kernels.TableStep` (or None). With one, the fused kernels
take the table's Adam step while they form its gradient, which is never written out,
and ``W.grad`` stays as it was (:meth:`sparc.model.engine.StepEngine.step_tables_in_backward`).

Both take the model's :class:`~sparc.model.kernels.base.Kernels` as their first argument.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparc.model.kernels.base import Kernels
from sparc.model.kernels.pytorch import block_bounds, row_mask, uniform_crow


def _into_grad(W: Tensor, buf: Tensor | None, compute) -> tuple:
    """``compute(out, accumulate)`` → (W's gradient, *rest), written where it belongs:
    returned (no buffer), or into the buffer that becomes ``W.grad``, or added to the
    ``W.grad`` already there; with a buffer, W's gradient is returned as None."""
    if buf is None:
        return compute(None, False)
    if W.grad is None:
        grad, *rest = compute(buf, False)
        W.grad = grad
    else:
        _, *rest = compute(W.grad, True)
    return (None, *rest)


def _weight_grad(K: Kernels, W: Tensor, buf: Tensor | None, crow, col, val, A, n_latents,
                 **rows) -> Tensor | None:
    """W's gradient, returned — or, with a persistent buffer, written into ``W.grad``."""
    return _into_grad(W, buf, lambda out, acc: (K.spmm_t(crow, col, val, A, n_latents, out=out,
                                                          accumulate=acc, **rows),))[0]


class SelectLogits(torch.autograd.Function):
    """Per-stream encoder logits at the selected latents, differentiable there only.

    The values themselves come from the no-grad encoder pass the model already did; this
    function supplies the gradients that the gathered product
    ``W_enc[I] · (x − b_pre) + b_lat[I]`` has, for ``W_enc``, ``b_pre``, ``b_lat`` and
    the inputs ``x``.

    Arguments: ``kernels``, ``W_enc`` [L, D], ``b_pre`` [D], ``b_lat`` [S, L], ``x_bd`` [B, D] (all
    streams side by side), ``values_sbk`` [S', B, k] (the logits at ``idx_sbk``, with
    latent bias), ``idx_sbk`` [S', B, k], ``stream_ids`` (S' ints), ``cols`` (S' column
    slices), ``grad_buf`` (None or a persistent buffer for W_enc's gradient). Returns the
    values [S', B, k] before the ReLU; ``table_step`` (None, or see the module docstring);
    ``keep_sbk`` (None, or [S', B, k] bool: False on padding slots, whose values the
    caller zeroes — their weight gradient is then left out of the kernels' pass, so a
    rule's padding costs nothing there).
    """

    @staticmethod
    def forward(ctx, kernels, W_enc, b_pre, b_lat, x_bd, values_sbk, idx_sbk, stream_ids, cols, grad_buf,
                table_step=None, keep_sbk=None):
        ctx.kernels = kernels
        ctx.keep = keep_sbk
        ctx.save_for_backward(W_enc, b_pre, x_bd, idx_sbk)
        ctx.stream_ids, ctx.cols, ctx.n_streams = stream_ids, cols, b_lat.shape[0]
        ctx.W_enc, ctx.grad_buf, ctx.table_step = W_enc, grad_buf, table_step
        return values_sbk.to(W_enc.dtype, copy=True)  # logits made under autocast: the weights' dtype

    @staticmethod
    def backward(ctx, grad_sbk):
        K = ctx.kernels
        W_enc, b_pre, x_bd, idx_sbk = ctx.saved_tensors
        n, B, k = idx_sbk.shape
        L, D = W_enc.shape
        grad_sbk = grad_sbk.contiguous()
        grad_W = grad_b_pre = grad_b_lat = grad_x = None
        # c[s, l]: total upstream gradient landing on latent l of stream s.
        c_sl = grad_sbk.new_zeros(n, L).scatter_add_(1, idx_sbk.reshape(n, -1), grad_sbk.reshape(n, -1))
        c_all = c_sl.new_zeros(ctx.n_streams, L)  # the same for every stream of the model (0: absent)
        c_all[list(ctx.stream_ids)] = c_sl
        if ctx.needs_input_grad[3]:
            grad_b_lat = c_all
        # The table's step, if the backward takes it, comes last: it changes W_enc, which
        # the gradients before it read.
        step = ctx.table_step() if ctx.needs_input_grad[1] and ctx.table_step is not None else None
        if ctx.needs_input_grad[2] and step is None:
            # d/d b_pre of W[I]·(x − b_pre) = −Σ c[l]·W[l] over each stream's columns (with
            # the step: formed in its pass over W_enc, below).
            grad_b_pre = K.block_row_sum(W_enc, c_sl, list(ctx.cols)).neg_()
        crow = uniform_crow(B, k, idx_sbk.device)
        if ctx.needs_input_grad[4]:
            grad_x = x_bd.new_zeros(B, D)
            for i, col in enumerate(ctx.cols):
                grad_x[:, col] = K.spmm(crow, idx_sbk[i].reshape(-1), grad_sbk[i].reshape(-1),
                                        W_enc[:, col].contiguous())
        if ctx.needs_input_grad[1]:
            # Code row a·B + b (stream a, sample b) reads (x − b_pre)[b] in the columns of
            # stream a only: each stream's logits depend on its own columns.
            dev = idx_sbk.device
            arow = torch.arange(B, device=dev).repeat(n)
            lo, hi = (t.repeat_interleave(B) for t in block_bounds(ctx.cols, dev))
            u_bd = (x_bd - b_pre).contiguous()
            crow, col, val = uniform_crow(n * B, k, dev), idx_sbk.reshape(-1), grad_sbk.reshape(-1)
            if ctx.keep is not None:  # padding slots left out (their gradient is 0)
                kept = ctx.keep.reshape(-1)
                crow = torch.zeros(n * B + 1, dtype=torch.long, device=dev)
                torch.cumsum(ctx.keep.reshape(n * B, k).sum(1), 0, out=crow[1:])
                col, val = col[kept], val[kept].contiguous()
            if step is not None:
                rsum = K.spmm_t_step(crow, col, val, u_bd, ctx.W_enc.detach(), step, arow=arow, lo=lo, hi=hi,
                                     block_coef=c_all if ctx.needs_input_grad[2] else None)
                grad_b_pre = None if rsum is None else rsum.neg_()
            else:
                grad_W = _weight_grad(K, ctx.W_enc, ctx.grad_buf, crow, col, val, u_bd, L, arow=arow, lo=lo, hi=hi)
        return None, grad_W, grad_b_pre, grad_b_lat, grad_x, None, None, None, None, None, None, None


class DecodeSelected(torch.autograd.Function):
    """``spmm`` with gradients for the values and the weight table (no bias).

    Arguments: ``kernels``, ``W_ld`` [L, D], ``crow`` [R + 1], ``col`` [nnz], ``val`` [nnz],
    ``shared`` ((n, G): rows with the same latents, see :meth:`sparc.model.kernels.base.Kernels.spmm`),
    ``grad_buf`` (None or a persistent buffer for W's gradient), ``lo``/``hi`` (None, or
    [R]: row r decoded in its columns ``lo[r]:hi[r]`` only), ``table_step`` (None, or see
    the module docstring: W is the decoder, stepped with its constraint).
    """

    @staticmethod
    def forward(ctx, kernels, W_ld, crow, col, val, shared=(1, 0), grad_buf=None, lo=None, hi=None, table_step=None):
        ctx.kernels = kernels
        ctx.save_for_backward(W_ld, crow, col, val)
        ctx.W, ctx.shared, ctx.grad_buf, ctx.lo, ctx.hi = W_ld, shared, grad_buf, lo, hi
        ctx.table_step = table_step
        return kernels.spmm(crow, col, val, W_ld, shared=shared, lo=lo, hi=hi)

    @staticmethod
    def backward(ctx, grad_rd):
        K = ctx.kernels
        W_ld, crow, col, val = ctx.saved_tensors
        grad_W = grad_val = None
        grad_rd = grad_rd.contiguous()
        step = ctx.table_step() if ctx.table_step is not None and ctx.needs_input_grad[1] else None
        if step is not None:
            grad_val = K.spmm_t_sddmm_step(crow, col, val, grad_rd, ctx.W.detach(), step, lo=ctx.lo, hi=ctx.hi)
            return None, None, None, None, grad_val if ctx.needs_input_grad[4] else None, None, None, None, None, None
        if ctx.needs_input_grad[1] and ctx.needs_input_grad[4]:
            # Both: one pass over the latents (fused kernels), in each row's columns.
            grad_W, grad_val = _into_grad(ctx.W, ctx.grad_buf, lambda out, acc: K.spmm_t_sddmm(
                crow, col, val, grad_rd, W_ld, out=out, accumulate=acc, shared=ctx.shared, lo=ctx.lo, hi=ctx.hi))
            return None, grad_W, None, None, grad_val, None, None, None, None, None
        if ctx.lo is not None:  # the columns a row was not decoded in take no gradient
            grad_rd = grad_rd * row_mask(ctx.lo, ctx.hi, grad_rd.shape[1], grad_rd.dtype)
        if ctx.needs_input_grad[1]:
            grad_W = _weight_grad(K, ctx.W, ctx.grad_buf, crow, col, val, grad_rd, W_ld.shape[0])
        if ctx.needs_input_grad[4]:
            grad_val = K.sddmm(crow, col, grad_rd, W_ld, shared=ctx.shared)
        return None, grad_W, None, None, grad_val, None, None, None, None, None


