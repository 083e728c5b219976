"""Fused CPU kernels (numba) of the optimizer step: Adam with the decoder constraint, one
pass per table, alone or inside the backward pass that forms the table's gradient (which
is then never written out; docs/method.md §4.2). The encoder's pass also writes the bf16
copy the certified selection needs next (:mod:`.numba_bf16`).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sparc.model.kernels.numba_bf16 import _shadow_row
from sparc.model.kernels.numba_sparse import _decoder_grad_row, _dot, _weight_grad_row, _zero


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
