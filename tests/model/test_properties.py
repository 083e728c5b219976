"""Properties of the model that hold for any shape, sparsity and input (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparc.model import SPARC, SPARCConfig, SparseCode

from ._util import assert_close, make_inputs

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def setups(draw, topk=None, min_streams=1):
    """(model, inputs): 1–3 streams of dims 1–6, 3–20 latents, any valid k, batch 1–6,
    random weights, biases and inputs (float64)."""
    n = draw(st.integers(min_streams, 3))
    dims = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    L = draw(st.integers(3, 20))
    k = draw(st.integers(1, min(L - 1, 6)))
    B = draw(st.integers(1, 6))
    topk = topk or draw(st.sampled_from(["global", "local"]))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    names = [f"s{i}" for i in range(n)]
    model = SPARC(dict(zip(names, dims)), SPARCConfig(n_latents=L, k=k, topk=topk, auxk=2),
                  dtype=torch.float64)
    with torch.no_grad():
        model.b_pre.normal_(0, 0.2)
        model.b_lat.normal_(0, 0.2)
    return model, make_inputs(model, B, seed=seed + 1)


def dense_logits(model: SPARC, x: dict) -> dict:
    """h_s = W_enc^s (x_s − b_pre^s) + b_lat^s, computed directly."""
    out = {}
    for i, (s, col) in enumerate(zip(model.names, model.cols)):
        if s in x:
            out[s] = (x[s] - model.b_pre[col]) @ model.W_enc[:, col].t() + model.b_lat[i]
    return {s: v.detach() for s, v in out.items()}


def assert_top_k(selected: torch.Tensor, scores: torch.Tensor) -> None:
    """Every selected score is at least every unselected one, row by row."""
    chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, selected, True)
    if (~chosen).any(1).all():
        lo = scores.masked_fill(~chosen, float("inf")).min(1).values
        hi = scores.masked_fill(chosen, float("-inf")).max(1).values
        assert (lo >= hi - 1e-12).all()


@SETTINGS
@given(setups(topk="global"))
def test_global_topk_shares_indices_chosen_from_summed_logits(setup):
    model, x = setup
    codes = model.encode(x)
    first = codes[model.names[0]].indices
    for s in model.names:
        assert torch.equal(codes[s].indices, first)
    h = dense_logits(model, x)
    assert_top_k(first, sum(h.values()))


@SETTINGS
@given(setups(topk="local"))
def test_local_topk_chooses_each_streams_own_top_logits(setup):
    model, x = setup
    codes, h = model.encode(x), dense_logits(model, x)
    for s in model.names:
        assert_top_k(codes[s].indices, h[s])


@SETTINGS
@given(setups())
def test_codes_are_k_sparse_nonnegative_relu_of_logits(setup):
    model, x = setup
    B, k = next(iter(x.values())).shape[0], model.cfg.k
    h = dense_logits(model, x)
    for s, code in model.encode(x).items():
        assert code.indices.shape == code.values.shape == (B, k)
        assert code.indices.dtype == torch.int64
        # k distinct latents per row, each in range.
        assert (code.indices.sort(1).values.diff(dim=1) > 0).all()
        assert ((code.indices >= 0) & (code.indices < model.n_latents)).all()
        assert (code.values >= 0).all()
        # values are the ReLU of the stream's own logits at the chosen latents
        assert_close(code.values.detach(), torch.relu(h[s].gather(1, code.indices)))
        dense = code.dense()
        assert (torch.count_nonzero(dense, dim=1) <= k).all()
        assert torch.equal(code.l0(), torch.count_nonzero(dense, dim=1))


@SETTINGS
@given(setups())
def test_sparse_code_dense_round_trip(setup):
    model, x = setup
    for code in model.encode(x).values():
        dense = code.dense()
        assert dense.shape == (code.values.shape[0], model.n_latents)
        assert torch.equal(dense.gather(1, code.indices), code.values)  # values where indexed
        assert torch.count_nonzero(dense.scatter(1, code.indices, 0.0)) == 0  # zeros elsewhere
        # back again: the nonzero entries of dense() give the same code up to zero values
        again = SparseCode(code.indices, dense.gather(1, code.indices), code.n_latents)
        assert torch.equal(again.dense(), dense)


def train_step(model: SPARC, x: dict, lr: float = 0.05) -> None:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model(x).losses.total.backward()
    model.remove_parallel_grad_()
    opt.step()
    model.normalize_decoder_()


@SETTINGS
@given(setups())
def test_decoder_rows_unit_norm_per_stream_after_training_step(setup):
    model, x = setup
    train_step(model, x)
    for col in model.cols:
        norms = model.W_dec[:, col].detach().norm(dim=1)
        assert_close(norms, torch.ones_like(norms), atol=1e-12, rtol=0)


@SETTINGS
@given(setups())
def test_radial_gradient_removed(setup):
    model, x = setup
    model(x).losses.total.backward()
    g = model.W_dec.grad.clone()
    model.remove_parallel_grad_()
    for col in model.cols:
        w, g0, g1 = model.W_dec[:, col].detach(), g[:, col], model.W_dec.grad[:, col]
        # g ← g − (w·g) w per latent row, so the step is tangent to the unit sphere
        assert_close(g1, g0 - (w * g0).sum(1, keepdim=True) * w)
        assert_close((w * g1).sum(1), torch.zeros(w.shape[0], dtype=w.dtype), atol=1e-12, rtol=0)


@SETTINGS
@given(setups(topk="global"))
def test_one_stream_alone_under_global_equals_local_encoding(setup):
    model, x = setup
    local_all = model.encode(x, topk="local")
    for s in model.names:
        alone = model.encode({s: x[s]})[s]
        explicit = model.encode({s: x[s]}, topk="local")[s]
        for other in (explicit, local_all[s]):
            assert torch.equal(alone.indices, other.indices)
            assert torch.equal(alone.values, other.values)


@SETTINGS
@given(setups(), st.data())
def test_dead_counters_count_samples_and_reset_on_firing(setup, data):
    model, x = setup
    present = data.draw(st.lists(st.sampled_from(model.names), min_size=1, unique=True))
    x = {s: x[s] for s in present}
    B = next(iter(x.values())).shape[0]
    model.samples_since_fired.random_(0, 10_000)
    before = model.samples_since_fired.clone()
    model.train()
    out = model(x)
    for i, s in enumerate(model.names):
        if s not in x:
            assert torch.equal(model.samples_since_fired[i], before[i])
            continue
        code = out.codes[s]
        fired = torch.zeros(model.n_latents, dtype=torch.bool)
        fired[code.indices[code.values > model.cfg.fire_threshold]] = True
        expected = torch.where(fired, 0, before[i] + B)
        assert torch.equal(model.samples_since_fired[i], expected)


@SETTINGS
@given(setups())
def test_counters_unchanged_in_eval_mode_and_by_encode(setup):
    model, x = setup
    model.samples_since_fired.random_(0, 10_000)
    before = model.samples_since_fired.clone()
    model.eval()
    model(x)
    assert torch.equal(model.samples_since_fired, before)
    model.train()
    model.encode(x)  # encoding is a pure function, also in training mode
    assert torch.equal(model.samples_since_fired, before)


@SETTINGS
@given(setups())
def test_decode_equals_forward_reconstructions(setup):
    """The public decode() of any code agrees with forward's self and cross reconstructions."""
    model, x = setup
    model.eval()
    out = model(x)
    for t in model.names:
        for s in model.names:
            r = model.decode(out.codes[s], t)
            expected = out.recons[t] if s == t else out.cross_recons[(t, s)]
            assert_close(r, expected)
