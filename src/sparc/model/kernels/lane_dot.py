"""Dot products in one fixed order, the same bits on every CPU (docs/method.md §4.3).

A loop that ``fastmath`` lets LLVM vectorise sums in whatever order the target's vector
width and the loop around it suggest: the same dot can round differently on an AVX2 and
an AVX-512 CPU, or when it is computed four rows at a time rather than alone. The
certified selection needs a candidate's logit to be the same bits whichever path chose
it (first round, second round, float32 fallback), so these dots are written as explicit
16-lane vector IR with no fast-math flags, which LLVM must keep as written:

- element ``c`` of ``x[a:b]·w[a:b]`` goes to lane ``(c − a) mod 16``; each lane starts at
  +0 and adds its products ``w[c]·x[c]`` (each rounded, no FMA) in order of ``c``;
- the 16 lanes are then summed by halves: ``t[i] = l[i] + l[i + 8]``, then ``i + 4``,
  ``i + 2``, ``i + 1``.

A partial last chunk adds +0 to the lanes it does not reach, which changes no lane (a
lane that starts at +0 is never −0 under round to nearest). SSE, AVX2 and AVX-512 all
legalise the 16-lane operations to the same IEEE operations. The functions must be
called from kernels compiled with ``fastmath=False`` (said explicitly: numba's
fast-math pass adds its flags to every float instruction of a function that has none,
these included, and a kernel without the option inherits a fast-math caller's).
``tests/model/test_certified.py`` checks the bits against a PyTorch evaluation of the
same order, natively and with the instruction set capped to AVX2 (a NaN's sign and
payload aside). numba's cache of the kernels that call these is keyed on
``numba_bf16.py``: after editing this file, touch that one.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16


def _lane_sums(context, builder, sig, args, n_rows: int):
    """IR for ``n_rows`` dots of one row ``w`` with rows ``x_0..x_{n-1}`` over [a, b)."""
    w_ty, a_ty = sig.args[0], sig.args[-2]
    elem = context.get_value_type(w_ty.dtype)
    vec = ir.VectorType(elem, LANES)
    intp = context.get_value_type(types.intp)
    a = context.cast(builder, args[-2], a_ty, types.intp)
    b = context.cast(builder, args[-1], sig.args[-1], types.intp)
    w_ptr = context.make_array(w_ty)(context, builder, args[0]).data
    x_ptrs = [context.make_array(sig.args[1 + r])(context, builder, args[1 + r]).data for r in range(n_rows)]
    zero_vec = ir.Constant(vec, [0.0] * LANES)
    accs = [cgutils.alloca_once_value(builder, zero_vec) for _ in range(n_rows)]  # promoted to registers

    def load_vec(ptr, at):  # a bitcast pointer, which typed and opaque pointers both accept
        return builder.load(builder.bitcast(builder.gep(ptr, [at]), vec.as_pointer()),
                            align=w_ty.dtype.bitwidth // 8)

    def load(ptr, at):
        return builder.load(builder.bitcast(builder.gep(ptr, [at]), elem.as_pointer()))

    n = builder.sub(b, a)
    n = builder.select(builder.icmp_signed("<", n, ir.Constant(intp, 0)), ir.Constant(intp, 0), n)  # b < a: empty
    n_full = builder.and_(n, ir.Constant(intp, -LANES))
    with cgutils.for_range_slice(builder, ir.Constant(intp, 0), n_full, ir.Constant(intp, LANES), intp) as (c, _):
        at = builder.add(a, c)
        wv = load_vec(w_ptr, at)
        for ptr, acc in zip(x_ptrs, accs):
            builder.store(builder.fadd(builder.load(acc), builder.fmul(wv, load_vec(ptr, at))), acc)

    # The partial last chunk: its products in their lanes, +0 in the others.
    tails = [cgutils.alloca_once_value(builder, zero_vec) for _ in range(n_rows)]
    start = builder.add(a, n_full)
    with cgutils.for_range(builder, builder.sub(n, n_full), intp=intp) as loop:
        at = builder.add(start, loop.index)
        wc = load(w_ptr, at)
        lane = builder.trunc(loop.index, ir.IntType(32))
        for ptr, tail in zip(x_ptrs, tails):
            p = builder.fmul(wc, load(ptr, at))
            builder.store(builder.insert_element(builder.load(tail), p, lane), tail)

    sums = []
    for acc, tail in zip(accs, tails):
        v = builder.fadd(builder.load(acc), builder.load(tail))
        width = LANES
        while width > 1:  # halves: lanes i and i + width/2
            width //= 2
            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width))))
            hi = builder.shuffle_vector(
                v, v, ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(width, 2 * width))))
            v = builder.fadd(lo, hi)
        sums.append(builder.extract_element(v, ir.Constant(ir.IntType(32), 0)))
    return sums


def _check(w, xs, a, b):
    arrays = (w, *xs)
    if not all(isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C" for t in arrays):
        return None
    if w.dtype not in (types.float32, types.float64) or any(t.dtype != w.dtype for t in xs):
        return None
    if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return None
    return w.dtype


@intrinsic
def lane_dot(typingctx, w, x, a, b):
    """``w[a:b] · x[a:b]`` in the fixed 16-lane order (module docstring); ``w`` and ``x``
    are contiguous 1-D float32 or float64 arrays (rows of C-ordered tables)."""
    dtype = _check(w, (x,), a, b)
    if dtype is None:
        return None

    def codegen(context, builder, sig, args):
        return _lane_sums(context, builder, sig, args, 1)[0]
    return dtype(w, x, a, b), codegen


@intrinsic
def lane_dot4(typingctx, w, x0, x1, x2, x3, a, b):
    """``(w[a:b] · x_i[a:b] for i in 0..3)``, each in the fixed order of :func:`lane_dot`
    (so the same bits as four calls of it), reading ``w`` once."""
    dtype = _check(w, (x0, x1, x2, x3), a, b)
    if dtype is None:
        return None
    ret = types.UniTuple(dtype, 4)

    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, ret, _lane_sums(context, builder, sig, args, 4))
    return ret(w, x0, x1, x2, x3, a, b), codegen
