"""Fused CPU kernels (numba): the sparse products and the decoder constraint of a
training step, and the reconstruction losses.

Same contracts as :mod:`sparc.model.kernels.pytorch` (the oracle), on numpy views of
float32/float64 CPU tensors (:mod:`sparc.model.kernels.fused` adapts them). What makes
them faster than PyTorch's generic sparse ops (BENCHMARKS.md, "Training step"):

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
numba caches each kernel keyed on its own file: after editing a helper here, touch the
modules that inline it (``numba_adam.py``, ``numba_bf16.py``), or clear ``__pycache__``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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
