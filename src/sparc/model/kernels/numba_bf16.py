"""Fused CPU kernels (numba) of the certified bf16 selection (docs/method.md §4.3): the
bf16 copy of a table with its error norms, the candidates' exact per-stream logits, and
the top candidates of a bf16 product. Contracts as in :mod:`sparc.model.kernels.pytorch`.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from sparc.model.kernels.lane_dot import lane_dot, lane_dot4
from sparc.model.kernels.numba_sparse import _FAST, _PAR


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
