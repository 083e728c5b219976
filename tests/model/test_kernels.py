"""The sparse kernels against their dense equivalents, and the gradients of the two
autograd functions (gradcheck)."""

from __future__ import annotations

import sys

import pytest
import torch

from sparc.model import kernels
from sparc.model.kernels import uniform_crow
from sparc.model.kernels.autograd import DecodeSelected, SelectLogits

from ._util import assert_close

# Every test here runs on every kernel path (the fused kernels against the same dense
# products as the PyTorch ones).
pytestmark = pytest.mark.usefixtures("kernel_path")


def K():
    """The kernels of the path under test (the fixture sets the models' default)."""
    return kernels.kernels_for("cpu", torch.float32)


# The kernels take CSR rows (crow, col, val); most cases here have k entries per row.
def spmm(idx, val, W):
    return K().spmm(uniform_crow(*idx.shape), idx.reshape(-1), val.reshape(-1), W)


def sddmm(idx, A, W):
    return K().sddmm(uniform_crow(*idx.shape), idx.reshape(-1), A, W).view(idx.shape)


def spmm_t(idx, val, A, L):
    return K().spmm_t(uniform_crow(*idx.shape), idx.reshape(-1), val.reshape(-1), A, L)


def decode_selected(W, idx, val):
    return DecodeSelected.apply(K(), W, uniform_crow(*idx.shape), idx.reshape(-1), val.reshape(-1))

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=2e-2, rtol=2e-2),
    torch.bfloat16: dict(atol=1e-1, rtol=5e-2),
}


def sparse_case(R=6, k=3, L=10, D=5, dtype=torch.float64, seed=0):
    """Distinct ids within each row; ids repeated across rows; latents 0 and the last two
    never selected (their rows of a transpose product must be 0)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.arange(1, L - 2)
    idx = torch.stack([pool[torch.randperm(len(pool), generator=g)[:k]] for _ in range(R)])
    idx[1] = idx[0]  # two rows with the very same latents
    val = torch.randn(R, k, generator=g, dtype=torch.float64).to(dtype)
    W = torch.randn(L, D, generator=g, dtype=torch.float64).to(dtype)
    A = torch.randn(R, D, generator=g, dtype=torch.float64).to(dtype)
    return idx, val, W, A


def dense_codes(idx, val, L):
    """[R, L] with val summed into the columns idx (float64)."""
    return torch.zeros(idx.shape[0], L, dtype=torch.float64).scatter_add_(1, idx, val.double())


def half_supported(dtype) -> bool:
    try:
        idx, val, W, A = sparse_case(dtype=dtype)
        spmm(idx, val, W), sddmm(idx, A, W), spmm_t(idx, val, A, W.shape[0])
        return True
    except RuntimeError:
        return False


DTYPES = [
    torch.float64,
    torch.float32,
    pytest.param(torch.float16, marks=pytest.mark.skipif(
        not half_supported(torch.float16), reason="no float16 embedding_bag/bmm on this CPU build")),
    pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
        not half_supported(torch.bfloat16), reason="no bfloat16 embedding_bag/bmm on this CPU build")),
]


def test_case_covers_repeats_and_unselected():
    idx, _, W, _ = sparse_case()
    counts = torch.bincount(idx.reshape(-1), minlength=W.shape[0])
    assert counts[0] == 0 and counts[-1] == 0 and counts[-2] == 0
    assert (counts > 1).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_spmm_equals_dense_decode(dtype):
    idx, val, W, _ = sparse_case(dtype=dtype)
    out = spmm(idx, val, W)
    assert out.dtype == dtype
    assert_close(out.double(), dense_codes(idx, val, W.shape[0]) @ W.double(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))  # float16/bfloat16 take the slab (bmm) path
def test_sddmm_equals_gathered_dense_product(dtype):
    idx, _, W, A = sparse_case(dtype=dtype)
    out = sddmm(idx, A, W)
    assert out.dtype == dtype and out.shape == idx.shape
    full = A.double() @ W.double().t()  # [R, L]: every sample against every latent
    assert_close(out.double(), full.gather(1, idx), **TOL[dtype])


@pytest.mark.skipif(not half_supported(torch.float16), reason="no float16 kernels on this CPU build")
def test_sddmm_half_path_over_several_slabs():
    # slab = max(1, 2**22 // D) entries = 128 entries: 5 rows × 64 = 320 entries take
    # three slabs, the last one partial.
    R, k, L, D = 5, 64, 80, 32768
    g = torch.Generator().manual_seed(1)
    idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(R)])
    W = (torch.randn(L, D, generator=g) / D**0.5).half()
    A = torch.randn(R, D, generator=g).half()
    out = sddmm(idx, A, W)
    ref = sddmm(idx, A.double(), W.double())
    assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_spmm_t_equals_dense_transpose_product(dtype):
    idx, val, W, A = sparse_case(dtype=dtype)
    L = W.shape[0]
    out = spmm_t(idx, val, A, L)
    assert out.shape == (L, A.shape[1]) and out.dtype == dtype
    assert_close(out.double(), dense_codes(idx, val, L).t() @ A.double(), **TOL[dtype])
    assert torch.count_nonzero(out[[0, L - 2, L - 1]]) == 0


def test_spmm_t_with_more_latents_than_ever_selected_and_single_row():
    idx = torch.tensor([[2, 0]])
    val = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    A = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    out = spmm_t(idx, val, A, 5)
    # latent 0 gets −1·A, latent 2 gets 2·A, the rest nothing
    assert out.tolist() == [[-1, -3], [0, 0], [2, 6], [0, 0], [0, 0]]


def test_kernels_with_repeated_id_within_a_row():
    # Not produced by TopK, but the definitions still sum over j.
    idx = torch.tensor([[1, 1, 3], [0, 3, 3]])
    val = torch.tensor([[1.0, 2.0, -1.0], [0.5, 1.0, 1.0]], dtype=torch.float64)
    W = torch.randn(4, 3, dtype=torch.float64)
    A = torch.randn(2, 3, dtype=torch.float64)
    assert_close(spmm(idx, val, W), dense_codes(idx, val, 4) @ W)
    assert_close(spmm_t(idx, val, A, 4), dense_codes(idx, val, 4).t() @ A)
    assert_close(sddmm(idx, A, W), (A @ W.t()).gather(1, idx))


def test_kernels_accept_column_slices_of_the_weight_table():
    """The model decodes one stream through a non-contiguous column slice of W_dec."""
    idx, val, W, A = sparse_case(D=7)
    Wc = W[:, 2:5]
    assert not Wc.is_contiguous()
    assert_close(spmm(idx, val, Wc), dense_codes(idx, val, W.shape[0]) @ Wc)
    assert_close(sddmm(idx, A[:, 2:5], Wc), (A[:, 2:5] @ Wc.t()).gather(1, idx))


def test_kernels_on_rows_of_different_lengths():
    # Codes and AuxK codes share one call: rows of 3, 0 and 2 entries.
    crow = torch.tensor([0, 3, 3, 5])
    col = torch.tensor([1, 4, 2, 4, 0])
    val = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    W = torch.randn(6, 3, dtype=torch.float64)
    A = torch.randn(3, 3, dtype=torch.float64)
    rows = torch.tensor([0, 0, 0, 2, 2])
    dense = torch.zeros(3, 6, dtype=torch.float64).index_put_((rows, col), val, accumulate=True)
    assert_close(K().spmm(crow, col, val, W), dense @ W)
    assert_close(K().spmm_t(crow, col, val, A, 6), dense.t() @ A)
    assert_close(K().sddmm(crow, col, A, W), (A @ W.t())[rows, col])
    Wg, vg = W.clone().requires_grad_(), val.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda W, v: DecodeSelected.apply(K(), W, crow, col, v), (Wg, vg))


# ---------------------------------------------------------------------------- gradcheck


def test_gradcheck_decode_selected():
    idx, val, W, _ = sparse_case(R=5, k=3, L=8, D=4)
    W.requires_grad_()
    val.requires_grad_()
    assert torch.autograd.gradcheck(lambda W, v: decode_selected(W, idx, v), (W, val))


def test_gradcheck_decode_selected_on_column_slice():
    idx, val, W, _ = sparse_case(R=4, k=2, L=8, D=6)
    W.requires_grad_()
    val.requires_grad_()
    assert torch.autograd.gradcheck(lambda W, v: decode_selected(W[:, 1:4], idx, v), (W, val))


def select_logits_fn(x_bd, idx_sbk, stream_ids, cols):
    """SelectLogits the way the model calls it: the logits and u = x − b_pre come from a
    no-grad pass over the current weights, so finite differences see the real maths."""

    def f(W, b_pre, b_lat, x=x_bd):
        with torch.no_grad():
            logits = torch.stack([
                (x[:, col] - b_pre[col]) @ W[:, col].t() + b_lat[i] for i, col in zip(stream_ids, cols)
            ])
        return SelectLogits.apply(K(), W, b_pre, b_lat, x, logits.gather(2, idx_sbk), idx_sbk, stream_ids, cols, None)

    return f


@pytest.mark.parametrize("global_idx", [True, False], ids=["global", "local"])
@pytest.mark.parametrize("stream_ids", [(0, 1, 2), (1,), (0, 2)], ids=["all", "one", "two"])
def test_gradcheck_select_logits(stream_ids, global_idx):
    g = torch.Generator().manual_seed(2)
    dims, L, B, k = (3, 2, 4), 7, 4, 3
    all_cols = [slice(0, 3), slice(3, 5), slice(5, 9)]
    cols = tuple(all_cols[i] for i in stream_ids)
    n = len(stream_ids)
    if global_idx:
        idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(B)])
        idx[1] = idx[0]
        idx = idx.expand(n, B, k)
    else:
        idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(n * B)]).view(n, B, k)
    W = torch.randn(L, sum(dims), generator=g, dtype=torch.float64, requires_grad=True)
    b_pre = torch.randn(sum(dims), generator=g, dtype=torch.float64, requires_grad=True)
    b_lat = torch.randn(3, L, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(B, sum(dims), generator=g, dtype=torch.float64)
    f = select_logits_fn(x, idx, stream_ids, cols)
    assert torch.autograd.gradcheck(f, (W, b_pre, b_lat))
    assert torch.autograd.gradcheck(lambda x: f(W.detach(), b_pre.detach(), b_lat.detach(), x),
                                    (x.clone().requires_grad_(),))
    # gradients outside the present streams' columns and rows are exactly zero
    f(W, b_pre, b_lat).sum().backward()
    absent = [i for i in range(3) if i not in stream_ids]
    for i in absent:
        assert torch.count_nonzero(W.grad[:, all_cols[i]]) == 0
        assert torch.count_nonzero(b_pre.grad[all_cols[i]]) == 0
        assert torch.count_nonzero(b_lat.grad[i]) == 0


# ---------------------------------------------------------------------------- fused-kernel features


# (n, G, k, L, D): few entries per latent; many (the fused kernels' four-at-a-time loops
# and their remainders: k = 7 is 4 + 3, and every latent has dozens of entries).
SHARED_CASES = [(3, 4, 3, 12, 6), (3, 8, 7, 9, 37), (2, 5, 5, 6, 11)]


@pytest.mark.parametrize("n,G,k,L,D", SHARED_CASES)
def test_shared_rows_decode_and_gather_like_separate_rows(n, G, k, L, D):
    """Rows s·G + g sharing the latents of row g (the streams of a sample under global
    TopK), followed by rows of other lengths (AuxK): the shared loop equals row by row."""
    g = torch.Generator().manual_seed(5)
    idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(G)])
    main = idx.repeat(n, 1)                                   # [n·G, k]
    aux = torch.randint(0, L, (n * G, 2), generator=g)
    crow = torch.cat([uniform_crow(n * G, k), n * G * k + uniform_crow(n * G, 2)[1:]])
    col = torch.cat([main.reshape(-1), aux.reshape(-1)])
    val = torch.randn(col.numel(), generator=g, dtype=torch.float64)
    val[3] = 0.0  # a zero value is skipped, not mis-read
    W = torch.randn(L, D, generator=g, dtype=torch.float64)
    A = torch.randn(2 * n * G, D, generator=g, dtype=torch.float64)
    assert_close(K().spmm(crow, col, val, W, shared=(n, G)), K().spmm(crow, col, val, W))
    assert_close(K().sddmm(crow, col, A, W, shared=(n, G)), K().sddmm(crow, col, A, W))
    rows = torch.repeat_interleave(torch.arange(2 * n * G), crow.diff())
    dense = torch.zeros(2 * n * G, L, dtype=torch.float64).index_put_((rows, col), val, accumulate=True)
    assert_close(K().spmm(crow, col, val, W, shared=(n, G)), dense @ W)


@pytest.mark.parametrize("R,k,L,D", [(6, 2, 9, 7), (40, 6, 8, 13)])  # the second: long buckets, mixed columns
def test_spmm_t_reads_chosen_rows_and_columns_into_a_given_buffer(R, k, L, D):
    """Row r of the code reads A[arow[r], lo[r]:hi[r]] (the encoder gradient: stream s
    reads its own columns of x − b_pre); ``out`` is overwritten, or added to."""
    g = torch.Generator().manual_seed(6)
    idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(R)])
    val = torch.randn(R, k, generator=g, dtype=torch.float64)
    A = torch.randn(3, D, generator=g, dtype=torch.float64)
    arow = torch.arange(R) % 3
    second = (torch.arange(R) >= R // 2) if R == 6 else (torch.arange(R) % 5 >= 3)
    lo, hi = torch.where(second, 4, 0), torch.where(second, D, 4)
    table = A[arow].clone()
    for r in range(R):
        table[r, : lo[r]] = 0
        table[r, hi[r]:] = 0
    want = dense_codes(idx, val, L).t() @ table
    crow, col = uniform_crow(R, k), idx.reshape(-1)
    assert_close(K().spmm_t(crow, col, val.reshape(-1), A, L, arow=arow, lo=lo, hi=hi), want)
    out = torch.full((L, D), 7.0, dtype=torch.float64)
    assert K().spmm_t(crow, col, val.reshape(-1), A, L, arow=arow, lo=lo, hi=hi, out=out) is out
    assert_close(out, want)
    K().spmm_t(crow, col, val.reshape(-1), A, L, arow=arow, lo=lo, hi=hi, out=out, accumulate=True)
    assert_close(out, 2 * want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_decoder_constraint_rows(dtype):
    g = torch.Generator().manual_seed(7)
    bounds = [0, 3, 5, 9]
    W = torch.randn(6, 9, generator=g, dtype=dtype)
    W[2, 3:5] = 0  # a zero block stays zero (no division by zero)
    G = torch.randn(6, 9, generator=g, dtype=dtype)
    Wn = W.clone()
    K().normalize_rows_(Wn, bounds)
    for a, b in zip(bounds[:-1], bounds[1:]):
        norms = W[:, a:b].norm(dim=1, keepdim=True)
        assert_close(Wn[:, a:b], torch.where(norms > 0, W[:, a:b] / norms.clamp_min(1e-30), 0), **TOL[dtype])
    Gp = G.clone()
    K().remove_parallel_(Wn, Gp, bounds)
    for a, b in zip(bounds[:-1], bounds[1:]):
        w = Wn[:, a:b]
        want = G[:, a:b] - (w * G[:, a:b]).sum(1, keepdim=True) * w
        assert_close(Gp[:, a:b], want, **TOL[dtype])
        assert (w * Gp[:, a:b]).sum(1).abs().max() < 1e-5  # orthogonal to the rows now


def test_gradient_buffers_become_grad_and_accumulate(kernel_path):
    """With a training engine's gradient buffers, W.grad is the same tensor step after
    step (no allocation), holds the gradient the functional path returns, and a second
    backward adds to it."""
    from sparc.model.engine import StepEngine

    from ._util import make_inputs, make_model

    ref = make_model(n_latents=16, k=3)
    x = make_inputs(ref, 5)
    ref(x).losses.total.backward()
    model = make_model(n_latents=16, k=3)
    engine = StepEngine(model, bf16_select="off", gradient_buffers=True)
    seen = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        model(x, engine=engine).losses.total.backward()
        seen.append(model.W_dec.grad.data_ptr())
        assert_close(model.W_dec.grad, ref.W_dec.grad)
        assert_close(model.W_enc.grad, ref.W_enc.grad)
    if kernel_path != "pytorch":
        assert seen[0] == seen[1]
    else:
        assert engine.grad_buffer("W_dec") is None  # no saving there: PyTorch allocates anyway
    model(x, engine=engine).losses.total.backward()  # no zero_grad: accumulates
    assert_close(model.W_enc.grad, 2 * ref.W_enc.grad)
    assert_close(model.W_dec.grad, 2 * ref.W_dec.grad)


def test_kernel_choice_and_fallback():
    """CPU float32/64 get the fused kernels; other dtypes the PyTorch ones; a numba that
    cannot load gives a one-line notice and the PyTorch kernels — or, forced, an error."""
    import os
    import subprocess

    from sparc.errors import SparcError

    assert kernels.resolve("pytorch", "cpu", torch.float32) == "pytorch"
    assert kernels.resolve("auto", "cpu", torch.bfloat16) == "pytorch"
    assert kernels.resolve("auto", "meta", torch.float32) == "pytorch"
    with pytest.raises(SparcError, match="must be one of"):
        kernels.resolve("fast", "cpu", torch.float32)
    # As if numba were not installed: a fresh process in which importing it fails.
    code = """
import sys
sys.modules["numba"] = None
import torch
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig, kernels
assert kernels.resolve("auto", "cpu", torch.float32) == "pytorch"
m = SPARC({"a": 4}, SPARCConfig(n_latents=8, k=2))
assert m.kernels.name == "pytorch"
m({"a": torch.randn(3, 4)}).losses.total.backward()  # still computes
try:
    m.use_kernels("fused")
except SparcError as e:
    print("refused:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "SPARC_KERNELS": "auto"}, timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 0, r.stderr
    assert len(err) == 1 and "fused CPU kernels unavailable" in err[0] and "pip install numba" in err[0]
    assert r.stdout.startswith("refused: the fused CPU kernels cannot run here") and "pip install numba" in r.stdout


@pytest.mark.parametrize("n,G,k,L,D", [(2, 3, 2, 10, 7), (3, 8, 7, 9, 37)])
def test_rows_decoded_in_their_own_columns_and_their_gradients(n, G, k, L, D):
    """An AuxK row decodes its own stream's columns only: ``lo``/``hi`` per row give
    zeros elsewhere, and the backward (weights and values) sees those columns only."""
    g = torch.Generator().manual_seed(8)
    idx = torch.stack([torch.randperm(L, generator=g)[:k] for _ in range(G)])
    crow = torch.cat([uniform_crow(n * G, k), n * G * k + uniform_crow(n * G, 3)[1:]])
    col = torch.cat([idx.repeat(n, 1).reshape(-1), torch.randint(0, L, (n * G * 3,), generator=g)])
    R = 2 * n * G
    lo = torch.tensor([0] * (n * G) + [0] * ((n * G) // 2) + [4] * (n * G - (n * G) // 2))
    hi = torch.tensor([D] * (n * G) + [4] * ((n * G) // 2) + [D] * (n * G - (n * G) // 2))
    mask = torch.stack([(torch.arange(D) >= a) & (torch.arange(D) < b) for a, b in zip(lo, hi)]).double()
    rows = torch.repeat_interleave(torch.arange(R), crow.diff())
    val = torch.randn(col.numel(), generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(L, D, generator=g, dtype=torch.float64, requires_grad=True)
    out = DecodeSelected.apply(K(), W, crow, col, val, (n, G), None, lo, hi)
    dense = torch.zeros(R, L, dtype=torch.float64).index_put((rows, col), val, accumulate=True)
    want = (dense @ W) * mask
    assert_close(out, want.detach())
    up = torch.randn(R, D, generator=g, dtype=torch.float64)
    gW, gv = torch.autograd.grad((out * up).sum(), (W, val))
    wW, wv = torch.autograd.grad((want * up).sum(), (W, val))
    assert_close(gW, wW)
    assert_close(gv, wv)


@pytest.mark.parametrize("cols", [[slice(0, 5), slice(5, 9), slice(9, 13)], [slice(5, 9), slice(0, 3)]],
                         ids=["all streams", "a subset, out of order"])
def test_block_sse_values_and_gradients(cols, kernel_path):
    """Each source's squared residual per target block and the blocks' norms, against the
    sums written out; gradients by gradcheck (the columns of absent streams take none)."""
    g = torch.Generator().manual_seed(11)
    n, B, D = 3, 5, 13
    M = torch.randn(n * B, D, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, generator=g, dtype=torch.float64, requires_grad=True)
    X = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    num, den = K().block_sse(M, b, X, n, cols)
    res = M.view(n, B, D) + b - X
    for t, col in enumerate(cols):
        assert_close(num[:, :, t], (res[:, :, col] ** 2).sum(-1))
        assert_close(den[:, t], (X[:, col] ** 2).sum(-1))
    assert torch.autograd.gradcheck(lambda M, b, X: K().block_sse(M, b, X, n, cols), (M, b, X))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("L", [5, 300, 600], ids=["L<chunks", "L=300", "L=600"])  # more rows than chunks: several a chunk
def test_block_row_sum(dtype, L, kernel_path):
    """Σ_l coef[i, l] · W[l, block i] per block against the sums written out, blocks out
    of order and a gap of columns no block covers (0 there); zero coefficients skipped."""
    g = torch.Generator().manual_seed(5)
    D, cols = 11, [slice(6, 11), slice(0, 4)]
    W = torch.randn(L, D, generator=g, dtype=dtype)
    coef = torch.randn(2, L, generator=g, dtype=dtype)
    coef[0, ::3] = 0
    out = K().block_row_sum(W, coef, cols)
    want = torch.zeros(D, dtype=torch.float64)
    for i, col in enumerate(cols):
        want[col] = (coef[i].double()[:, None] * W[:, col].double()).sum(0)
    assert_close(out, want.to(dtype), **TOL[dtype])
    assert torch.all(out[4:6] == 0)
