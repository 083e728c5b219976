"""Fused CPU kernels (numba) for the sparse work of a training step.

Same contracts as :mod:`sparc.model.kernels.pytorch` (the oracle), on numpy views of
float32/float64 CPU tensors. What makes them faster than PyTorch's generic sparse ops
(BENCHMARKS.md, "Training step"):

- one parallel loop per primitive (both cores), each row written once, no temporaries;
- rows that share their latents (under global TopK every stream of a sample decodes the
  same k latents) are done together, so each selected decoder row is read once per
  sample for all streams;
- the transpose product writes each latent's row exactly once (entries bucketed by
  latent with a counting sort), straight into a gradient buffer the caller keeps, and
  reads only the columns a row owns (the encoder gradient of stream s touches the
  columns of s only);
- the decoder constraint (radial projection, renormalisation) is one pass per row.

Reassociation (``fastmath``) lets LLVM vectorise the reductions; results equal the
PyTorch path to float round-off (tests/model/test_kernels.py runs every kernel against it).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from sparc.model.kernels.lane_dot import lane_dot, lane_dot4

# Reassociation lets LLVM vectorise the reductions; no "finite-math" flags, so NaN and
# inf propagate as in PyTorch (the trainer's divergence check relies on it).
_FAST = {"reassoc", "contract", "nsz"}
_PAR = dict(parallel=True, cache=True, fastmath=_FAST, nogil=True, boundscheck=False)


@njit(cache=True, nogil=True, inline="always")
def _zero(a):
    """0 in a's dtype. (``a[0] * 0`` would be float64: numba types float32 × int as
    float64, and a float64 accumulator over float32 data does not vectorise.)"""
    return a[0] * np.float32(0)


@njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _dot(a, b):
    acc = _zero(a)
    for c in range(a.shape[0]):
        acc += a[c] * b[c]
    return acc


@njit(cache=True, nogil=True)
def _rows_of_entries(crow):
    """[nnz]: the row of each CSR entry."""
    rows = np.empty(crow[-1], np.int64)
    for r in range(crow.shape[0] - 1):
        for e in range(crow[r], crow[r + 1]):
            rows[e] = r
    return rows


@njit(cache=True, nogil=True)
def bucket_by_latent(col, n_latents):
    """Counting sort of the entries by latent: (start [L+1], order [nnz]) with the
    entries of latent lat at ``order[start[lat]:start[lat+1]]`` in their original order."""
    start = np.zeros(n_latents + 1, np.int64)
    for e in range(col.shape[0]):
        start[col[e] + 1] += 1
    for lat in range(n_latents):
        start[lat + 1] += start[lat]
    fill = start[:-1].copy()
    order = np.empty(col.shape[0], np.int64)
    for e in range(col.shape[0]):
        order[fill[col[e]]] = e
        fill[col[e]] += 1
    return start, order


@njit(**_PAR)
def spmm(crow, col, val, W, n_shared, G, lo, hi, out):
    """out[r, lo[r]:hi[r]] = Σ_{e in row r} val[e] · W[col[e], lo[r]:hi[r]], 0 elsewhere.

    The first ``n_shared · G`` rows (G = the shared group size, ``n_shared`` blocks of G
    rows) have identical columns block to block: row s·G + g has the latents of row g.
    They are decoded together, each W row read once for the n_shared rows, in all
    columns, four latents at a time (one load of each output element per four). ``G =
    0``: no rows shared."""
    R = crow.shape[0] - 1
    D = W.shape[1]
    for u in prange(G):  # the shared rows, then the rest: two balanced loops
        for s in range(n_shared):
            out[s * G + u, :] = 0
        first, n = crow[u], crow[u + 1] - crow[u]
        j = 0
        while j + 4 <= n:
            w0, w1, w2, w3 = W[col[first + j]], W[col[first + j + 1]], W[col[first + j + 2]], W[col[first + j + 3]]
            for s in range(n_shared):
                r = s * G + u
                e = crow[r] + j
                v0, v1, v2, v3 = val[e], val[e + 1], val[e + 2], val[e + 3]
                o = out[r]
                for c in range(D):
                    o[c] += v0 * w0[c] + v1 * w1[c] + v2 * w2[c] + v3 * w3[c]
            j += 4
        for j in range(j, n):
            w = W[col[first + j]]
            for s in range(n_shared):
                r = s * G + u
                v = val[crow[r] + j]
                o = out[r]
                for c in range(D):
                    o[c] += v * w[c]
    for q in prange(R - n_shared * G):
        r = n_shared * G + q
        out[r, :] = 0
        a, b = lo[r], hi[r]
        o = out[r, a:b]
        e, end = crow[r], crow[r + 1]
        while e + 4 <= end:
            v0, v1, v2, v3 = val[e], val[e + 1], val[e + 2], val[e + 3]
            w0, w1, w2, w3 = W[col[e], a:b], W[col[e + 1], a:b], W[col[e + 2], a:b], W[col[e + 3], a:b]
            for c in range(o.shape[0]):
                o[c] += v0 * w0[c] + v1 * w1[c] + v2 * w2[c] + v3 * w3[c]
            e += 4
        for e in range(e, end):
            v = val[e]
            w = W[col[e], a:b]
            for c in range(o.shape[0]):
                o[c] += v * w[c]


@njit(**_PAR)
def sddmm(crow, col, A, W, n_shared, G, out):
    """out[e] = W[col[e]] · A[row(e)]; rows shared as in :func:`spmm`."""
    R = crow.shape[0] - 1
    for u in prange(G):  # the shared rows, then the rest: two balanced loops
        for j in range(crow[u + 1] - crow[u]):
            w = W[col[crow[u] + j]]
            for s in range(n_shared):
                r = s * G + u
                out[crow[r] + j] = _dot(w, A[r])
    for q in prange(R - n_shared * G):
        r = n_shared * G + q
        a = A[r]
        for e in range(crow[r], crow[r + 1]):
            out[e] = _dot(W[col[e]], a)


@njit(cache=True, nogil=True, inline="always")
def _same_columns(rows, lo, hi, order, t):
    """Whether the four entries ``order[t:t+4]`` have rows over the same columns."""
    r0 = rows[order[t]]
    for q in range(t + 1, t + 4):
        r = rows[order[q]]
        if lo[r] != lo[r0] or hi[r] != hi[r0]:
            return False
    return True


@njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _weight_grad_row(lat, start, order, rows, val, A, arow, lo, hi, o):
    """``o += Σ_{e: col[e] = lat} val[e] · A[arow[r], lo[r]:hi[r]]`` (r = row(e)) in the
    row's columns, four entries at a time where their columns agree."""
    t, end = start[lat], start[lat + 1]
    while t < end:
        if t + 4 <= end and _same_columns(rows, lo, hi, order, t):
            e0, e1, e2, e3 = order[t], order[t + 1], order[t + 2], order[t + 3]
            r0 = rows[e0]
            a, b = lo[r0], hi[r0]
            v0, v1, v2, v3 = val[e0], val[e1], val[e2], val[e3]
            x0, x1 = A[arow[r0], a:b], A[arow[rows[e1]], a:b]
            x2, x3 = A[arow[rows[e2]], a:b], A[arow[rows[e3]], a:b]
            oo = o[a:b]
            for c in range(oo.shape[0]):
                oo[c] += v0 * x0[c] + v1 * x1[c] + v2 * x2[c] + v3 * x3[c]
            t += 4
        else:
            e = order[t]
            r = rows[e]
            v, x, oo = val[e], A[arow[r], lo[r] : hi[r]], o[lo[r] : hi[r]]
            for c in range(x.shape[0]):
                oo[c] += v * x[c]
            t += 1


@njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _decoder_grad_row(lat, start, order, rows, val, A, w_row, lo, hi, o, gval):
    """The decoder's backward for latent ``lat``: ``o += Σ val[e]·A[row(e)]`` and
    ``gval[e] = w_row·A[row(e)]`` in each row's columns, four entries at a time where
    their columns agree (``w_row`` is read, never written)."""
    t, end = start[lat], start[lat + 1]
    while t < end:
        if t + 4 <= end and _same_columns(rows, lo, hi, order, t):
            e0, e1, e2, e3 = order[t], order[t + 1], order[t + 2], order[t + 3]
            r0, r1, r2, r3 = rows[e0], rows[e1], rows[e2], rows[e3]
            a, b = lo[r0], hi[r0]
            v0, v1, v2, v3 = val[e0], val[e1], val[e2], val[e3]
            x0, x1, x2, x3 = A[r0, a:b], A[r1, a:b], A[r2, a:b], A[r3, a:b]
            w, oo = w_row[a:b], o[a:b]
            acc0 = acc1 = acc2 = acc3 = _zero(w)
            for c in range(w.shape[0]):
                wc = w[c]
                acc0 += wc * x0[c]
                acc1 += wc * x1[c]
                acc2 += wc * x2[c]
                acc3 += wc * x3[c]
                oo[c] += v0 * x0[c] + v1 * x1[c] + v2 * x2[c] + v3 * x3[c]
            gval[e0], gval[e1], gval[e2], gval[e3] = acc0, acc1, acc2, acc3
            t += 4
        else:
            e = order[t]
            v = val[e]
            r = rows[e]
            x, w, oo = A[r, lo[r] : hi[r]], w_row[lo[r] : hi[r]], o[lo[r] : hi[r]]
            acc = _zero(w)
            for c in range(x.shape[0]):
                acc += w[c] * x[c]
                oo[c] += v * x[c]
            gval[e] = acc
            t += 1


@njit(**_PAR)
def spmm_t(start, order, rows, val, A, arow, lo, hi, out, accumulate):
    """out[lat, lo[r]:hi[r]] (+)= Σ_{e: col[e] = lat} val[e] · A[arow[r], lo[r]:hi[r]], r = row(e).

    Entries come bucketed by latent (:func:`bucket_by_latent`); each row of ``out`` is
    written once (zeroed first unless ``accumulate``)."""
    for lat in prange(out.shape[0]):
        if not accumulate:
            out[lat, :] = 0
        _weight_grad_row(lat, start, order, rows, val, A, arow, lo, hi, out[lat])


@njit(**_PAR)
def spmm_t_sddmm(start, order, rows, val, A, W, lo, hi, out, gval, accumulate):
    """The decoder's backward in one pass over the latents: ``out[lat] (+)= Σ val[e]·A[row(e)]``
    (:func:`spmm_t`) and ``gval[e] = W[col[e]]·A[row(e)]`` (:func:`sddmm`), row r in its
    columns ``lo[r]:hi[r]``; each W row read once while its gradient row is written."""
    for lat in prange(out.shape[0]):
        if not accumulate:
            out[lat, :] = 0
        _decoder_grad_row(lat, start, order, rows, val, A, W[lat], lo, hi, out[lat], gval)


@njit(cache=True, nogil=True, boundscheck=False)  # no contraction: as the Adam loop's sum (_step_row)
def _block_row_add(lat, coef, clo, chi, w_row, o):
    """``o[clo[i]:chi[i]] += coef[i, lat] · w_row[clo[i]:chi[i]]`` for each block i."""
    for i in range(coef.shape[0]):
        c = coef[i, lat]
        if c != 0:
            w, oo = w_row[clo[i] : chi[i]], o[clo[i] : chi[i]]
            for j in range(w.shape[0]):
                oo[j] += c * w[j]


@njit(**_PAR)
def block_row_sum(W, coef, clo, chi, out):
    """``out[clo[i]:chi[i]] = Σ_lat coef[i, lat] · W[lat, clo[i]:chi[i]]`` (0 outside the
    blocks): one streaming pass over W's rows, a partial sum per chunk of rows."""
    L, D = W.shape
    n_chunks = min(L, 256)
    acc = np.zeros(D, W.dtype)
    for ch in prange(n_chunks):
        part = np.zeros(D, W.dtype)
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            _block_row_add(lat, coef, clo, chi, W[lat], part)
        acc += part
    out[:] = acc


@njit(**_PAR)
def normalize_rows(W, bounds, tiny):
    """Scale each row to unit norm within every column block [bounds[i], bounds[i+1])."""
    for lat in prange(W.shape[0]):
        for i in range(bounds.shape[0] - 1):
            w = W[lat, bounds[i] : bounds[i + 1]]
            inv = np.float32(1) / max(np.sqrt(_dot(w, w)), tiny)  # in W's dtype (tiny is)
            for c in range(w.shape[0]):
                w[c] *= inv


@njit(**_PAR)
def remove_parallel(W, G, bounds):
    """G[lat] −= (W[lat]·G[lat]) W[lat] within every column block (W's rows are unit there)."""
    for lat in prange(W.shape[0]):
        for i in range(bounds.shape[0] - 1):
            w, g = W[lat, bounds[i] : bounds[i + 1]], G[lat, bounds[i] : bounds[i + 1]]
            d = _dot(w, g)
            for c in range(w.shape[0]):
                g[c] -= d * w[c]


def rows_of_entries(crow: np.ndarray) -> np.ndarray:
    return _rows_of_entries(crow)


# ---------------------------------------------------------------------- certified bf16 selection


@intrinsic
def _f32_bits(typingctx, x):
    """A float32's bits as uint32, in a register (a view through memory would keep the
    loops that use it from vectorising)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """The float32 whose bits are the uint32 ``x``."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def _bf16_bits(typingctx, x):
    """The bf16 nearest to float32 ``x`` (ties to even, as ``Tensor.bfloat16``), as its 16
    bits: ``(b + 0x7FFF + ((b >> 16) & 1)) >> 16`` of x's bits b, in 32-bit lanes (numba's
    own integer arithmetic widens to 64 bits, which halves the vector width)."""
    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        b = builder.bitcast(args[0], i32)
        lsb = builder.and_(builder.lshr(b, ir.Constant(i32, 16)), ir.Constant(i32, 1))
        r = builder.lshr(builder.add(builder.add(b, ir.Constant(i32, 0x7FFF)), lsb), ir.Constant(i32, 16))
        return builder.trunc(r, ir.IntType(16))
    return types.uint16(types.float32), codegen


@intrinsic
def _bf16_value(typingctx, h):
    """The float32 value of the bf16 with bits ``h``."""
    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        return builder.bitcast(builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16)), ir.FloatType())
    return types.float32(types.uint16), codegen


@njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _shadow_block(w, out16):
    """``out16`` = the bf16 bits of float32 ``w`` (round to nearest even, as
    ``Tensor.bfloat16``); returns (‖w‖², ‖w − bf16(w)‖²) in float32: one pass. (Typed
    for float64 too, whose tables never have a bf16 copy.)"""
    sw = np.float32(0)
    sd = np.float32(0)
    for c in range(w.shape[0]):
        wc = np.float32(w[c])
        h = _bf16_bits(wc)
        out16[c] = h
        d = wc - _bf16_value(h)
        sw += wc * wc
        sd += d * d
    return sw, sd


@njit(cache=True, nogil=True, inline="always")
def _shadow_row(w, bounds, lat, out16, wn, dwn):
    """Row ``lat``'s bf16 copy into ``out16`` and its norms per block into ``wn``/``dwn``,
    rounded up past their float32 summation error (the bound must not be too small)."""
    for i in range(bounds.shape[0] - 1):
        a, b = bounds[i], bounds[i + 1]
        sw, sd = _shadow_block(w[a:b], out16[a:b])
        up = _norm_margin(b - a)
        wn[i, lat] = math.sqrt(sw) * up
        dwn[i, lat] = math.sqrt(sd) * up


@njit(cache=True, nogil=True, inline="always")
def _norm_margin(d):
    """1 + max(10⁻³, (d + 2)·2⁻²⁴): rounds a float32 norm of d numbers up past its
    summation error ((d + 2)·2⁻²⁴ at most, relative), and at least by 0.1%."""
    return 1.0 + max(1e-3, (d + 2) * 2.0**-24)


@njit(**_PAR)
def bf16_shadow(W, bounds, out16, wn, dwn):
    """The bfloat16 copy of W (round to nearest even, as ``Tensor.bfloat16``) as raw
    bits in ``out16``, and per block i and row lat the norms ``wn[i, lat] = ‖W[lat]‖`` and
    ``dwn[i, lat] = ‖W[lat] − bf16(W[lat])‖`` (rounded up): one pass over W."""
    for lat in prange(W.shape[0]):
        _shadow_row(W[lat], bounds, lat, out16[lat], wn, dwn)


@njit(parallel=True, cache=True, nogil=True, boundscheck=False, fastmath=False)  # see lane_dot
def stream_dots(start, order, m, U, W, bounds, bias, out):
    """out[i, e] = W[lat, block i] · U[e // m, block i] (+ bias[i, lat] if ``bias`` has
    columns) for the entries e of each latent lat (bucketed:
    ``order[start[lat]:start[lat+1]]``): each candidate latent's logit per stream, each W
    row read once for four entries at a time. Every dot is summed in the one fixed order
    of :mod:`.lane_dot`, so an entry's bits depend neither on how many entries its latent
    has (which depends on the candidates, docs/method.md §4.3) nor on the CPU."""
    L = start.shape[0] - 1
    S = bounds.shape[0] - 1
    with_bias = bias.shape[1] > 0
    for lat in prange(L):
        t, end = start[lat], start[lat + 1]
        w = W[lat]
        while t + 4 <= end:
            e0, e1, e2, e3 = order[t], order[t + 1], order[t + 2], order[t + 3]
            u0, u1, u2, u3 = U[e0 // m], U[e1 // m], U[e2 // m], U[e3 // m]
            for i in range(S):
                acc0, acc1, acc2, acc3 = lane_dot4(w, u0, u1, u2, u3, bounds[i], bounds[i + 1])
                if with_bias:
                    bl = bias[i, lat]
                    acc0, acc1, acc2, acc3 = acc0 + bl, acc1 + bl, acc2 + bl, acc3 + bl
                out[i, e0], out[i, e1], out[i, e2], out[i, e3] = acc0, acc1, acc2, acc3
            t += 4
        for t in range(t, end):
            e = order[t]
            u = U[e // m]
            for i in range(S):
                acc = lane_dot(w, u, bounds[i], bounds[i + 1])
                out[i, e] = acc + bias[i, lat] if with_bias else acc


# ---------------------------------------------------------------------- fused optimizer step


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _adam(pc, gc, mc, vc, omb1, beta2, omb2, step_size, bc2_sqrt, eps):
    """One component's Adam step: (new p, new m, new v)."""
    mc = mc + (gc - mc) * omb1
    vc = vc * beta2 + (omb2 * gc) * gc  # this order, as Adam: g² alone may overflow
    return pc - step_size * mc / (np.sqrt(vc) / bc2_sqrt + eps), mc, vc


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _step_row(p, g, m, v, lat, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, decoder, tiny,
              W16, wn, dwn, coef, part):
    """One Adam step of row ``lat`` of a table (``p``, its gradient ``g``, moments ``m``,
    ``v``), as :func:`adam_rows` describes; if ``coef`` has rows, also
    ``part[block i] += coef[i, lat] · p[block i]`` with p before the step, in the same loop."""
    S = bounds.shape[0] - 1
    for i in range(S):
        a, b = bounds[i], bounds[i + 1]
        pi, gi, mi, vi = p[a:b], g[a:b], m[a:b], v[a:b]
        # The projected gradient g − (p·g) p, formed on the fly: g is only read.
        d = _dot(pi, gi) if decoder else _zero(pi)
        ci = coef[i, lat] if coef.shape[0] > 0 else _zero(pi)
        qi = part[a:b]  # (empty without coefficients: then ci is 0 and it is never read)
        for c in range(pi.shape[0]):
            pc = pi[c]
            if ci != 0:  # loop-invariant: LLVM splits the loop on it
                qi[c] += ci * pc
            pi[c], mi[c], vi[c] = _adam(pc, gi[c] - d * pc, mi[c], vi[c], omb1, beta2, omb2, step_size,
                                        bc2_sqrt, eps)
    if decoder:
        for i in range(S):
            pi = p[bounds[i] : bounds[i + 1]]
            inv = np.float32(1) / max(np.sqrt(_dot(pi, pi)), tiny)
            for c in range(pi.shape[0]):
                pi[c] *= inv
    elif W16.shape[0] > 0:
        _shadow_row(p, bounds, lat, W16[lat], wn, dwn)


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def adam_rows(P, G, M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, decoder, tiny,
              W16, wn, dwn):
    """One Adam step of a [L, D] table, row by row in one pass (torch.optim.Adam's
    arithmetic: ``m ← m + (1−β1)(g − m)``, ``v ← β2·v + (1−β2)·g²``,
    ``p ← p − step_size · m / (√v / √bc2 + eps)``; ``omb = 1 − β``, scalars in P's dtype).

    ``decoder``: step with the gradient's projection orthogonal to the row within every
    column block (the decoder constraint; formed on the fly, G is only read), then
    renormalise the row's blocks. Otherwise, if ``W16`` has rows, also write the updated
    row's bf16 copy and norms, as :func:`bf16_shadow` does."""
    L, D = P.shape
    n_chunks = min(L, 256)
    no_coef, no_part = np.empty((0, L), P.dtype), np.empty(0, P.dtype)
    for ch in prange(n_chunks):
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            _step_row(P[lat], G[lat], M[lat], V[lat], lat, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps,
                      decoder, tiny, W16, wn, dwn, no_coef, no_part)


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def spmm_t_adam(start, order, rows, val, A, arow, lo, hi, P, M, V, bounds, omb1, beta2, omb2, step_size,
                bc2_sqrt, eps, tiny, W16, wn, dwn, coef, rsum):
    """The encoder's weight gradient (:func:`spmm_t`) and its Adam step (:func:`adam_rows`,
    with the bf16 copy when ``W16`` has rows) in one pass: each latent's gradient row is
    formed in a scratch row and stepped at once, never written to memory. If ``coef``
    [S, L] has rows, also ``rsum[block i] = Σ_lat coef[i, lat] · P[lat, block i]`` with
    the rows before the step (the pre-bias's gradient, up to sign), in the step's loop."""
    L, D = P.shape
    n_chunks = min(L, 256)
    acc = np.zeros(D, P.dtype)
    for ch in prange(n_chunks):
        g = np.empty(D, P.dtype)
        part = np.zeros(D, P.dtype)
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            g[:] = 0
            _weight_grad_row(lat, start, order, rows, val, A, arow, lo, hi, g)
            _step_row(P[lat], g, M[lat], V[lat], lat, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps,
                      False, tiny, W16, wn, dwn, coef, part)
        acc += part
    if coef.shape[0] > 0:
        rsum[:] = acc


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def spmm_t_sddmm_adam(start, order, rows, val, A, lo, hi, P, M, V, gval, bounds, omb1, beta2, omb2, step_size,
                      bc2_sqrt, eps, tiny):
    """The decoder's backward (:func:`spmm_t_sddmm`: ``gval`` from the rows before the
    step) and its Adam step with the decoder constraint (:func:`adam_rows`) in one pass:
    each latent's gradient row is formed in a scratch row and stepped at once."""
    L, D = P.shape
    n_chunks = min(L, 256)
    none16, none_n = np.empty((0, D), np.uint16), np.empty((bounds.shape[0] - 1, 0))
    no_coef, no_part = np.empty((0, L), P.dtype), np.empty(0, P.dtype)
    for ch in prange(n_chunks):
        g = np.empty(D, P.dtype)
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            g[:] = 0
            _decoder_grad_row(lat, start, order, rows, val, A, P[lat], lo, hi, g, gval)
            _step_row(P[lat], g, M[lat], V[lat], lat, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps,
                      True, tiny, none16, none_n, none_n, no_coef, no_part)


# ---------------------------------------------------------------------- candidate selection


@njit(cache=True, nogil=True, inline="always")
def _sortable(key):
    """float32 bits → uint32 with the floats' order (negative floats reversed)."""
    if key & np.uint32(0x80000000):
        return ~key
    return key | np.uint32(0x80000000)


@njit(**_PAR)
def top_candidates(Z16, bias, n, cand, z_least, abs_max):
    """Per row b of the bf16 product ``Z16`` [B, L] (raw bits): the ``n`` latents of
    largest ``z = float(Z16[b]) + bias`` into ``cand[b]`` (any order; at a tie on the
    boundary the lowest latents), their least z into ``z_least[b]``, and
    ``max |float(Z16[b])|`` into ``abs_max[b]`` (NaN if any is NaN).

    A radix select on the floats' bits (12 + 12 + 8 bits, a histogram per level): one
    pass over the row forms the keys and the first level's histogram, a second takes
    the latents above the n-th largest key's first bin and gathers those in it, and the
    two remaining levels run on that bin alone."""
    B, L = Z16.shape
    for b in prange(B):
        keys = np.empty(L, np.uint32)
        hist = np.zeros(4096, np.int64)
        am = np.float32(0)
        nan = False
        for lat in range(L):  # bf16 → float32: the same bits, 16 zero bits below
            o = _bf16_value(Z16[b, lat])
            a = abs(o)
            if a > am:
                am = a
            elif o != o:
                nan = True
            key = _sortable(_f32_bits(o + bias[lat]))
            keys[lat] = key
            hist[key >> np.uint32(20)] += 1
        # Per level: the bin of the n-th largest key among the latents still tied; those
        # above it are in, those in it stay tied (in latent order).
        tied = np.arange(L)
        n_tied, j_above, need = L, 0, n
        prefix = np.uint32(0)
        for level in range(3):  # bits 31–20, 19–8, 7–0
            shift = 20 if level == 0 else (8 if level == 1 else 0)
            n_bins = 256 if level == 2 else 4096
            if level > 0:  # (the first level's histogram came with the keys)
                hist[:n_bins] = 0
                for t in range(n_tied):
                    hist[(keys[tied[t]] >> np.uint32(shift)) & np.uint32(n_bins - 1)] += 1
            above = 0
            top = n_bins - 1
            while above + hist[top] < need:
                above += hist[top]
                top -= 1
            need -= above
            prefix |= np.uint32(top) << np.uint32(shift)
            mask = np.uint32(0xFFFFFFFF) << np.uint32(shift)
            kept = 0
            for t in range(n_tied):
                lat = tied[t]
                key = keys[lat] & mask
                if key > prefix:
                    cand[b, j_above] = lat
                    j_above += 1
                elif key == prefix:
                    tied[kept] = lat
                    kept += 1
            n_tied = kept
        # prefix is now the key of the n-th largest; ``need`` of its ties (the lowest
        # latents: tied stays in latent order) complete the n.
        for t in range(need):
            cand[b, j_above + t] = tied[t]
        z_least[b] = _bits_f32(~prefix if prefix & np.uint32(0x80000000) == 0 else prefix & np.uint32(0x7FFFFFFF))
        abs_max[b] = np.float32(np.nan) if nan else am


# ---------------------------------------------------------------------- reconstruction losses


@njit(**_PAR)
def block_sse(M, b_pre, X, n, lo, hi, num, den):
    """``num[a, r, t] = Σ_{c in block t} (M[a·B + r, c] + b_pre[c] − X[r, c])²`` and
    ``den[r, t] = Σ_{c in block t} X[r, c]²``, block t the columns ``lo[t]:hi[t]``:
    every source's squared residual per target stream, in one pass over the rows."""
    B = X.shape[0]
    T = lo.shape[0]
    for r in prange(B):
        for t in range(T):
            xt, bt = X[r, lo[t] : hi[t]], b_pre[lo[t] : hi[t]]
            den[r, t] = _dot(xt, xt)
            for a in range(n):
                mt = M[a * B + r, lo[t] : hi[t]]
                acc = _zero(mt)
                for c in range(mt.shape[0]):
                    d = mt[c] + bt[c] - xt[c]
                    acc += d * d
                num[a, r, t] = acc


@njit(**_PAR)
def block_sse_grad(M, b_pre, X, n, lo, hi, g_num, g_den, gM, gX, gB_parts):
    """The gradients of :func:`block_sse` given those of ``num`` and ``den``: ``gM``
    (0 outside the blocks), ``gX``, and ``b_pre``'s as one partial sum per chunk of rows
    in ``gB_parts`` [n_chunks, D] (the caller adds them up)."""
    B = X.shape[0]
    T = lo.shape[0]
    n_chunks = gB_parts.shape[0]
    for ch in prange(n_chunks):
        gb = gB_parts[ch]
        gb[:] = 0
        for r in range(ch * B // n_chunks, (ch + 1) * B // n_chunks):
            gX[r, :] = 0
            for a in range(n):
                gM[a * B + r, :] = 0
            for t in range(T):
                a0, a1 = lo[t], hi[t]
                xt, bt, gxt, gbt = X[r, a0:a1], b_pre[a0:a1], gX[r, a0:a1], gb[a0:a1]
                s = g_den[r, t] + g_den[r, t]  # 2·g in the table's dtype
                for c in range(xt.shape[0]):
                    gxt[c] = s * xt[c]
                for a in range(n):
                    k = g_num[a, r, t] + g_num[a, r, t]
                    mt, gmt = M[a * B + r, a0:a1], gM[a * B + r, a0:a1]
                    for c in range(mt.shape[0]):
                        g = k * (mt[c] + bt[c] - xt[c])
                        gmt[c] = g
                        gxt[c] -= g
                        gbt[c] += g
