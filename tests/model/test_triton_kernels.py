"""The Triton kernels (:mod:`sparc.model.kernels.triton_gpu`) against the PyTorch kernels
(the oracle), and the dispatch that chooses them.

The kernel tests run on a CUDA GPU when there is one. Without one, when Triton is
installed, :func:`test_kernels_under_the_interpreter` runs them again in a fresh process
under Triton's interpreter (``TRITON_INTERPRET=1``), on CPU tensors: the same kernel
code, executed through numpy, so the indexing, masking and accumulation are checked
here too — not the compiled code's speed or GPU-only behaviour. (The interpreter must
be on before Triton is first imported, which a shared test process cannot promise.)
:func:`test_kernels_compile_for_a_gpu` compiles every kernel variant for sm_90 without a
GPU. Without Triton these skip; the dispatch tests and the no-import test run everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sparc.model import kernels
from sparc.model.kernels import pytorch as P
from sparc.model.kernels import uniform_crow
from sparc.model.kernels.autograd import DecodeSelected

from ._util import assert_close, make_inputs, make_model

HAS_TRITON = importlib.util.find_spec("triton") is not None  # finds, does not import
INTERPRETER = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NO_TRITON = "Triton is not installed (pip install 'sparc-sae[gpu]'): no Triton kernels to test"
NO_GPU = ("no CUDA GPU: the kernel tests run under Triton's interpreter in a fresh process "
          "(test_kernels_under_the_interpreter)")

TOL = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float16: dict(atol=1e-2, rtol=5e-3),
    torch.bfloat16: dict(atol=5e-2, rtol=2e-2),
}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
dtype_id = lambda d: str(d).removeprefix("torch.")  # noqa: E731


@pytest.fixture(scope="module")
def tg():
    """The Triton kernel module: compiled on a GPU, interpreted on the CPU."""
    if not HAS_TRITON:
        pytest.skip(NO_TRITON)
    if DEVICE == "cpu" and not INTERPRETER:
        pytest.skip(NO_GPU)
    mod = importlib.import_module("sparc.model.kernels.triton_gpu")
    if DEVICE == "cpu" and not mod.INTERPRETED:
        pytest.skip("Triton was imported before TRITON_INTERPRET was set in this process")
    return mod


@pytest.fixture
def triton_path(tg, monkeypatch):
    """The Triton path chosen by default (on the CPU: the interpreter); ``K()`` its kernels."""
    monkeypatch.setenv("SPARC_KERNELS", "triton")
    return tg


def K():
    """The kernels models on DEVICE get by default (a test may choose another path)."""
    return kernels.kernels_for(DEVICE, torch.float32)


def on(*ts):
    return [t.to(DEVICE) for t in ts]


def mixed_case(dtype, D, *, n=3, G=5, k=4, L=23, seed=0):
    """CSR codes as the model makes them: n·G rows where row s·G + g carries the latents
    of row g (global TopK), then rows of 0, 1, 3, 2, … entries (AuxK). Latents repeat
    across rows and once within a row; some values are zero; latents 0 and L − 1 are
    never selected. Returns (crow, col, val, W, A, shared) on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.arange(1, L - 1)
    idx = torch.stack([pool[torch.randperm(len(pool), generator=g)[:k]] for _ in range(G)])
    idx[1, 1] = idx[1, 0]                                   # a latent twice in one row
    main = idx.repeat(n, 1).reshape(-1)
    lengths = [(i * 5) % 4 for i in range(n * G)]           # 0, 1, 2, 3, 0, …
    aux = [pool[torch.randint(0, len(pool), (m,), generator=g)] for m in lengths]
    crow = torch.cat([uniform_crow(n * G, k), n * G * k + torch.tensor(lengths).cumsum(0)])
    col = torch.cat([main, *aux])
    val = torch.randn(col.numel(), generator=g, dtype=torch.float64)
    val[[2, 7, n * G * k + 1]] = 0.0
    W = torch.randn(L, D, generator=g, dtype=torch.float64)
    A = torch.randn(crow.numel() - 1, D, generator=g, dtype=torch.float64)
    crow, col = on(crow, col)
    val, W, A = on(val.to(dtype), W.to(dtype), A.to(dtype))
    return crow, col, val, W, A, (n, G)


def ranges(crow, D, seed=0):
    """Per-row column ranges [lo, hi) as AuxK rows have (some empty, some full)."""
    g = torch.Generator().manual_seed(seed)
    R = crow.numel() - 1
    lo = torch.randint(0, D, (R,), generator=g)
    hi = torch.minimum(lo + torch.randint(0, D, (R,), generator=g), torch.tensor(D))
    lo[0], hi[0] = 0, D
    return lo.to(DEVICE), hi.to(DEVICE)


def col_mask(lo, hi, D):
    c = torch.arange(D)
    return ((c >= lo.cpu()[:, None]) & (c < hi.cpu()[:, None])).double()


def oracle(fn, *args, **kw):
    """A PyTorch kernel in float64 on the CPU, on the (already rounded) inputs."""
    def conv(a):
        if not isinstance(a, torch.Tensor):
            return a
        return a.cpu().double() if a.is_floating_point() else a.cpu()

    return fn(*map(conv, args), **{k: conv(v) for k, v in kw.items()})


def close(actual, expected, dtype, msg=""):
    assert actual.dtype == dtype and actual.device.type == DEVICE, msg
    assert_close(actual.cpu().double(), expected, msg=msg, **TOL[dtype])


# ---------------------------------------------------------------------------- dispatch (everywhere)


def test_cpu_process_never_imports_triton():
    """``import sparc.model``, a CPU training step and asking about a GPU without one
    leave Triton unimported, whether or not it is installed."""
    code = textwrap.dedent("""
        import sys
        import torch
        import sparc.model
        from sparc.model import SPARC, SPARCConfig
        from sparc.model import kernels
        assert "triton" not in sys.modules, "import sparc.model"
        torch.manual_seed(0)
        for topk in ("global", "local"):
            model = SPARC({"a": 6, "b": 4}, SPARCConfig(n_latents=16, k=3, auxk=2, topk=topk), dtype=torch.float32)
            x = {"a": torch.randn(5, 6), "b": torch.randn(5, 4)}
            model(x).losses.total.backward()
        for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            assert kernels.resolve("auto", "cpu", dtype) in ("fused", "pytorch")  # auto never tries Triton on the CPU
        if not torch.cuda.is_available():
            assert kernels.resolve("auto", "cuda", torch.float32) == "pytorch"
        assert "triton" not in sys.modules, sorted(m for m in sys.modules if "triton" in m)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "SPARC_KERNELS")}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def _as_if_triton_missing(gpu: bool, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh process as if Triton were not installed, on a machine with
    or without a GPU."""
    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None
        import torch
        torch.cuda.is_available = lambda: GPU
        from sparc.errors import SparcError
        from sparc.model import kernels
    """).replace("GPU", str(gpu)) + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "SPARC_KERNELS")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_gpu_without_triton_falls_back_silently_unless_forced():
    res = _as_if_triton_missing(True, """
        assert kernels.resolve("auto", "cuda", torch.float32) == "pytorch"
        assert kernels.resolve("auto", "cuda", torch.bfloat16) == "pytorch"
        try:
            kernels.check("triton", "cuda")
        except SparcError as e:
            print(e)
    """)
    assert res.returncode == 0 and res.stderr == "", res.stderr[-2000:]
    err = res.stdout.strip()
    assert "\n" not in err and "pip install 'sparc-sae[gpu]'" in err and "triton" in err.split("(")[1]


def test_forced_triton_without_gpu_is_one_line_error():
    res = _as_if_triton_missing(False, """
        from sparc.model import SPARC, SPARCConfig
        for attempt in (lambda: kernels.check("triton", "cuda"),
                        lambda: SPARC({"a": 4}, SPARCConfig(n_latents=8, k=2)).use_kernels("triton")):
            try:
                attempt()
            except SparcError as e:
                print(e)
        assert "sparc.model.kernels.triton" not in sys.modules  # no GPU, no interpreter: not even tried
    """)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and all("no CUDA GPU" in line and "Triton GPU kernels" in line for line in lines)


@pytest.mark.skipif(not (torch.cuda.is_available() and HAS_TRITON), reason="needs a CUDA GPU and Triton")
def test_cuda_tensors_get_triton_in_auto():
    for dtype in DTYPES:
        assert kernels.resolve("auto", "cuda", dtype) == "triton"
    assert kernels.resolve("auto", "cuda", torch.float64) == "pytorch"


# ---------------------------------------------------------------------------- compiled for a GPU (no GPU needed)

_COMPILE = textwrap.dedent("""
    import importlib.util
    import itertools
    import sys
    import torch
    import triton
    if importlib.util.find_spec("triton.backends.nvidia") is None:
        print("no NVIDIA backend")
        sys.exit(0)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from sparc.model.kernels import triton_gpu as tg

    assert not tg.INTERPRETED
    TY = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}

    seen = set()

    def build(kernel, ptrs, ints, meta, dtype):
        key = (kernel.__name__, dtype, tuple(sorted((k, str(v)) for k, v in meta.items())))
        if key in seen:  # the same compiled variant
            return
        seen.add(key)
        meta = dict(meta)
        warps = meta.pop("num_warps")
        sig = {name: ("*" + (TY[dtype] if t == "T" else t)) for name, t in ptrs.items()}
        sig.update({name: "i32" for name in ints})
        sig.update({name: "constexpr" for name in meta})
        k = triton.compile(ASTSource(kernel, sig, meta), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": warps})
        assert k.asm.get("cubin"), "no cubin"

    for dtype, D, n_shared, ranged in itertools.product(TY, (7, 300, 2560), (1, 2, 3, 4), (False, True)):
        build(tg._decode_kernel, dict(crow="i64", col="i64", val="T", W="T", out="T", lo="i64", hi="i64"),
              ("n_shared", "G", "D", "stride_wl", "stride_wd", "stride_or", "stride_od"),
              tg.decode_meta(dtype, D, n_shared, ranged), dtype)
    # spmm_t (ranged or not, into a buffer or not), sddmm, spmm_t_sddmm (ranged or not)
    flags = [(True, False, r, a) for r in (False, True) for a in (False, True)] + [(False, True, False, False)]
    flags += [(True, True, r, a) for r in (False, True) for a in (False, True)]
    for dtype, D, (grad, dots, ranged, acc) in itertools.product(TY, (7, 300), flags):
        dots_ty = "fp64" if dtype == torch.float64 else "fp32"
        build(tg._latent_kernel, dict(hot="i64", start="i64", order="i64", rows="i64", val="T", A="T", W="T",
                                      out="T", dots=dots_ty, arow="i64", lo="i64", hi="i64"),
              ("D", "n_split", "stride_ar", "stride_ad", "stride_wl", "stride_wd", "stride_ol", "stride_od"),
              tg.latent_meta(dtype, D, grad=grad, dots=dots, ranged=ranged, accumulate=acc), dtype)
    print(len(seen))
""")


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
@pytest.mark.skipif(DEVICE == "cuda" or INTERPRETER, reason="the kernel tests run right here")
def test_kernels_under_the_interpreter():
    """Every kernel test of this module, in a fresh process under Triton's interpreter."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    here = os.path.dirname(os.path.abspath(__file__))
    res = subprocess.run([sys.executable, "-m", "pytest", os.path.abspath(__file__), "-p", "no:cacheprovider",
                          "-k", "not under_the_interpreter and not compile_for and not never_imports and not cuda_tensors"],
                         cwd=os.path.dirname(os.path.dirname(here)), env=env, capture_output=True, text=True,
                         timeout=1800)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    assert res.returncode == 0 and " passed" in summary and "skipped" not in summary, res.stdout[-6000:]


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_kernels_compile_for_a_gpu():
    """Every variant the wrappers can launch (dtypes, shared-row counts, column ranges,
    the latent kernel's modes) compiles to a cubin for sm_90 — Triton's compiler and
    ptxas need no GPU, so this checks here what the interpreter cannot: that the kernels
    are valid compiled Triton."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, timeout=900)
    if res.stdout.strip() == "no NVIDIA backend":
        pytest.skip("this Triton has no NVIDIA backend")
    assert res.returncode == 0, res.stderr[-3000:]
    assert int(res.stdout.split()[-1]) >= 4 * 3 * 2 + 4 * 9  # dtypes × S × ranges; dtypes × latent modes


# ---------------------------------------------------------------------------- kernels against the oracle


@pytest.mark.parametrize("D", [7, 300], ids=["D7", "D300"])  # one column block; several, the last partial
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_spmm(tg, dtype, D):
    crow, col, val, W, _, shared = mixed_case(dtype, D)
    want = oracle(P.spmm, crow, col, val, W)
    close(tg.spmm(crow, col, val, W), want, dtype, "rows one by one")
    close(tg.spmm(crow, col, val, W, shared=shared), want, dtype, "shared rows")
    # every row shared with itself alone, and the shared block alone
    close(tg.spmm(crow, col, val, W, shared=(1, crow.numel() - 1)), want, dtype, "n_shared = 1")
    lo, hi = ranges(crow, D)
    close(tg.spmm(crow, col, val, W, shared=shared, lo=lo, hi=hi), want * col_mask(lo, hi, D), dtype,
          "per-row column ranges, shared rows included")


@pytest.mark.parametrize("D", [7, 300], ids=["D7", "D300"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sddmm(tg, dtype, D):
    crow, col, _, W, A, _ = mixed_case(dtype, D)
    close(tg.sddmm(crow, col, A, W), oracle(P.sddmm, crow, col, A, W), dtype)


@pytest.mark.parametrize("D", [7, 300], ids=["D7", "D300"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_spmm_t(tg, dtype, D):
    crow, col, val, W, A, _ = mixed_case(dtype, D)
    L = W.shape[0]
    out = tg.spmm_t(crow, col, val, A, L)
    close(out, oracle(P.spmm_t, crow, col, val, A, L), dtype)
    assert torch.count_nonzero(out[[0, L - 1]]) == 0  # never selected: exactly zero


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_spmm_t_rows_ranges_into_a_buffer(tg, dtype):
    """Row r reads A[arow[r], lo[r]:hi[r]] (the encoder gradient); ``out`` is
    overwritten (never-selected rows zeroed) or, with ``accumulate``, added to (those
    rows kept)."""
    crow, col, val, W, _, (n, G) = mixed_case(dtype, 300)
    R, L = crow.numel() - 1, W.shape[0]
    g = torch.Generator().manual_seed(3)
    A = torch.randn(G, 300, generator=g).to(dtype).to(DEVICE)
    arow = torch.arange(R, device=DEVICE) % G
    lo = torch.tensor([0, 100, 250], device=DEVICE)[torch.arange(R, device=DEVICE) % 3]
    hi = torch.tensor([100, 250, 300], device=DEVICE)[torch.arange(R, device=DEVICE) % 3]
    want = oracle(P.spmm_t, crow, col, val, A, L, arow=arow, lo=lo, hi=hi)
    close(tg.spmm_t(crow, col, val, A, L, arow=arow, lo=lo, hi=hi), want, dtype, "fresh")
    out = torch.full((L, 300), 7.0, dtype=dtype, device=DEVICE)
    assert tg.spmm_t(crow, col, val, A, L, arow=arow, lo=lo, hi=hi, out=out) is out
    close(out, want, dtype, "overwritten")
    out.fill_(7.0)
    tg.spmm_t(crow, col, val, A, L, arow=arow, lo=lo, hi=hi, out=out, accumulate=True)
    close(out, want + 7.0, dtype, "accumulated")
    # ranges alone (arow default) and rows alone (all columns)
    A2 = torch.randn(R, 300, generator=g).to(dtype).to(DEVICE)
    close(tg.spmm_t(crow, col, val, A2, L, lo=lo, hi=hi), oracle(P.spmm_t, crow, col, val, A2, L, lo=lo, hi=hi),
          dtype, "lo/hi only")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_spmm_t_sddmm(tg, dtype):
    crow, col, val, W, A, _ = mixed_case(dtype, 300)
    L = W.shape[0]
    want_W, want_v = oracle(P.spmm_t, crow, col, val, A, L), oracle(P.sddmm, crow, col, A, W)
    gW, gv = tg.spmm_t_sddmm(crow, col, val, A, W)
    close(gW, want_W, dtype, "weight gradient")
    close(gv, want_v, dtype, "value gradient (zero values included)")
    out = torch.full_like(W, 7.0)
    gW2, gv2 = tg.spmm_t_sddmm(crow, col, val, A, W, out=out, accumulate=True)
    assert gW2 is out
    close(out, want_W + 7.0, dtype, "accumulated")
    close(gv2, want_v, dtype)
    lo, hi = ranges(crow, 300, seed=1)
    Am = (A.cpu().double() * col_mask(lo, hi, 300)).to(dtype).to(DEVICE)  # exact: masking by 0/1
    gW, gv = tg.spmm_t_sddmm(crow, col, val, A, W, lo=lo, hi=hi)
    close(gW, oracle(P.spmm_t, crow, col, val, Am, L), dtype, "weight gradient in the rows' columns")
    close(gv, oracle(P.sddmm, crow, col, Am, W), dtype, "value gradient in the rows' columns")


def test_strided_tables(tg):
    """A column slice of the decoder (the model decodes one stream through it) and a
    transposed-then-sliced A: the kernels follow the strides."""
    crow, col, val, W, A, shared = mixed_case(torch.float32, 20)
    Wc, Ac = W[:, 3:17], A.t().contiguous().t()[:, 3:17]
    assert not Wc.is_contiguous() and not Ac.is_contiguous()
    close(tg.spmm(crow, col, val, Wc, shared=shared), oracle(P.spmm, crow, col, val, Wc), torch.float32)
    close(tg.sddmm(crow, col, Ac, Wc), oracle(P.sddmm, crow, col, Ac, Wc), torch.float32)
    close(tg.spmm_t(crow, col, val, Ac, W.shape[0]), oracle(P.spmm_t, crow, col, val, Ac, W.shape[0]), torch.float32)


def test_zero_values_do_not_read_their_rows_and_nan_propagates(tg):
    """As the CPU kernels: a zero value contributes nothing even against an inf weight
    or input row; a NaN value reaches the output (the trainer's divergence check)."""
    crow = torch.tensor([0, 2, 4], device=DEVICE)
    col = torch.tensor([1, 2, 2, 0], device=DEVICE)
    val = torch.tensor([0.0, 1.5, 2.0, -1.0], device=DEVICE)
    W = torch.arange(12.0, device=DEVICE).view(3, 4)
    W[1] = float("inf")
    A = torch.ones(2, 4, device=DEVICE)
    assert torch.equal(tg.spmm(crow, col, val, W).cpu(), torch.stack([1.5 * W[2], 2 * W[2] - W[0]]).cpu())
    A[0] = float("inf")
    gW = tg.spmm_t(torch.tensor([0, 1, 2], device=DEVICE), torch.tensor([0, 1], device=DEVICE),
                   torch.tensor([0.0, 1.0], device=DEVICE), A, 3)
    assert torch.equal(gW.cpu(), torch.tensor([[0.0] * 4, [1.0] * 4, [0.0] * 4]))
    val[1] = float("nan")
    assert torch.isnan(tg.spmm(crow, col, val, W)[0]).all()
    assert not torch.isnan(tg.spmm(crow, col, val, W)[1]).any()


def test_empty_codes(tg):
    """No entries at all (no launch: empty tensors may have no address)."""
    crow = torch.zeros(4, dtype=torch.int64, device=DEVICE)
    col = torch.empty(0, dtype=torch.int64, device=DEVICE)
    val = torch.empty(0, device=DEVICE)
    W, A = torch.randn(5, 6, device=DEVICE), torch.randn(3, 6, device=DEVICE)
    assert torch.count_nonzero(tg.spmm(crow, col, val, W)) == 0
    assert tg.sddmm(crow, col, A, W).shape == (0,)
    assert torch.count_nonzero(tg.spmm_t(crow, col, val, A, 5)) == 0
    out = torch.ones(5, 6, device=DEVICE)
    tg.spmm_t(crow, col, val, A, 5, out=out, accumulate=True)
    assert (out == 1).all()


# ---------------------------------------------------------------------------- through the public interface


def test_public_kernels_take_the_triton_path(triton_path, monkeypatch):
    called = []
    for name in ("spmm", "sddmm", "spmm_t", "spmm_t_sddmm"):
        fn = getattr(triton_path, name)
        monkeypatch.setattr(triton_path, name, lambda *a, _fn=fn, _n=name, **kw: called.append(_n) or _fn(*a, **kw))
    crow, col, val, W, A, shared = mixed_case(torch.float32, 9)
    K().spmm(crow, col, val, W, shared=shared)
    K().sddmm(crow, col, A, W, shared=shared)
    K().spmm_t(crow, col, val, A, W.shape[0])
    K().spmm_t_sddmm(crow, col, val, A, W)
    assert called == ["spmm", "sddmm", "spmm_t", "spmm_t_sddmm"]
    K().spmm(crow, col, val.double(), W.double())  # float64 stays off the Triton path
    assert len(called) == 4


@pytest.fixture
def float64_triton(triton_path, monkeypatch):
    """gradcheck needs float64: the kernels accumulate float64 tables in float64, so let
    the dispatch send them there for these tests."""
    from sparc.model.kernels import triton as triton_path_module

    monkeypatch.setattr(triton_path_module, "DTYPES", triton_path_module.DTYPES + (torch.float64,))
    return triton_path


@pytest.mark.parametrize("ranged", [False, True], ids=["all-columns", "column-ranges"])
@pytest.mark.parametrize("wrt", ["both", "W", "val"])
def test_gradcheck_decode_selected(float64_triton, monkeypatch, wrt, ranged):
    """Each of the backward's branches (fused, weight only, values only) against finite
    differences, with shared rows, rows of different lengths and per-row column ranges."""
    crow, col, val, W, _, shared = mixed_case(torch.float64, 3, n=2, G=2, k=2, L=6)
    val = val + (val == 0)  # gradcheck's perturbations must not cross the zero-skip
    called = []
    for name in ("spmm", "sddmm", "spmm_t", "spmm_t_sddmm"):
        fn = getattr(float64_triton, name)
        monkeypatch.setattr(float64_triton, name, lambda *a, _fn=fn, _n=name, **kw: called.append(_n) or _fn(*a, **kw))
    lo, hi = ranges(crow, 3) if ranged else (None, None)
    f = lambda W, v: DecodeSelected.apply(K(), W, crow, col, v, shared, None, lo, hi)  # noqa: E731
    Wg, vg = W.clone().requires_grad_(wrt != "val"), val.clone().requires_grad_(wrt != "W")
    assert torch.autograd.gradcheck(f, (Wg, vg), eps=1e-6, atol=1e-7)
    assert "spmm" in called
    assert {"both": "spmm_t_sddmm", "W": "spmm_t", "val": "sddmm"}[wrt] in called


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_decode_selected_gradients_with_buffers(triton_path, monkeypatch, dtype):
    """DecodeSelected's gradients (with a persistent buffer that becomes W.grad, then is
    accumulated into) equal the PyTorch path's."""
    crow, col, val, W, _, shared = mixed_case(dtype, 40)
    g = torch.randn(crow.numel() - 1, 40, generator=torch.Generator().manual_seed(4)).to(dtype).to(DEVICE)

    def grads(buf):
        Wp, vp = W.clone().requires_grad_(), val.clone().requires_grad_()
        for _ in range(2):  # the second backward accumulates into W.grad
            (DecodeSelected.apply(K(), Wp, crow, col, vp, shared, buf) * g).sum().backward()
        return Wp.grad, vp.grad

    gW, gv = grads(torch.empty_like(W))
    monkeypatch.setenv("SPARC_KERNELS", "pytorch")
    rW, rv = grads(None)
    close(gW, rW.cpu().double(), dtype, "W.grad")
    close(gv, rv.cpu().double(), dtype, "val.grad")


@pytest.mark.parametrize("topk", ["global", "local"])
def test_model_step_matches_pytorch_path(triton_path, monkeypatch, topk):
    """A whole training forward/backward (encoder logits, AuxK rows, decode, cross
    reconstruction) gives the PyTorch path's loss and gradients."""
    ranged_decodes = []
    spmm = triton_path.spmm
    monkeypatch.setattr(triton_path, "spmm", lambda *a, **kw: ranged_decodes.append(kw.get("lo") is not None)
                        or spmm(*a, **kw))

    def step():
        model = make_model(n_latents=24, k=3, dtype=torch.float32, topk=topk, auxk=2, dead_after_samples=1).to(DEVICE)
        x = {s: t.to(DEVICE) for s, t in make_inputs(model, 6).items()}
        model(x)  # marks never-fired latents dead: the second step has AuxK rows
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.losses.total.backward()
        return out.losses.total.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = step()
    assert any(ranged_decodes), "the step had no AuxK rows: the case does not test them"
    monkeypatch.setenv("SPARC_KERNELS", "pytorch")
    ref_loss, ref_grads = step()
    assert_close(loss.cpu(), ref_loss.cpu(), atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys() and "W_dec" in grads and "W_enc" in grads
    for n in grads:
        assert_close(grads[n].cpu(), ref_grads[n].cpu(), atol=1e-5, rtol=1e-4, msg=n)
