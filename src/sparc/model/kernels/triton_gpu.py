"""GPU kernels (Triton) for the sparse work of a training step.

Same contracts as :mod:`sparc.model.kernels.pytorch` (the oracle) and the CPU kernels
of :mod:`sparc.model.kernels.fused`, for CUDA tensors of float32, bfloat16 and
float16 (float64 works too, for gradcheck). Products accumulate in float32 (float64 for
float64 tables) and are rounded once to the table's dtype. Imported only when a CUDA
tensor (or the test-only interpreter, ``TRITON_INTERPRET=1`` with ``SPARC_KERNELS=triton``)
asks for these kernels: a CPU-only process never imports Triton.

Two kernels do all the work:

- :func:`_decode_kernel` — ``spmm``, row-major: a program owns one row (or one group of
  shared rows) and one block of columns, and sums its weight rows, a few entries per
  load so that several gathers are in flight. Under global TopK, rows ``s·G + g`` carry
  the latents of row g: the program for g reads each selected weight row once and
  accumulates the n_shared rows side by side (a [S, J, D] tile). With per-row column
  ranges (``lo``/``hi``: an AuxK row decodes its own stream), a row's other columns are
  zero and the weight columns no row of the program needs are not read.
- :func:`_latent_kernel` — ``spmm_t``, ``sddmm`` and the fused ``spmm_t_sddmm``,
  latent-major: the entries are sorted by latent (a stable ``argsort`` plus
  ``searchsorted`` for the bucket starts), and the program for latent l gathers the
  rows of ``A`` its entries point at. It writes gradient row l exactly once and, reading
  ``W[l]`` once, every ``W[l] · A[row(e)]`` of its entries. Row r may read
  ``A[arow[r], lo[r]:hi[r]]`` only (the encoder gradient: each stream its own columns;
  the decoder's AuxK rows), the other columns of ``A`` not being read.

Why sort by latent rather than ``atomic_add`` over the entries (the other classic way
to do ``spmm_t``): each output row is written by one program, so

- the result is deterministic (the entries of a latent are summed in their original
  order; float atomics sum in whatever order the hardware picks, run to run);
- bfloat16/float16 gradients are summed in float32 registers and rounded once, instead
  of being rounded at every atomic add (and bf16 atomics are missing on older GPUs);
- ``out=`` buffers, ``accumulate`` and the zeroing of never-selected latents cost one
  read-modify-write per row, with no separate memset pass;
- the decoder's two gradients fuse: ``W[l]`` is read once while its gradient row is
  built (EleutherAI's sparsify does the same in its embedding-bag backward).

The sort costs O(nnz log nnz) on index data only, small next to the O(nnz·D) gathers.
Latents are launched most-frequent first, so the longest programs start early and the
tail of the launch is short programs (longest-processing-time-first scheduling).
Nothing here synchronises with the host (no ``.item()``, no data-dependent shapes).

Zero values contribute nothing and their weight rows are not read (as in the CPU
kernels): a ``0 · inf`` in a weight row gives 0, not NaN; NaN values still propagate.
The block sizes are fixed heuristics, not autotuned (autotuning would rerun kernels
that accumulate into their output).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

_ACC = {torch.float64: tl.float64}  # every other dtype accumulates in float32

# Elements of a program's working tile: enough loads in flight to hide gather latency,
# few enough registers to keep several programs per SM.
_TILE = 2048


def _acc(dtype: torch.dtype):
    return _ACC.get(dtype, tl.float32)


def _block_d(D: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(max(D, 1))))


def _warps(tile: int) -> int:
    return max(1, min(8, tile // 256))


def decode_meta(dtype: torch.dtype, D: int, n_shared: int, ranged: bool) -> dict:
    """The compile-time parameters of :func:`_decode_kernel` for a launch."""
    S, block_d = triton.next_power_of_2(n_shared), _block_d(D, 256)
    J = max(1, min(16, _TILE // (S * block_d)))
    return dict(ACC=_acc(dtype), S=S, J=J, BLOCK_D=block_d, RANGED=ranged, num_warps=_warps(S * J * block_d))


def latent_meta(dtype: torch.dtype, D: int, *, grad: bool, dots: bool, ranged: bool, accumulate: bool) -> dict:
    """The compile-time parameters of :func:`_latent_kernel` for a launch (``dots``:
    narrower column blocks, as one program walks all of them)."""
    block_d = _block_d(D, 128 if dots else 256)
    J = max(1, min(32, _TILE // block_d))
    return dict(ACC=_acc(dtype), J=J, BLOCK_D=block_d, GRAD=grad, DOTS=dots, RANGED=ranged,
                ACCUMULATE=accumulate, WRITE_EMPTY=grad and not accumulate, num_warps=_warps(J * block_d))


# ---------------------------------------------------------------------- decode (spmm)


@triton.jit
def _decode_kernel(crow, col, val, W, out, lo, hi, n_shared, G, D,
                   stride_wl, stride_wd, stride_or, stride_od,
                   ACC: tl.constexpr, S: tl.constexpr, J: tl.constexpr, BLOCK_D: tl.constexpr,
                   RANGED: tl.constexpr):
    """out[r, block] = Σ_e val[e] · W[col[e], block] for the row(s) of this program; with
    RANGED, in row r's columns lo[r]:hi[r] only (0 elsewhere, W not read there).

    Program u < G: rows u, G + u, …, (n_shared − 1)·G + u, which hold the latents of row
    u (n_shared ≤ S). Program u ≥ G: the single row n_shared·G + u − G."""
    u = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = cols < D
    s = tl.arange(0, S).to(tl.int64)
    is_shared = u < G
    n = tl.where(is_shared, n_shared, 1)
    r0 = tl.where(is_shared, u, n_shared * G + u - G)
    rows = r0 + s * G
    smask = s < n
    base = tl.load(crow + rows, mask=smask, other=0)                     # [S] each row's first entry
    start = tl.load(crow + r0)
    length = tl.load(crow + r0 + 1) - start
    keep = smask[:, None] & dmask[None, :]                                 # [S, BLOCK_D]
    if RANGED:
        lo_s = tl.load(lo + rows, mask=smask, other=0)
        hi_s = tl.load(hi + rows, mask=smask, other=0)
        keep &= (cols[None, :] >= lo_s[:, None]) & (cols[None, :] < hi_s[:, None])
    wcols = tl.max(keep.to(tl.int32), axis=0) > 0                         # columns some row needs
    jj = tl.arange(0, J)
    acc = tl.zeros([S, BLOCK_D], ACC)
    for j0 in range(0, length, J):
        jmask = j0 + jj < length
        lat = tl.load(col + start + j0 + jj, mask=jmask, other=0)        # [J] latents (row r0's)
        vmask = smask[:, None] & jmask[None, :]
        v = tl.load(val + base[:, None] + j0 + jj[None, :], mask=vmask, other=0).to(ACC)  # [S, J]
        # A weight row is read only if some row has a non-zero value for it (v != 0 is
        # true for NaN, so NaN values still reach the output).
        live = tl.sum((v != 0).to(tl.int32), axis=0) > 0                  # [J]
        w = tl.load(W + lat[:, None] * stride_wl + cols[None, :] * stride_wd,
                    mask=live[:, None] & wcols[None, :], other=0).to(ACC)  # [J, BLOCK_D]
        prod = tl.where(v[:, :, None] != 0, v[:, :, None] * w[None, :, :], 0)
        acc += tl.sum(prod, axis=1)
    acc = tl.where(keep, acc, 0)
    tl.store(out + rows[:, None] * stride_or + cols[None, :] * stride_od,
             acc.to(out.dtype.element_ty), mask=smask[:, None] & dmask[None, :])


def spmm(crow: Tensor, col: Tensor, val: Tensor, W_ld: Tensor, *, shared: tuple[int, int] = (1, 0),
         lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    """[R, D]: each row's code decoded through the weight table (rows shared as in
    :meth:`sparc.model.kernels.base.Kernels.spmm`), row r in its columns ``lo[r]:hi[r]`` only when
    given (every row, the shared ones included, as the PyTorch kernels do)."""
    R, D = crow.numel() - 1, W_ld.shape[1]
    out = W_ld.new_empty(R, D)
    n_shared, G = shared if shared[1] > 0 else (1, 0)
    n_units = G + R - n_shared * G
    if n_units == 0 or D == 0 or col.numel() == 0:  # no launch: empty tensors may have no address
        return out.zero_()
    ranged = lo is not None
    meta = decode_meta(W_ld.dtype, D, n_shared, ranged)
    _decode_kernel[(n_units, triton.cdiv(D, meta["BLOCK_D"]))](
        crow.contiguous(), col.contiguous(), val.contiguous(), W_ld, out,
        lo.contiguous() if ranged else crow, hi.contiguous() if ranged else crow, n_shared, G, D,
        W_ld.stride(0), W_ld.stride(1), out.stride(0), out.stride(1), **meta)
    return out


# ---------------------------------------------------------------------- latent-major (spmm_t, sddmm)


@triton.jit
def _latent_kernel(hot, start, order, rows, val, A, W, out, dots,
                   arow, lo, hi, D, n_split,
                   stride_ar, stride_ad, stride_wl, stride_wd, stride_ol, stride_od,
                   ACC: tl.constexpr, J: tl.constexpr, BLOCK_D: tl.constexpr, GRAD: tl.constexpr,
                   DOTS: tl.constexpr, RANGED: tl.constexpr, ACCUMULATE: tl.constexpr, WRITE_EMPTY: tl.constexpr):
    """For latent l = hot[program 0] (``lid``) and its entries e (``order[start[l]:start[l+1]]``):

    - GRAD: out[l] (+)= Σ_e val[e] · A[row(e)] — with RANGED, A[arow[r], lo[r]:hi[r]];
    - DOTS: dots[e] = W[l] · A[row(e)] (this program owns those entries: no atomics).

    Program 1 takes the column blocks d ≡ its id (mod n_split); DOTS needs n_split = 1.
    WRITE_EMPTY (GRAD without ACCUMULATE): a latent without entries gets a zero row;
    otherwise its program does nothing."""
    lid = tl.load(hot + tl.program_id(0)).to(tl.int64)
    t0 = tl.load(start + lid)
    t1 = tl.load(start + lid + 1)
    jj = tl.arange(0, J)
    if (t1 > t0) | WRITE_EMPTY:
        for d0 in range(tl.program_id(1) * BLOCK_D, D, n_split * BLOCK_D):
            cols = d0 + tl.arange(0, BLOCK_D)
            dmask = cols < D
            if DOTS:
                w = tl.load(W + lid * stride_wl + cols * stride_wd, mask=dmask, other=0).to(ACC)
            acc = tl.zeros([BLOCK_D], ACC)
            for t in range(t0, t1, J):
                tmask = t + jj < t1
                e = tl.load(order + t + jj, mask=tmask, other=0)
                r = tl.load(rows + e, mask=tmask, other=0)
                amask = tmask[:, None] & dmask[None, :]
                if RANGED:
                    ar = tl.load(arow + r, mask=tmask, other=0)
                    lo_r = tl.load(lo + r, mask=tmask, other=0)
                    hi_r = tl.load(hi + r, mask=tmask, other=0)
                    amask &= (cols[None, :] >= lo_r[:, None]) & (cols[None, :] < hi_r[:, None])
                else:
                    ar = r
                if GRAD:
                    v = tl.load(val + e, mask=tmask, other=0).to(ACC)
                    if not DOTS:
                        amask &= (v != 0)[:, None]  # zero values: their rows of A are not read
                a = tl.load(A + ar[:, None] * stride_ar + cols[None, :] * stride_ad,
                            mask=amask, other=0).to(ACC)                     # [J, BLOCK_D]
                if GRAD:
                    acc += tl.sum(tl.where(v[:, None] != 0, v[:, None] * a, 0), axis=0)
                if DOTS:
                    part = tl.sum(a * w[None, :], axis=1)
                    prev = tl.load(dots + e, mask=tmask & (d0 > 0), other=0)
                    tl.store(dots + e, prev + part, mask=tmask)
            if GRAD:
                optr = out + lid * stride_ol + cols * stride_od
                if ACCUMULATE:
                    acc += tl.load(optr, mask=dmask, other=0).to(ACC)
                tl.store(optr, acc.to(out.dtype.element_ty), mask=dmask)


def _buckets(col: Tensor, n_latents: int) -> tuple[Tensor, Tensor, Tensor]:
    """(order, start, hot): the entries of latent l are ``order[start[l]:start[l+1]]`` in
    their original order; ``hot`` lists the latents most entries first."""
    order = torch.argsort(col, stable=True)
    start = torch.searchsorted(col[order], torch.arange(n_latents + 1, device=col.device, dtype=col.dtype))
    hot = torch.argsort(start.diff(), descending=True)
    return order, start, hot


def _rows(crow: Tensor, nnz: int) -> Tensor:
    """[nnz]: the row of each entry (``output_size`` keeps it free of a host sync)."""
    R = crow.numel() - 1
    return torch.repeat_interleave(torch.arange(R, device=crow.device), crow.diff(), output_size=nnz)


def _latent_pass(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int, *,
                 W_ld: Tensor | None, out: Tensor | None, accumulate: bool,
                 arow: Tensor | None = None, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor | None:
    """Launch :func:`_latent_kernel`; returns the dots (``W_ld`` given) in A's dtype."""
    D, nnz = A_rd.shape[1], col.numel()
    if n_latents == 0 or D == 0 or nnz == 0:  # no launch: empty tensors may have no address
        if out is not None and not accumulate:
            out.zero_()
        return A_rd.new_zeros(nnz) if W_ld is not None else None
    col = col.contiguous()
    order, start, hot = _buckets(col, n_latents)
    rows = _rows(crow, nnz)
    ranged = arow is not None or lo is not None
    if ranged:
        R = crow.numel() - 1
        arow = torch.arange(R, device=col.device) if arow is None else arow.contiguous()
        lo = torch.zeros(R, dtype=torch.int64, device=col.device) if lo is None else lo.contiguous()
        hi = torch.full((R,), D, dtype=torch.int64, device=col.device) if hi is None else hi.contiguous()
    dots = None
    if W_ld is not None:
        # Partial dots are summed across column blocks in the accumulator's precision.
        dots = torch.zeros(nnz, dtype=torch.float64 if A_rd.dtype == torch.float64 else torch.float32,
                           device=A_rd.device)
    meta = latent_meta(A_rd.dtype, D, grad=out is not None, dots=W_ld is not None, ranged=ranged,
                       accumulate=accumulate)
    n_split = 1 if W_ld is not None else triton.cdiv(D, meta["BLOCK_D"])
    dummy = A_rd  # stands for the pointers a constexpr branch never reads
    _latent_kernel[(n_latents, n_split)](
        hot, start, order, rows, dummy if out is None else val.contiguous(), A_rd,
        dummy if W_ld is None else W_ld, dummy if out is None else out, dummy if dots is None else dots,
        arow if ranged else col, lo if ranged else col, hi if ranged else col, D, n_split,
        A_rd.stride(0), A_rd.stride(1),
        *(W_ld.stride() if W_ld is not None else (0, 0)), *(out.stride() if out is not None else (0, 0)), **meta)
    return None if dots is None else dots.to(A_rd.dtype)


def spmm_t(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int, *,
           arow: Tensor | None = None, lo: Tensor | None = None, hi: Tensor | None = None,
           out: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """[L, D]: the transpose product; row r reads ``A[arow[r], lo[r]:hi[r]]``. Written
    into ``out`` (added to it with ``accumulate``) when given."""
    if out is None:
        out, accumulate = A_rd.new_empty(n_latents, A_rd.shape[1]), False
    _latent_pass(crow, col, val, A_rd, n_latents, W_ld=None, out=out, accumulate=accumulate,
                 arow=arow, lo=lo, hi=hi)
    return out


def sddmm(crow: Tensor, col: Tensor, A_rd: Tensor, W_ld: Tensor) -> Tensor:
    """[nnz]: ``W[col[e]] · A[row(e)]``, each selected weight row read once."""
    return _latent_pass(crow, col, A_rd, A_rd, W_ld.shape[0], W_ld=W_ld, out=None, accumulate=False)


def spmm_t_sddmm(crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, *,
                 out: Tensor | None = None, accumulate: bool = False,
                 lo: Tensor | None = None, hi: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(spmm_t(crow, col, val, A, L), sddmm(crow, col, A, W))`` in one pass over the
    latents: the gradients of a decode's weight table and values, row r in its columns
    ``lo[r]:hi[r]`` when given (as decoded by :func:`spmm`)."""
    if out is None:
        out, accumulate = A_rd.new_empty(W_ld.shape), False
    dots = _latent_pass(crow, col, val, A_rd, W_ld.shape[0], W_ld=W_ld, out=out, accumulate=accumulate,
                        lo=lo, hi=hi)
    return out, dots


#: True when Triton runs its interpreter (``TRITON_INTERPRET=1`` when this module was
#: imported): the kernels then take CPU tensors and run through numpy, for testing.
INTERPRETED = type(_decode_kernel).__name__ == "InterpretedFunction"
