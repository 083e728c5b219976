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
    columns. ``G = 0``: no rows shared."""
    R = crow.shape[0] - 1
    D = W.shape[1]
    n_units = G + (R - n_shared * G)
    for u in prange(n_units):
        if u < G:
            for s in range(n_shared):
                out[s * G + u, :] = 0
            for j in range(crow[u + 1] - crow[u]):
                w = W[col[crow[u] + j]]
                for s in range(n_shared):
                    r = s * G + u
                    v = val[crow[r] + j]
                    if v != 0:
                        o = out[r]
                        for c in range(D):
                            o[c] += v * w[c]
        else:
            r = n_shared * G + (u - G)
            out[r, :] = 0
            o = out[r, lo[r] : hi[r]]
            for e in range(crow[r], crow[r + 1]):
                v = val[e]
                if v != 0:
                    w = W[col[e], lo[r] : hi[r]]
                    for c in range(o.shape[0]):
                        o[c] += v * w[c]


@njit(**_PAR)
def sddmm(crow, col, A, W, n_shared, G, out):
    """out[e] = W[col[e]] · A[row(e)]; rows shared as in :func:`spmm`."""
    R = crow.shape[0] - 1
    D = W.shape[1]
    n_units = G + (R - n_shared * G)
    for u in prange(n_units):
        if u < G:
            for j in range(crow[u + 1] - crow[u]):
                w = W[col[crow[u] + j]]
                for s in range(n_shared):
                    r = s * G + u
                    a = A[r]
                    acc = _zero(w)
                    for c in range(D):
                        acc += w[c] * a[c]
                    out[crow[r] + j] = acc
        else:
            r = n_shared * G + (u - G)
            a = A[r]
            for e in range(crow[r], crow[r + 1]):
                w = W[col[e]]
                acc = _zero(w)
                for c in range(D):
                    acc += w[c] * a[c]
                out[e] = acc


@njit(**_PAR)
def spmm_t(start, order, rows, val, A, arow, lo, hi, out, accumulate):
    """out[lat, lo[r]:hi[r]] (+)= Σ_{e: col[e] = lat} val[e] · A[arow[r], lo[r]:hi[r]], r = row(e).

    Entries come bucketed by latent (:func:`bucket_by_latent`); each row of ``out`` is
    written once (zeroed first unless ``accumulate``)."""
    L = out.shape[0]
    for lat in prange(L):
        o = out[lat]
        if not accumulate:
            o[:] = 0
        for t in range(start[lat], start[lat + 1]):
            e = order[t]
            v = val[e]
            if v != 0:
                r = rows[e]
                a = A[arow[r], lo[r] : hi[r]]
                oo = o[lo[r] : hi[r]]
                for c in range(a.shape[0]):
                    oo[c] += v * a[c]


@njit(**_PAR)
def spmm_t_sddmm(start, order, rows, val, A, W, lo, hi, out, gval, accumulate):
    """The decoder's backward in one pass over the latents: ``out[lat] (+)= Σ val[e]·A[row(e)]``
    (:func:`spmm_t`) and ``gval[e] = W[col[e]]·A[row(e)]`` (:func:`sddmm`), row r in its
    columns ``lo[r]:hi[r]``; each W row read once while its gradient row is written."""
    L = out.shape[0]
    for lat in prange(L):
        if not accumulate:
            out[lat, :] = 0
        for t in range(start[lat], start[lat + 1]):
            e = order[t]
            v = val[e]
            r = rows[e]
            a, w, o = A[r, lo[r] : hi[r]], W[lat, lo[r] : hi[r]], out[lat, lo[r] : hi[r]]
            acc = _zero(w)
            for c in range(a.shape[0]):
                acc += w[c] * a[c]
                o[c] += v * a[c]
            gval[e] = acc


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


@njit(cache=True, fastmath=_FAST, nogil=True, boundscheck=False)
def _sq_diff(a, b):
    acc = _zero(a)
    for c in range(a.shape[0]):
        d = a[c] - b[c]
        acc += d * d
    return acc


@njit(**_PAR)
def bf16_shadow(W, bounds, out16, wn, dwn):
    """The bfloat16 copy of W (round to nearest even, as ``Tensor.bfloat16``) as raw
    bits in ``out16``, and per block i and row lat the norms ``wn[i, lat] = ‖W[lat]‖`` and
    ``dwn[i, lat] = ‖W[lat] − bf16(W[lat])‖`` (rounded up): one pass over W."""
    L, D = W.shape
    bits = W.view(np.uint32)
    n_chunks = min(L, 256)
    for ch in prange(n_chunks):
        back = np.empty(D, np.uint32)
        back_f = back.view(np.float32)
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            for c in range(D):
                b = bits[lat, c]
                r = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
                out16[lat, c] = np.uint16(r)
                back[c] = r << np.uint32(16)
            for i in range(bounds.shape[0] - 1):
                wi, bi = W[lat, bounds[i] : bounds[i + 1]], back_f[bounds[i] : bounds[i + 1]]
                sw = _dot(wi, wi)
                sd = _sq_diff(wi, bi)
                # float32 sums of d ≤ 2560 squares: relative error below 2·10⁻⁴, covered
                # by the 1.001 (the bound must not be too small).
                wn[i, lat] = math.sqrt(sw) * 1.001
                dwn[i, lat] = math.sqrt(sd) * 1.001


@njit(**_PAR)
def stream_dots(start, order, m, U, W, bounds, out):
    """out[i, e] = W[lat, block i] · U[e // m, block i] for the entries e of each latent lat
    (bucketed: ``order[start[lat]:start[lat+1]]``): each candidate latent's logit per stream,
    each W row read once (accumulated in W's dtype, vectorised: within the float32
    path's own round-off bound, docs/method.md §4.3)."""
    L = start.shape[0] - 1
    for lat in prange(L):
        if start[lat] == start[lat + 1]:
            continue
        w = W[lat]
        for t in range(start[lat], start[lat + 1]):
            e = order[t]
            u = U[e // m]
            for i in range(bounds.shape[0] - 1):
                wi, ui = w[bounds[i] : bounds[i + 1]], u[bounds[i] : bounds[i + 1]]
                acc = _zero(wi)
                for c in range(wi.shape[0]):
                    acc += wi[c] * ui[c]
                out[i, e] = acc


# ---------------------------------------------------------------------- fused optimizer step


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def adam_rows(P, G, M, V, bounds, omb1, beta2, omb2, step_size, bc2_sqrt, eps, decoder, tiny,
              W16, wn, dwn):
    """One Adam step of a [L, D] table, row by row in one pass (torch.optim.Adam's
    arithmetic: ``m ← m + (1−β1)(g − m)``, ``v ← β2·v + (1−β2)·g²``,
    ``p ← p − step_size · m / (√v / √bc2 + eps)``; ``omb = 1 − β``, scalars in P's dtype).

    ``decoder``: first drop the gradient's component along the row within every column
    block (the decoder constraint's projection, in place in G), then renormalise the
    row's blocks after the update. Otherwise, if ``W16`` has rows, also write the
    updated row's bf16 copy and norms, as :func:`bf16_shadow` does."""
    L, D = P.shape
    S = bounds.shape[0] - 1
    shadow = W16.shape[0] > 0
    n_chunks = min(L, 256)
    for ch in prange(n_chunks):
        back = np.empty(D, np.uint32)
        back_f = back.view(np.float32)
        for lat in range(ch * L // n_chunks, (ch + 1) * L // n_chunks):
            p, g, m, v = P[lat], G[lat], M[lat], V[lat]
            if decoder:
                for i in range(S):
                    pi, gi = p[bounds[i] : bounds[i + 1]], g[bounds[i] : bounds[i + 1]]
                    d = _dot(pi, gi)
                    for c in range(pi.shape[0]):
                        gi[c] -= d * pi[c]
            for c in range(D):
                gc = g[c]
                mc = m[c] + (gc - m[c]) * omb1
                vc = v[c] * beta2 + (omb2 * gc) * gc  # this order, as Adam: g² alone may overflow
                m[c] = mc
                v[c] = vc
                p[c] -= step_size * mc / (np.sqrt(vc) / bc2_sqrt + eps)
            if decoder:
                for i in range(S):
                    pi = p[bounds[i] : bounds[i + 1]]
                    ss = _dot(pi, pi)
                    inv = np.float32(1) / max(np.sqrt(ss), tiny)
                    for c in range(pi.shape[0]):
                        pi[c] *= inv
            elif shadow:
                bits = p.view(np.uint32)
                for c in range(D):
                    b = bits[c]
                    r = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
                    W16[lat, c] = np.uint16(r)
                    back[c] = r << np.uint32(16)
                for i in range(S):
                    pi, bi = p[bounds[i] : bounds[i + 1]], back_f[bounds[i] : bounds[i + 1]]
                    sw = _dot(pi, pi)
                    sd = _sq_diff(pi, bi)
                    wn[i, lat] = math.sqrt(sw) * 1.001
                    dwn[i, lat] = math.sqrt(sd) * 1.001
