"""USAE (docs/method.md §1.10): the source drawn per step (seeded, in the saved state,
the same on any machine), one source's code decoding every stream with the NMSE summed
over the targets, each stream its own TopK at inference — against the dense oracle
(tests/oracle.py) on every kernel path."""

from __future__ import annotations

import collections

import pytest
import torch

from oracle import DenseSPARC
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.model.usae import drawn, splitmix64

from ._util import assert_close, make_inputs, make_model
from .conftest import use_path
from .test_oracle import SUBSETS, set_counters

B = 8


def test_splitmix64_matches_its_published_outputs():
    """The first outputs of SplitMix64 from state 0 (Steele et al.; the Java reference):
    the draws are integer arithmetic, the same on every CPU."""
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def test_draws_are_seeded_and_about_uniform():
    counts = collections.Counter(drawn(7, c, 3) for c in range(3000))
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 900
    assert [drawn(7, c, 3) for c in range(20)] == [drawn(7, c, 3) for c in range(20)]
    assert [drawn(7, c, 3) for c in range(20)] != [drawn(8, c, 3) for c in range(20)]


def test_the_method_fills_its_settings():
    cfg = SPARCConfig(n_latents=64, k=4, method="usae")
    assert (cfg.topk, cfg.cross_coef) == ("local", 1.0)
    assert SPARCConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SparcError, match="needs cross_coef > 0"):
        SPARCConfig(n_latents=64, k=4, method="usae", cross_coef=0.0)
    with pytest.raises(SparcError, match="chooses latents by topk 'local'"):
        SPARCConfig(n_latents=64, k=4, method="usae", topk="global")


def check_against_oracle(model, oracle, out, ref, sources, targets):
    codes, recons, cross, total, self_nmse, cross_nmse, auxk = ref
    assert list(out.codes) == sources and list(out.losses.auxk) == sources
    assert set(out.losses.cross_nmse) == {(t, s) for t in targets for s in sources if t != s} == set(cross_nmse)
    for s in sources:
        assert_close(out.codes[s].dense(), codes[s], msg=f"code {s}")
        assert_close(out.recons[s], recons[s], msg=f"recon {s}")
        assert_close(out.losses.self_nmse[s], self_nmse[s], msg=f"self nmse {s}")
        assert_close(out.losses.auxk[s], auxk[s].to(out.losses.auxk[s].dtype), msg=f"auxk {s}")
    for ts in cross_nmse:
        assert_close(out.cross_recons[ts], cross[ts], msg=f"cross recon {ts}")
        assert_close(out.losses.cross_nmse[ts], cross_nmse[ts], msg=f"cross nmse {ts}")
    assert_close(out.losses.total, total, msg="total")
    out.losses.total.backward()
    total.backward()
    for i, (s, col) in enumerate(zip(model.names, model.cols)):
        pairs = [(model.W_enc.grad[:, col], oracle.enc[s].grad, "W_enc"), (model.b_lat.grad[i], oracle.lat[s].grad, "b_lat"),
                 (model.W_dec.grad[:, col], None if oracle.dec[s].grad is None else oracle.dec[s].grad.t(), "W_dec"),
                 (model.b_pre.grad[col], oracle.pre[s].grad, "b_pre")]
        for got, want, what in pairs:
            if want is None:  # not a source (encoder), not a target (decoder): no gradient
                assert torch.count_nonzero(got) == 0, f"{what} {s} got a gradient"
            else:
                assert_close(got, want, msg=f"{what} grad {s}")
    assert torch.equal(model.samples_since_fired, oracle.counters)


@pytest.mark.parametrize("subset", ["all", "two_of_three", "one"])
@pytest.mark.parametrize("dead", ["none", "some"])
def test_training_steps_equal_the_dense_oracle(dead, subset, kernel_path):
    """Several training forwards in a row: each draws its source as the oracle does, one
    stream encoded and decoding every stream given."""
    names = SUBSETS[subset]
    model = make_model(method="usae", auxk=6, dead_after_samples=1000)
    engine = use_path(model, kernel_path)
    set_counters(model, dead)
    oracle = DenseSPARC(model)
    drawn_sources = set()
    for step in range(6):
        model.zero_grad(set_to_none=False)
        oracle.zero_grad(set_to_none=True)
        x = make_inputs(model, B, names, seed=step)
        out = model(x, engine=engine)
        ref = oracle(x)
        (source,) = out.codes
        drawn_sources.add(source)
        check_against_oracle(model, oracle, out, ref, [source], names)
        assert torch.equal(model.source_draws, oracle.draws)
    assert int(model.source_draws[1]) == 6
    if len(names) > 1:
        assert len(drawn_sources) > 1


def test_evaluation_encodes_every_stream_with_its_own_topk(kernel_path):
    """In eval mode nothing is drawn: each stream its own top k (local TopK), and the loss
    is the training loss's mean over the sources."""
    model = make_model(method="usae", auxk=6, dead_after_samples=1000)
    engine = use_path(model, kernel_path)
    set_counters(model, "some")
    oracle = DenseSPARC(model)
    model.eval()
    oracle.eval()
    x = make_inputs(model, B)
    before = model.source_draws.clone()
    out, ref = model(x, engine=engine), oracle(x)
    check_against_oracle(model, oracle, out, ref, list(model.names), list(model.names))
    assert torch.equal(model.source_draws, before)
    local = make_model(topk="local", auxk=6, dead_after_samples=1000)
    local.load_state_dict({k: v for k, v in model.state_dict().items() if k != "source_draws"})
    for s, code in model.encode(x).items():
        assert torch.equal(code.dense(), local.encode(x)[s].dense())
        assert torch.equal(code.dense(), model.encode({s: x[s]})[s].dense())  # alone = joint


def test_the_seed_comes_from_the_generator_and_is_saved(tmp_path):
    a, b, c = make_model(method="usae", seed=1), make_model(method="usae", seed=1), make_model(method="usae", seed=2)
    assert torch.equal(a.source_draws, b.source_draws) and not torch.equal(a.source_draws, c.source_draws)
    assert int(a.source_draws[1]) == 0
    a.train()
    for seed in range(3):
        a(make_inputs(a, B, seed=seed))
    a.save(tmp_path / "m")
    back = SPARC.load(tmp_path / "m")
    assert back.cfg == a.cfg and back.cfg.method == "usae"
    for name, tensor in a.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert int(back.source_draws[1]) == 3
    x = make_inputs(a, B, seed=9)
    back.train()
    assert torch.equal(a(x).losses.total, back(x).losses.total)  # the same next source
