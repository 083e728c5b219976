"""The Triton path: the GPU kernels of :mod:`.triton_gpu` for CUDA tensors of float32,
bfloat16 and float16 (and, under Triton's interpreter, CPU tensors, for tests), as a
:class:`~sparc.model.kernels.base.Kernels`. The products go through Triton; the row
operations of the decoder constraint and the selection's helpers through PyTorch, which
is fast on a GPU. Imported only when this path is chosen: a CPU-only process never
imports Triton.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparc.model.kernels import triton_gpu
from sparc.model.kernels.pytorch import PyTorchKernels

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _suits(*tensors: Tensor) -> bool:
    """One device that Triton serves, one float dtype it takes, no gradient needed."""
    W = tensors[0]
    if W.dtype not in DTYPES or not (W.device.type == "cuda" or triton_gpu.INTERPRETED and W.device.type == "cpu"):
        return False
    return not (any(t.device != W.device for t in tensors) or any(
        t.dtype != W.dtype or t.requires_grad and torch.is_grad_enabled() for t in tensors if t.is_floating_point()))


class TritonKernels(PyTorchKernels):
    """The Triton kernels; the PyTorch kernels for tensors they do not take."""

    name = "triton"
    keeps_grad_buffers = True

    def spmm(self, crow, col, val, W_ld, *, shared=(1, 0), lo=None, hi=None):
        if not _suits(W_ld, val):
            return super().spmm(crow, col, val, W_ld, shared=shared, lo=lo, hi=hi)
        return triton_gpu.spmm(crow, col, val, W_ld, shared=shared, lo=lo, hi=hi)

    def sddmm(self, crow, col, A_rd, W_ld, *, shared=(1, 0)):
        if not _suits(W_ld, A_rd):
            return super().sddmm(crow, col, A_rd, W_ld, shared=shared)
        return triton_gpu.sddmm(crow, col, A_rd, W_ld)

    def spmm_t(self, crow, col, val, A_rd, n_latents, *, arow=None, lo=None, hi=None, out=None, accumulate=False):
        if not (_suits(A_rd, val) if out is None else _suits(out, A_rd, val)):
            return super().spmm_t(crow, col, val, A_rd, n_latents, arow=arow, lo=lo, hi=hi, out=out,
                                  accumulate=accumulate)
        return triton_gpu.spmm_t(crow, col, val, A_rd, n_latents, arow=arow, lo=lo, hi=hi, out=out,
                                 accumulate=accumulate)

    def spmm_t_sddmm(self, crow, col, val, A_rd, W_ld, *, out=None, accumulate=False, shared=(1, 0), lo=None,
                     hi=None):
        W = W_ld.detach()
        if not (_suits(W, A_rd, val) if out is None else _suits(out, W, A_rd, val)):
            return super().spmm_t_sddmm(crow, col, val, A_rd, W_ld, out=out, accumulate=accumulate, shared=shared,
                                        lo=lo, hi=hi)
        return triton_gpu.spmm_t_sddmm(crow, col, val, A_rd, W, out=out, accumulate=accumulate, lo=lo, hi=hi)
