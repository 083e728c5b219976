"""Sparse kernels of the efficient formulation (docs/method.md §4), one interface over
several implementations.

Sparse codes are handled as the rows of a CSR matrix [R, L]: row r holds the entries
``col[crow[r]:crow[r+1]]`` (latent ids) with values ``val[...]``. Rows may have different
lengths, so the main codes (k entries) and the AuxK codes (k_aux entries) go through one
call. A weight table ``W_ld`` [L, D] holds one row per latent (the encoder or the
decoder of all streams side by side). The primitives:

- ``spmm``:   out[r]   = Σ_{e in row r} val[e] · W[col[e]]            decode
- ``sddmm``:  out[e]   = W[col[e]] · A[row(e)]                       gather-dot
- ``spmm_t``: out[l]   = Σ_{e: col[e] = l} val[e] · A[row(e)]        weight gradient
- ``normalize_rows_`` / ``remove_parallel_``: the decoder constraint, per stream block.

Which implementation runs is decided once per process (:func:`kernels_for`):

- ``fused`` — :mod:`.numba_cpu`, parallel numba kernels, for float32/float64 on the CPU;
- ``triton`` — :mod:`.triton_gpu`, Triton kernels, for float32/bfloat16/float16 on a
  CUDA GPU when Triton imports (``pip install 'sparc-sae[gpu]'``); imported only then,
  so a CPU-only process never imports Triton;
- ``pytorch`` — :mod:`.pytorch`, PyTorch ops: every other device and dtype, the CPU
  when numba is missing (with a one-line notice), a GPU without Triton. It is also the
  oracle the other kernels are tested against.

``SPARC_KERNELS=pytorch`` (or :func:`set_kernels`) forces the PyTorch path;
``SPARC_KERNELS=fused`` makes a missing numba an error instead of a notice, and
``SPARC_KERNELS=triton`` a missing Triton or GPU. With ``triton`` and Triton's
interpreter on (``TRITON_INTERPRET=1``, for tests), CPU tensors take the Triton kernels.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.model.kernels import pytorch as _pt
from sparc.model.kernels.pytorch import csr_tensor, uniform_crow
from sparc.options import env_choice

__all__ = [
    "csr_tensor", "uniform_crow", "spmm", "sddmm", "spmm_t", "spmm_t_sddmm", "normalize_rows_", "remove_parallel_",
    "bf16_shadow", "stream_dots", "top_candidates", "block_sse", "TableStep", "kernels_for", "set_kernels", "MODES",
]

MODES = ("auto", "fused", "pytorch", "triton")
_mode: str | None = None
_numba: ModuleType | None | bool = None  # None: not tried yet; False: unavailable
_triton_mod: ModuleType | None | bool = None  # the same for the Triton kernels
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def set_kernels(mode: str) -> None:
    """Choose the kernels: ``auto`` (fused where possible), ``fused`` (fail if the fused
    kernels cannot load), ``triton`` (fail without a GPU and Triton), ``pytorch``."""
    if mode not in MODES:
        raise SparcError(f"kernels must be one of {', '.join(MODES)}, got {mode!r}")
    _set_mode(mode)


def _current_mode() -> str:
    if _mode is None:
        _set_mode(env_choice("SPARC_KERNELS", MODES))
    return _mode


def _set_mode(mode: str) -> None:
    global _mode
    if mode == "triton":
        _require_triton()
    _mode = mode
    if mode == "fused" and _load_numba() is None:
        raise _fused_unavailable()


def _fused_unavailable() -> SparcError:
    return SparcError(f"the fused CPU kernels cannot load ({_numba_error}); install them with: pip install numba")


def _import_optional(name: str) -> tuple[ModuleType | bool, str]:
    """(the module, "") or (False, why in one line): numba or Triton may be missing or
    fail to initialise."""
    try:
        return importlib.import_module(name), ""
    except Exception as e:  # ImportError, or the library failing to initialise
        return False, f"{type(e).__name__}: {e}".splitlines()[0]


_numba_error = ""


def _load_numba() -> ModuleType | None:
    global _numba, _numba_error
    if _numba is None:
        _numba, _numba_error = _import_optional("sparc.model.kernels.numba_cpu")
        if not _numba and _current_mode() != "pytorch":
            print(f"sparc: fused CPU kernels unavailable ({_numba_error}); using the slower "
                  "PyTorch kernels (pip install numba)", file=sys.stderr)
    return _numba or None


_triton_error = ""


def _load_triton() -> ModuleType | None:
    global _triton_mod, _triton_error
    if _triton_mod is None:
        _triton_mod, _triton_error = _import_optional("sparc.model.kernels.triton_gpu")
    return _triton_mod or None


def _triton_ready(kind: str, mode: str) -> bool:
    """Whether the Triton kernels run on device type ``kind``: a CUDA GPU, or the CPU
    under Triton's interpreter with ``triton`` forced (for tests). The checks come before
    the import, so a CPU-only process never imports Triton unless ``triton`` is forced."""
    global _triton_error
    if kind == "cuda":
        if not torch.cuda.is_available():
            _triton_error = "no CUDA GPU"
            return False
        return _load_triton() is not None
    if kind == "cpu" and mode == "triton" and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return (mod := _load_triton()) is not None and mod.INTERPRETED
    return False


def _require_triton() -> None:
    """The one-line error of a forced ``triton`` that cannot run anywhere."""
    if not (_triton_ready("cuda", "triton") or _triton_ready("cpu", "triton")):
        raise SparcError(f"the Triton GPU kernels are unavailable ({_triton_error or 'no CUDA GPU'}); "
                         "they need a CUDA GPU and: pip install 'sparc-sae[gpu]'")


def kernels_for(device: torch.device | str, dtype: torch.dtype, mode: str | None = None) -> str:
    """``"fused"``, ``"triton"`` or ``"pytorch"``: the kernels that run for weights on
    ``device`` of ``dtype`` (CPU float32/float64 get the fused kernels when they load,
    CUDA float32/bfloat16/float16 the Triton kernels when Triton imports), under
    ``mode`` (one of :data:`MODES`; default: this process's)."""
    mode = _current_mode() if mode is None else mode
    kind = torch.device(device).type
    if mode != "pytorch" and dtype in _TRITON_DTYPES and _triton_ready(kind, mode):
        return "triton"
    if mode == "pytorch" or kind != "cpu" or dtype not in (torch.float32, torch.float64):
        return "pytorch"
    if _load_numba() is None:
        if mode == "fused":
            raise _fused_unavailable()
        return "pytorch"
    return "fused"


def _fused(*tensors: Tensor) -> ModuleType | None:
    """The numba module when every tensor suits it (CPU, one float dtype, contiguous)."""
    W = tensors[0]
    if kernels_for(W.device, W.dtype) != "fused":
        return None
    if any(t.dtype != W.dtype or not t.is_contiguous() or t.requires_grad and torch.is_grad_enabled()
           for t in tensors if t.is_floating_point()):
        return None
    return _load_numba()


def _triton(*tensors: Tensor) -> ModuleType | None:
    """The Triton module when every tensor suits it (one device, one float dtype)."""
    W = tensors[0]
    if kernels_for(W.device, W.dtype) != "triton":
        return None
    if any(t.device != W.device for t in tensors) or any(
            t.dtype != W.dtype or t.requires_grad and torch.is_grad_enabled() for t in tensors if t.is_floating_point()):
        return None
    return _load_triton()


def _np(t: Tensor):
    return t.detach().numpy()


def spmm(crow: Tensor, col: Tensor, val: Tensor, W_ld: Tensor, *, shared: tuple[int, int] = (1, 0),
         lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """[R, D]: each row's code decoded through the weight table. ``shared = (n, G)``: the
    first n·G rows are n blocks of G rows with the same latents block to block (the
    streams of a sample under global TopK), so each weight row is read once for them.
    ``lo``/``hi`` [R]: row r is decoded in its columns ``lo[r]:hi[r]`` only, 0 elsewhere
    (an AuxK code serves its own stream; shared rows are always decoded in full)."""
    if (tg := _triton(W_ld, val)) is not None:
        return tg.spmm(crow, col, val, W_ld, shared=shared, lo=lo, hi=hi)
    nb = _fused(W_ld, val)
    if nb is None or col.numel() == 0:
        out = _pt.spmm(crow, col, val, W_ld)
        return out if lo is None else out * _row_mask(lo, hi, out.shape[1], out.dtype)
    R, D = crow.numel() - 1, W_ld.shape[1]
    lo, hi = _full_rows(R, D, lo, hi)
    out = W_ld.new_empty(R, D)
    nb.spmm(_np(crow), _np(col), _np(val), _np(W_ld), shared[0], shared[1], _np(lo), _np(hi), _np(out))
    return out


def _full_rows(R: int, D: int, lo: Tensor | None, hi: Tensor | None) -> tuple[Tensor, Tensor]:
    if lo is None:
        return torch.zeros(R, dtype=torch.int64), torch.full((R,), D, dtype=torch.int64)
    return lo, hi


def _row_mask(lo: Tensor, hi: Tensor, D: int, dtype: torch.dtype) -> Tensor:
    """[R, D]: 1 in each row's columns ``lo[r]:hi[r]``, else 0."""
    c = torch.arange(D, device=lo.device)
    return ((c >= lo[:, None]) & (c < hi[:, None])).to(dtype)


def sddmm(crow: Tensor, col: Tensor, A_rd: Tensor, W_ld: Tensor, *, shared: tuple[int, int] = (1, 0)) -> Tensor:
    """[nnz]: dot product of each entry's weight row with its row of ``A``."""
    if (tg := _triton(W_ld, A_rd)) is not None:
        return tg.sddmm(crow, col, A_rd, W_ld)
    nb = _fused(W_ld, A_rd)
    if nb is None or col.numel() == 0:
        return _pt.sddmm(crow, col, A_rd, W_ld)
    out = W_ld.new_empty(col.numel())
    nb.sddmm(_np(crow), _np(col), _np(A_rd), _np(W_ld), shared[0], shared[1], _np(out))
    return out


def spmm_t(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int, *,
           arow: Tensor | None = None, lo: Tensor | None = None, hi: Tensor | None = None,
           out: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """[L, D]: the transpose product (a weight table's gradient). Row r of the code reads
    ``A[arow[r], lo[r]:hi[r]]`` (default ``A[r]``, all columns). With ``out``, the result
    is written there (added to it with ``accumulate``) and ``out`` is returned."""
    if (tg := _triton(A_rd, val) if out is None else _triton(out, A_rd, val)) is not None:
        return tg.spmm_t(crow, col, val, A_rd, n_latents, arow=arow, lo=lo, hi=hi, out=out, accumulate=accumulate)
    nb = _fused(A_rd, val) if out is None else _fused(out, A_rd, val)
    if nb is None:
        res = _pt.spmm_t(crow, col, val, A_rd, n_latents, arow, lo, hi)
        if out is None:
            return res
        return out.add_(res) if accumulate else out.copy_(res)
    R, D = crow.numel() - 1, A_rd.shape[1]
    if out is None:
        out, accumulate = A_rd.new_empty(n_latents, D), False
    arow = torch.arange(R) if arow is None else arow
    lo = torch.zeros(R, dtype=torch.int64) if lo is None else lo
    hi = torch.full((R,), D, dtype=torch.int64) if hi is None else hi
    col_np = _np(col)
    start, order = nb.bucket_by_latent(col_np, n_latents)
    nb.spmm_t(start, order, nb.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(arow),
              _np(lo), _np(hi), _np(out), accumulate)
    return out


def spmm_t_sddmm(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, *,
                 out: Tensor | None = None, accumulate: bool = False,
                 shared: tuple[int, int] = (1, 0), lo: Tensor | None = None,
                 hi: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(spmm_t(crow, col, val, A, L), sddmm(crow, col, A, W))``: the gradients of a
    decode's weight table and values, row r in its columns ``lo[r]:hi[r]`` (as decoded
    by :func:`spmm`). Fused, in one pass over the latents."""
    if (tg := _triton(W_ld.detach(), A_rd, val) if out is None else _triton(out, W_ld.detach(), A_rd, val)) is not None:
        return tg.spmm_t_sddmm(crow, col, val, A_rd, W_ld.detach(), out=out, accumulate=accumulate, lo=lo, hi=hi)
    nb = _fused(W_ld.detach(), A_rd, val) if out is None else _fused(out, W_ld.detach(), A_rd, val)
    if nb is None or col.numel() == 0:
        if lo is not None:
            A_rd = A_rd * _row_mask(lo, hi, A_rd.shape[1], A_rd.dtype)
        return (spmm_t(crow, col, val, A_rd, W_ld.shape[0], out=out, accumulate=accumulate),
                sddmm(crow, col, A_rd, W_ld, shared=shared))
    if out is None:
        out, accumulate = A_rd.new_empty(W_ld.shape), False
    R = crow.numel() - 1
    lo, hi = _full_rows(R, W_ld.shape[1], lo, hi)
    gval = A_rd.new_empty(col.numel())
    start, order = nb.bucket_by_latent(_np(col), W_ld.shape[0])
    nb.spmm_t_sddmm(start, order, nb.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(W_ld),
                    _np(lo), _np(hi), _np(out), _np(gval), accumulate)
    return out, gval


class TableStep(NamedTuple):
    """One Adam step of a weight table, taken by the fused kernels while the backward pass
    forms its gradient, so the gradient is never written out (docs/method.md §4.2;
    :meth:`sparc.train.optim.SPARCAdam.table_step` makes them)."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    scalars: tuple
    """(1 − β1, β2, 1 − β2, lr / bias correction 1, √bias correction 2, eps, tiny), in the table's dtype."""
    bounds: list[int]
    """The stream blocks' column bounds (the decoder constraint and the bf16 copy work per block)."""
    shadow: tuple[Tensor, Tensor, Tensor] | None
    """(W16 as int16, wn, dwn): where the encoder's new bf16 copy and norms go; None for the decoder."""
    done: Callable[[], None]
    """Called once the rows are stepped."""


def _step_args(W_ld: Tensor, step: TableStep) -> tuple:
    return (_np(W_ld), _np(step.exp_avg), _np(step.exp_avg_sq), torch.tensor(step.bounds).numpy(), *step.scalars)


def _shadow_args(W_ld: Tensor, step: TableStep) -> tuple:
    """The bf16 copy's buffers for the kernels: (W16 as uint16, wn, dwn), empty when
    there is no copy to write."""
    if step.shadow is None:
        S = len(step.bounds) - 1
        W16, wn = torch.empty(0, W_ld.shape[1], dtype=torch.int16), torch.empty(S, 0, dtype=torch.float64)
        return W16.numpy().view("uint16"), wn.numpy(), wn.numpy()
    W16, wn, dwn = step.shadow
    return W16.numpy().view("uint16"), wn.numpy(), dwn.numpy()


def adam_step(W_ld: Tensor, G_ld: Tensor, step: TableStep, *, decoder: bool) -> None:
    """The Adam ``step`` of ``W_ld`` with its gradient ``G_ld`` in one pass over the rows
    (fused kernels only; with the decoder constraint when ``decoder``)."""
    P, M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, tiny = _step_args(W_ld, step)
    _load_numba().adam_rows(P, _np(G_ld), M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, decoder, tiny,
                            *_shadow_args(W_ld, step))
    step.done()


def block_bounds(cols: list[slice], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(starts, stops) [T] int64 of the column blocks ``cols``."""
    return (torch.tensor([c.start for c in cols], dtype=torch.int64, device=device),
            torch.tensor([c.stop for c in cols], dtype=torch.int64, device=device))


def block_row_sum(W_ld: Tensor, coef_sl: Tensor, cols: list[slice]) -> Tensor:
    """[D]: ``Σ_l coef[i, l] · W[l, cols[i]]`` in the columns of each block i (the blocks
    disjoint), 0 elsewhere: e.g. the pre-bias's gradient, up to sign (fused: one
    streaming pass over W's rows)."""
    nb = _fused(W_ld.detach(), coef_sl)
    if nb is None:
        return _pt.block_row_sum(W_ld.detach(), coef_sl, cols)
    out = W_ld.new_zeros(W_ld.shape[1])
    clo, chi = block_bounds(cols)
    nb.block_row_sum(_np(W_ld), _np(coef_sl), clo.numpy(), chi.numpy(), _np(out))
    return out


def spmm_t_step(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, step: TableStep, *,
                arow: Tensor, lo: Tensor, hi: Tensor, block_coef: Tensor | None = None) -> Tensor | None:
    """:func:`spmm_t` as ``W_ld``'s gradient, and the Adam ``step`` of ``W_ld`` with it, in one
    pass (fused kernels only): the encoder's weight gradient is never written out. With
    ``block_coef`` [S, L] (a row per column block of ``step.bounds``), also returns
    :func:`block_row_sum` of the rows before the step over those blocks, formed in the
    step's own loop over each row."""
    nb = _load_numba()
    start, order = nb.bucket_by_latent(_np(col), W_ld.shape[0])
    if block_coef is None:  # no rows of coefficients: the kernel skips the sum
        coef, rsum = W_ld.new_empty(0, W_ld.shape[0]), W_ld.new_empty(0)
    else:
        coef, rsum = block_coef.contiguous(), W_ld.new_zeros(W_ld.shape[1])
    nb.spmm_t_adam(start, order, nb.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(arow), _np(lo), _np(hi),
                   *_step_args(W_ld, step), *_shadow_args(W_ld, step), _np(coef), _np(rsum))
    step.done()
    return None if block_coef is None else rsum


def spmm_t_sddmm_step(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, step: TableStep, *,
                      lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """:func:`spmm_t_sddmm`'s value gradient (returned, from the rows before the step) and
    the Adam ``step`` of ``W_ld`` with the decoder constraint, in one pass (fused kernels
    only): the decoder's weight gradient is never written out."""
    nb = _load_numba()
    R = crow.numel() - 1
    lo, hi = _full_rows(R, W_ld.shape[1], lo, hi)
    gval = A_rd.new_empty(col.numel())
    start, order = nb.bucket_by_latent(_np(col), W_ld.shape[0])
    P, M, V, bounds, *scalars = _step_args(W_ld, step)
    nb.spmm_t_sddmm_adam(start, order, nb.rows_of_entries(_np(crow)), _np(val), _np(A_rd), _np(lo), _np(hi),
                         P, M, V, _np(gval), bounds, *scalars)
    step.done()
    return gval


def normalize_rows_(W_ld: Tensor, bounds: list[int]) -> None:
    """Scale each row to unit norm within every column block [bounds[i], bounds[i+1])."""
    nb = _fused(W_ld.detach())
    if nb is None:
        return _pt.normalize_rows_(W_ld, bounds)
    W = _np(W_ld)
    nb.normalize_rows(W, torch.tensor(bounds).numpy(), W.dtype.type(torch.finfo(W_ld.dtype).tiny))


def remove_parallel_(W_ld: Tensor, G_ld: Tensor, bounds: list[int]) -> None:
    """``G[l] −= (W[l]·G[l]) W[l]`` within every column block (W's rows unit there)."""
    nb = _fused(W_ld.detach(), G_ld)
    if nb is None:
        return _pt.remove_parallel_(W_ld, G_ld, bounds)
    nb.remove_parallel(_np(W_ld), _np(G_ld), torch.tensor(bounds).numpy())


def bf16_shadow(W_ld: Tensor, bounds: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """(bfloat16 copy of W, wn [S, L], dwn [S, L]): the copy the certified selection
    multiplies with, and per stream block the norms of each row of W and of its rounding
    error ``W − bf16(W)``, rounded up (float64 tensors; fused: summed in float32, one pass
    over W; docs/method.md §4.3)."""
    nb = _fused(W_ld.detach()) if W_ld.dtype == torch.float32 else None
    if nb is None:
        return _pt.bf16_shadow(W_ld.detach(), bounds)
    L, D = W_ld.shape
    W16 = torch.empty(L, D, dtype=torch.int16)
    wn = torch.empty(len(bounds) - 1, L, dtype=torch.float64)
    dwn = torch.empty_like(wn)
    nb.bf16_shadow(_np(W_ld), torch.tensor(bounds).numpy(),
                   W16.numpy().view("uint16"), wn.numpy(), dwn.numpy())
    return W16.view(torch.bfloat16), wn, dwn


def stream_dots(idx_bm: Tensor, U_bd: Tensor, W_ld: Tensor, bounds: list[int],
                bias_sl: Tensor | None = None) -> Tensor:
    """[S, B, m]: ``W[idx[b, j], block s] · U[b, block s]``, plus ``bias[s, idx[b, j]]``
    when a bias [S, L] is given (fused: accumulated in W's dtype, the bias added in the
    same pass; PyTorch: in float64, the bias added after rounding)."""
    nb = _fused(W_ld.detach(), U_bd)
    if nb is None:
        out = _pt.stream_dots(idx_bm, U_bd, W_ld.detach(), bounds)
        return out if bias_sl is None else out + bias_sl.detach()[:, idx_bm]
    B, m = idx_bm.shape
    S = len(bounds) - 1
    out = U_bd.new_empty(S, B * m)
    bias = W_ld.new_empty(S, 0) if bias_sl is None else bias_sl.detach().contiguous()
    start, order = nb.bucket_by_latent(_np(idx_bm.reshape(-1)), W_ld.shape[0])
    nb.stream_dots(start, order, m, _np(U_bd), _np(W_ld), torch.tensor(bounds).numpy(), _np(bias), _np(out))
    return out.view(S, B, m)


def top_candidates(Z16_bl: Tensor, bias_l: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """For the bf16 product ``Z16`` [B, L] and a float32 ``bias`` [L]: the n latents of
    largest ``z = float(Z16) + bias`` per row ([B, n], any order), their least z [B],
    and ``max |float(Z16)|`` per row [B] (docs/method.md §4.3)."""
    nb = _fused(bias_l) if Z16_bl.device.type == "cpu" and Z16_bl.is_contiguous() else None
    if nb is None or bias_l.dtype != torch.float32:
        return _pt.top_candidates(Z16_bl, bias_l, n)
    B = Z16_bl.shape[0]
    cand = torch.empty(B, n, dtype=torch.int64)
    z_least, abs_max = torch.empty(B), torch.empty(B)
    nb.top_candidates(Z16_bl.view(torch.int16).numpy().view("uint16"), _np(bias_l.contiguous()), n,
                      cand.numpy(), z_least.numpy(), abs_max.numpy())
    return cand, z_least, abs_max


def block_sse(M_rd: Tensor, b_pre: Tensor, X_bd: Tensor, n: int, cols: list[slice]) -> tuple[Tensor, Tensor]:
    """(num [n, B, T], den [B, T]), differentiable: per stream block t (columns ``cols[t]``)
    the squared residual ``Σ (M[a·B + b] + b_pre − X[b])²`` of each of the n sources a
    (M [n·B, D]: their decodes side by side, without b_pre) and ``Σ X[b]²`` — the
    numerators and norms of every (source, target) NMSE (docs/method.md §2.1)."""
    nb = _fused(M_rd.detach(), b_pre.detach(), X_bd.detach())
    if nb is None:
        return _pt.block_sse(M_rd, b_pre, X_bd, n, cols)
    return BlockSSE.apply(M_rd, b_pre, X_bd, n, tuple(cols))


# The autograd functions use the primitives above (imported last: they import this module).
from sparc.model.kernels.autograd import BlockSSE, DecodeSelected, SelectLogits  # noqa: E402

__all__ += ["BlockSSE", "DecodeSelected", "SelectLogits"]
