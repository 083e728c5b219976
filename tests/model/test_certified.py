"""The certified bf16 selection (docs/method.md §4.3) chooses what float32 chooses:
indices bitwise, values to round-off — on random models, with candidates too few to
certify (fallback rows), and on latents tied closer than bfloat16 can tell apart."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparc.model import SPARC, SPARCConfig, certified, kernels
from sparc.model.engine import StepEngine

from .conftest import needs_numba, use_path

DIMS = {"a": 48, "b": 32, "c": 40}


def K():
    """The kernels of the path under test (the kernel_path fixture sets the default)."""
    return kernels.kernels_for("cpu", torch.float32)


def certifying(m, extra: int | None = None) -> StepEngine:
    """A training engine of ``m`` with the certified selection on (``extra`` candidates)."""
    engine = StepEngine(m, bf16_select="on", gradient_buffers=False)
    if extra is not None:
        engine.candidates.m = extra
    return engine


def model_and_batch(L=512, k=8, B=64, seed=0, **cfg):
    torch.manual_seed(seed)
    m = SPARC(DIMS, SPARCConfig(n_latents=L, k=k, **cfg))
    with torch.no_grad():
        m.b_pre.normal_(0, 0.01)
        m.b_lat.normal_(0, 0.05)
    g = torch.Generator().manual_seed(seed + 1)
    x = {s: F.normalize(torch.randn(B, d, generator=g), dim=1) for s, d in DIMS.items()}
    return m, x


def both_ways(m, x, engine=None):
    """(forward with float32 selection, forward with the certified selection of
    ``engine``, default a fresh one)."""
    ref = m(x, engine=StepEngine(m, bf16_select="off"))
    got = m(x, engine=engine or certifying(m))
    return ref, got


def assert_same_selection(ref, got):
    for s in DIMS:
        assert torch.equal(ref.codes[s].indices, got.codes[s].indices), f"indices of {s} differ"
        torch.testing.assert_close(got.codes[s].values, ref.codes[s].values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.losses.total, ref.losses.total, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_models_choose_what_float32_chooses(seed, kernel_path):
    m, x = model_and_batch(seed=seed)
    m.eval()
    engine = certifying(m)
    ref, got = both_ways(m, x, engine)
    assert_same_selection(ref, got)
    assert engine.certified_stats[1] == 64


def test_too_few_candidates_fall_back_to_float32_and_stay_exact():
    m, x = model_and_batch(seed=3)
    m.eval()
    engine = certifying(m, extra=1)  # nearly every row's certificate fails
    ref, got = both_ways(m, x, engine)
    assert_same_selection(ref, got)
    certified_rows, rows = engine.certified_stats
    assert rows == 64 and certified_rows < rows, "no row fell back: the fallback path was not exercised"
    assert engine.candidates.m > 1, "the candidates were not widened after many fallbacks"


def test_a_rows_values_do_not_depend_on_falling_back(kernel_path):
    """Fallback rows take their values from the certified rows' dots: the same bits whether
    a row fell back or not, so a resumed run (m starts afresh) repeats the uninterrupted one."""
    m, x = model_and_batch(seed=3)
    m.eval()
    use_path(m, kernel_path)
    engine = certifying(m, extra=m.n_latents)  # every latent a candidate: every row certified
    wide = m(x, engine=engine)
    assert engine.certified_stats == (64, 64)
    engine.candidates.m = 0  # no extra candidates in either round: nearly every row falls back
    narrow = m(x, engine=engine)
    assert engine.certified_stats[0] < 128, "no row fell back: the fallback path was not exercised"
    for s in DIMS:
        assert torch.equal(wide.codes[s].indices, narrow.codes[s].indices)
        assert torch.equal(wide.codes[s].values, narrow.codes[s].values)


def test_every_row_certified_with_enough_candidates():
    m, x = model_and_batch(seed=4)
    m.eval()
    engine = certifying(m, extra=200)
    ref, got = both_ways(m, x, engine)
    assert_same_selection(ref, got)
    assert engine.certified_stats == (64, 64)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("b_std", [0.0, 0.3])
def test_few_candidates_and_large_biases_stay_exact(seed, b_std):
    """With few extra candidates most rows are certified by a narrow margin, some not;
    with large latent biases the bf16 output's rounding is bounded through the least
    candidate and the biases rather than the row's largest output. Either way the
    selection is float32's."""
    m, x = model_and_batch(seed=10 + seed, L=384, k=8, B=96)
    with torch.no_grad():
        m.b_lat.normal_(0, b_std)
    m.eval()
    engine = certifying(m, extra=6)
    ref, got = both_ways(m, x, engine)
    assert_same_selection(ref, got)
    assert engine.certified_stats[0] > 0, "no row certified: the bound was not exercised"


@pytest.mark.parametrize("gap", [3e-4, 3e-3])
def test_near_ties_below_bf16_resolution(gap):
    """Latents in pairs whose encoder rows differ by a factor 1 + ``gap`` (bfloat16 keeps 8
    significant bits, ≈ 4e-3): bf16 cannot order them, the certificate must. The twins'
    logits differ by ``gap`` times the logit (≥ 1e-5 here), far above float32 round-off."""
    m, x = model_and_batch(seed=5, L=256, k=16)
    with torch.no_grad():
        W = m.W_enc
        half = W.shape[0] // 2
        W[half:] = W[:half] * (1 + gap)
        m.b_lat[:, half:] = m.b_lat[:, :half]
    m.eval()
    ref, got = both_ways(m, x)
    assert_same_selection(ref, got)
    # The case is what it says: some chosen latent's twin was a close runner-up.
    chosen = ref.codes["a"].indices
    twins = torch.where(chosen < half, chosen + half, chosen - half)
    assert (chosen.unsqueeze(2) == twins.unsqueeze(1)).any(), "no twin pair straddles the boundary"


def test_training_step_gradients_and_counters_match(kernel_path):
    """A training forward/backward with AuxK on: same losses, gradients and counters."""
    grads = []
    counters = []
    for mode in ("off", "on"):
        m, x = model_and_batch(seed=6, auxk=8, dead_after_samples=10)
        engine = use_path(m, kernel_path) or StepEngine(m, gradient_buffers=False)
        engine.bf16_select = mode
        m.samples_since_fired[:, :40] = 100  # 40 dead latents per stream: AuxK runs
        m.train()
        out = m(x, engine=engine)
        assert all(v > 0 for v in out.losses.auxk.values())
        out.losses.total.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
        counters.append(m.samples_since_fired.clone())
    assert torch.equal(counters[0], counters[1])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-7, msg=n)


def test_shadow_is_round_to_nearest_with_true_norms():
    m, _ = model_and_batch(seed=7)
    bounds = m.block_bounds
    sh = certified.shadow_of(m.W_enc, bounds, None, K())
    assert torch.equal(sh.W16, m.W_enc.detach().bfloat16())
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        W = m.W_enc.detach()[:, a:b].double()
        wn, dwn = W.norm(dim=1), (W - sh.W16[:, a:b].double()).norm(dim=1)
        # Norms are upper bounds (rounded up), and tight.
        assert (sh.wn[i] >= wn).all() and (sh.wn[i] <= wn * 1.002 + 1e-12).all()
        assert (sh.dwn[i] >= dwn).all() and (sh.dwn[i] <= dwn * 1.002 + 1e-12).all()
    # The cache follows in-place updates.
    assert certified.shadow_of(m.W_enc, bounds, sh, K()) is sh
    with torch.no_grad():
        m.W_enc.mul_(2)
    assert certified.shadow_of(m.W_enc, bounds, sh, K()) is not sh


def test_not_used_where_it_cannot_serve():
    m, x = model_and_batch(seed=8)
    engine = certifying(m)
    m.eval()
    m({s: x[s] for s in ("a", "c")}, engine=engine)  # a subset of streams: float32 selection
    m(x)  # no engine: float32 selection
    assert engine.certified_stats == (0, 0)
    m(x, engine=engine)
    assert engine.certified_stats == (64, 64)
    m64 = SPARC(DIMS, SPARCConfig(n_latents=64, k=4), dtype=torch.float64)
    assert not certifying(m64).certifies
    assert not StepEngine(m, bf16_select="off").certifies
    with pytest.raises(Exception, match="must be one of"):
        StepEngine(m, bf16_select="fast")


@pytest.mark.parametrize("L,D", [(50, 12), (5, 43)])  # few or many entries per latent
def test_stream_dots_equal_gathered_products(kernel_path, L, D):
    g = torch.Generator().manual_seed(9)
    W = torch.randn(L, D, generator=g)
    U = torch.randn(6, D, generator=g)
    idx = torch.randint(0, L, (6, 7), generator=g)
    bounds = [0, 5, 9, D]
    bias = torch.randn(len(bounds) - 1, L, generator=g)
    got, got_b = K().stream_dots(idx, U, W, bounds), K().stream_dots(idx, U, W, bounds, bias)
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        want = (W[idx][..., a:b] * U[:, None, a:b]).sum(-1)
        torch.testing.assert_close(got[s], want)
        torch.testing.assert_close(got_b[s], want + bias[s, idx])


def lane_order_dot(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``w · x`` over the last axis in the fixed order of sparc.model.kernels.lane_dot,
    with PyTorch's elementwise float ops (each exactly rounded): element c in lane
    c mod 16, each lane summed in order of c from +0, then the lanes by halves."""
    pad = (-w.shape[-1]) % 16
    wq = F.pad(w, (0, pad)).unflatten(-1, (-1, 16))
    xq = F.pad(x, (0, pad)).unflatten(-1, (-1, 16))
    acc = torch.zeros(wq.shape[:-2] + (16,), dtype=w.dtype)
    for q in range(wq.shape[-2]):
        acc = acc + wq[..., q, :] * xq[..., q, :]
    while acc.shape[-1] > 1:
        acc = acc[..., : acc.shape[-1] // 2] + acc[..., acc.shape[-1] // 2 :]
    return acc[..., 0]


@needs_numba
@settings(max_examples=40, deadline=None)
@given(dims=st.lists(st.integers(1, 70), min_size=1, max_size=3), L=st.integers(1, 40), B=st.integers(1, 9),
       n=st.integers(1, 12), seed=st.integers(0, 2**16), double=st.booleans())
def test_fused_stream_dots_sum_in_one_fixed_order(dims, L, B, n, seed, double):
    """Bit for bit the lane order of the PyTorch reference, whatever the block widths
    (whole 16-lane chunks or not) and however many entries a latent has (four at a time
    or alone): a candidate's logit does not depend on the other candidates, nor on the
    instruction set (CI reruns this with it capped to AVX2)."""
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    bounds = [0, *torch.tensor(dims).cumsum(0).tolist()]
    W = torch.randn(L, bounds[-1], generator=g, dtype=dtype)
    U = torch.randn(B, bounds[-1], generator=g, dtype=dtype)
    bias = torch.randn(len(dims), L, generator=g, dtype=dtype)
    idx = torch.randint(0, L, (B, n), generator=g)
    fused = kernels.kernels_for("cpu", dtype, "fused")
    got = fused.stream_dots(idx, U, W, bounds, bias)
    alone = torch.stack([fused.stream_dots(idx[b : b + 1, j : j + 1], U[b : b + 1], W, bounds, bias)[:, 0, 0]
                         for b in range(B) for j in range(n)], 1).view(len(dims), B, n)
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        want = lane_order_dot(W[idx][..., a:b], U[:, None, a:b].expand(B, n, b - a)) + bias[s, idx]
        assert torch.equal(got[s], want), f"stream {s} of widths {dims}"
    assert torch.equal(got, alone), "an entry's value depends on the other entries"


def _by_hand_candidates(Z16, bias, n):
    """Sorted z of the n largest, their least, max |out|: from a full sort."""
    out = Z16.float()
    z = (out + bias).sort(dim=1, descending=True).values[:, :n]
    return z.sort(dim=1).values, z[:, -1], out.abs().amax(1)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 5), L=st.integers(1, 300), frac=st.floats(0, 1), levels=st.sampled_from([3, 50, 0]),
       seed=st.integers(0, 2**16), signed_zero=st.booleans())
def test_top_candidates_are_the_largest(B, L, frac, levels, seed, signed_zero):
    """Both paths pick n latents whose z are the n largest (ties on the boundary in any
    order), with the exact least and max |out|. Few distinct levels make many ties;
    −0.0 and +0.0 are equal; values span several binary exponents."""
    n = max(1, round(frac * L))
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(B, L, generator=g) * 2.0 ** torch.randint(-20, 20, (B, L), generator=g)
    if levels:
        raw = torch.randint(-levels, levels + 1, (B, L), generator=g).float() / 8
    if signed_zero:
        raw[raw == 0] = -0.0
    Z16 = raw.bfloat16()
    bias = torch.where(torch.rand(L, generator=g) < 0.5, 0.0, torch.randn(L, generator=g) * 0.01)
    want_z, want_least, want_max = _by_hand_candidates(Z16, bias, n)
    for path in ("pytorch", "fused"):
        if kernels.resolve(path, "cpu", torch.float32) != path:
            continue
        cand, least, amax = kernels.implementation(path).top_candidates(Z16, bias, n)
        assert cand.shape == (B, n) and all(len(set(r.tolist())) == n for r in cand)
        z = (Z16.float() + bias).gather(1, cand)
        assert torch.equal(z.sort(dim=1).values, want_z), path
        assert torch.equal(least, want_least) and torch.equal(amax, want_max), path


def test_top_candidates_carry_nan(kernel_path):
    Z16 = torch.tensor([[1.0, float("nan"), -3.0, 2.0]]).bfloat16()
    _, _, amax = K().top_candidates(Z16, torch.zeros(4), 2)
    assert amax.isnan().all()


def _one_candidate(u, W, b=None):
    """global_topk with k = 1 and no extra candidate: one stream, the given rows."""
    W, u = W.float(), u.float()[None]
    b_lat = torch.zeros(1, W.shape[0]) if b is None else b[None].float()
    bounds = [0, W.shape[1]]
    return certified.global_topk(u, W, b_lat, bounds, 1, 0, certified.shadow_of(W, bounds, None, K()), K())


def test_certificate_holds_when_rounding_errors_align_with_the_input(kernel_path):
    """Cauchy–Schwarz is tight when W's rounding error is parallel to u. Both rows round
    to the same bf16 row, so both bf16 logits are 0 (a tie; latent 0 the candidate), yet
    the exact logits are ‖u‖‖ΔW_l‖ with latent 1's twice latent 0's. Only the full error
    term keeps the row from being certified for latent 0 (half of it would not)."""
    D = 64
    sign = torch.ones(D)
    sign[D // 2:] = -1
    u = 0.125 * sign
    delta = 0.9 * 2.0**-9  # below half a bf16 ulp of 0.75: rounds back to 0.75
    W = torch.stack([0.75 + 0.5 * delta * sign, 0.75 + delta * sign])
    assert torch.equal(W.bfloat16()[0], W.bfloat16()[1]) and float(u.bfloat16() @ W.bfloat16()[0]) == 0
    sel = _one_candidate(u, W)
    assert sel.idx.tolist() == [[1]] and sel.n_fallback == 1


def test_certificate_holds_when_the_product_rounds_to_a_tie(kernel_path):
    """Exact bf16 inputs; the float32 outputs 0.75 + 2⁻⁹ − 2⁻¹⁷ (latent 0) and 0.75 + 2⁻⁹
    (latent 1, a midpoint, to even) both round to 0.75 in bf16: a tie, latent 0 the
    candidate, whose exact logit is above its bf16 one by nearly as much as latent 1's.
    Only the output-rounding term keeps the row from being certified for latent 0
    (two thirds of it would not)."""
    u = torch.tensor([1.0, 2.0**-8])
    W = torch.tensor([[0.75, 0.5 - 2.0**-9], [0.75, 0.5]])
    assert torch.equal(u.bfloat16().float(), u) and torch.equal(W.bfloat16().float(), W)
    assert (u.bfloat16() @ W.bfloat16().t()).tolist() == [0.75, 0.75]
    sel = _one_candidate(u, W)
    assert sel.idx.tolist() == [[1]] and sel.n_fallback == 1


def test_extra_candidates_double_on_retries_or_fallbacks_and_halve_when_few_come():
    c = certified.Candidates(64, 500, floor=16, patience=3)
    c.update(1, 1, 256)  # one hopeless row in 256: it takes the float32 path, m stays
    assert c.m == 64 and c.clean == 1
    c.update(40, 0, 256)  # 1 row in 6.4 retried: not worth widening, nor a clean batch
    assert c.m == 64 and c.clean == 1
    c.update(60, 0, 256)  # more than 1 in 5 retried: widen
    assert c.m == 128
    c.update(5, 5, 256)  # more than 1 in 64 fell back to float32: widen
    assert c.m == 256
    for _ in range(2):
        c.update(12, 0, 256)  # at most 1 in 20 retried: clean
    assert c.m == 256
    c.update(0, 0, 256)
    assert c.m == 128  # after three clean batches
    for _ in range(20):
        c.update(0, 0, 256)
    assert c.m == 16  # not below the floor
    for _ in range(10):
        c.update(256, 0, 256)
    assert c.m == 500  # nor above the limit


def test_rows_the_first_round_misses_are_certified_by_the_second(kernel_path):
    """With few extra candidates some rows fail the first certificate; the second round
    (4m extra) certifies them without the float32 pass, and the selection is float32's."""
    m, x = model_and_batch(seed=5)
    m.eval()
    use_path(m, kernel_path)
    u = (torch.cat([x[s] for s in DIMS], 1) - m.b_pre).detach().contiguous()
    bounds = m.block_bounds
    shadow = certified.shadow_of(m.W_enc, bounds, None, K())
    found = False
    for extra in (1, 2, 3, 4, 6, 8):
        sel = certified.global_topk(u, m.W_enc.detach(), m.b_lat.detach(), bounds, m.cfg.k, extra, shadow, K())
        if sel.n_retried > 0 and sel.n_fallback == 0:
            found = True
            break
    assert found, "no m left rows to the second round alone"
    ref = m(x)
    for j, s in enumerate(DIMS):
        assert torch.equal(ref.codes[s].indices.sort(1).values, sel.idx.sort(1).values)
        torch.testing.assert_close(torch.relu(sel.pre[j]), ref.codes[s].values, rtol=1e-5, atol=1e-6)


def test_a_row_no_candidate_set_certifies_does_not_widen_for_good():
    """A row equal to the pre-bias (every logit its latent's bias, all 0 here: a tie of
    all latents) is certified by no m short of all latents: it takes the float32 path
    and the candidates stay narrow."""
    m, x = model_and_batch(seed=6, L=384, k=8, B=64)
    m.eval()
    x = {s: v.clone() for s, v in x.items()}
    with torch.no_grad():
        m.b_lat.zero_()
        for s, v in x.items():
            v[0] = m.b_pre[m.cols[m.stream_index(s)]]
    engine = certifying(m)
    start = engine.candidates.m
    ref, got = both_ways(m, x, engine)
    for _ in range(6):
        got = m(x, engine=engine)
    assert_same_selection(ref, got)
    assert engine.candidates.m == start


def test_certificate_holds_when_the_bias_bound_decides(kernel_path):
    """Latent 1's output 1.75 + 2⁻⁸ − 2⁻¹⁶ rounds down to 1.75 in bf16 and its bias −1
    brings it to latent 0's 0.75 (a tie; latent 0, whose exact logit is 0.75 + 2⁻⁹ − 2⁻¹⁷,
    the candidate). Latent 2's output −8 makes max|out| loose, so the bound through the
    least candidate and the biases (2⁻⁸·(0.75 + 1)) is the one that keeps the row from
    being certified for latent 0 (a fifth of it would not)."""
    u = torch.tensor([1.0, 2.0**-8])
    W = torch.tensor([[0.75, 0.5 - 2.0**-9], [1.75, 1 - 2.0**-8], [-8.0, 0.0]])
    b = torch.tensor([0.0, -1.0, 0.0])
    assert torch.equal(W.bfloat16().float(), W)
    assert (u.bfloat16() @ W.bfloat16().t()).tolist() == [0.75, 1.75, -8.0]
    sel = _one_candidate(u, W, b)
    assert sel.idx.tolist() == [[1]] and sel.n_fallback == 1  # not certified
