"""The efficient formulation (SPEC §4) equals the literal dense one (tests/oracle.py):
codes, reconstructions, every loss term, every gradient and the dead-latent counters,
one step at a time and over several optimiser steps."""

from __future__ import annotations

import pytest
import torch

from oracle import DenseSPARC

from ._util import assert_close, make_inputs, make_model
from .conftest import use_path

B = 8
THRESHOLD = 1000  # dead_after_samples of these tests
AUXK = 6


def set_counters(model, dead: str, seed: int = 3) -> None:
    """'none': every latent alive; 'some': 10 dead latents per stream (more than auxk);
    'few': 3 dead per stream (fewer than auxk). A few alive latents sit just below the
    threshold, so that one training batch makes them dead before AuxK is computed."""
    g = torch.Generator().manual_seed(seed)
    S, L = model.samples_since_fired.shape
    counters = torch.randint(0, THRESHOLD // 2, (S, L), generator=g)
    n_dead = {"none": 0, "some": 10, "few": 3}[dead]
    for s in range(S):
        perm = torch.randperm(L, generator=g)
        counters[s, perm[:n_dead]] = THRESHOLD + torch.randint(0, 5000, (n_dead,), generator=g)
        if dead != "none":
            counters[s, perm[n_dead : n_dead + 2]] = THRESHOLD - B // 2  # dead after one batch
    model.samples_since_fired.copy_(counters)


def run_both(model, oracle, x, engine=None):
    out = model(x, engine=engine)
    codes, recons, cross, total, self_nmse, cross_nmse, auxk = oracle(x)
    return out, (codes, recons, cross, total, self_nmse, cross_nmse, auxk)


def check_outputs(model, out, ref, names):
    codes, recons, cross, total, self_nmse, cross_nmse, auxk = ref
    assert list(out.codes) == names and list(out.recons) == names
    assert set(out.cross_recons) == {(t, s) for t in names for s in names if t != s}
    for s in names:
        assert_close(out.codes[s].dense(), codes[s], msg=f"code {s}")
        assert_close(out.recons[s], recons[s], msg=f"recon {s}")
        assert_close(out.losses.self_nmse[s], self_nmse[s], msg=f"self nmse {s}")
        assert_close(out.losses.auxk[s], auxk[s].to(out.losses.auxk[s].dtype), msg=f"auxk {s}")
    for ts in cross:
        assert_close(out.cross_recons[ts], cross[ts], msg=f"cross recon {ts}")
        assert_close(out.losses.cross_nmse[ts], cross_nmse[ts], msg=f"cross nmse {ts}")
    assert set(out.losses.cross_nmse) == set(cross_nmse)
    assert_close(out.losses.total, total, msg="total")


def check_grads(model, oracle, names):
    for i, (s, col) in enumerate(zip(model.names, model.cols)):
        if s in names:
            assert_close(model.W_enc.grad[:, col], oracle.enc[s].grad, msg=f"W_enc grad {s}")
            assert_close(model.W_dec.grad[:, col], oracle.dec[s].grad.t(), msg=f"W_dec grad {s}")
            assert_close(model.b_pre.grad[col], oracle.pre[s].grad, msg=f"b_pre grad {s}")
            assert_close(model.b_lat.grad[i], oracle.lat[s].grad, msg=f"b_lat grad {s}")
        else:  # a stream absent from the batch gets no gradient at all
            assert oracle.enc[s].grad is None
            for g in (model.W_enc.grad[:, col], model.W_dec.grad[:, col],
                      model.b_pre.grad[col], model.b_lat.grad[i]):
                assert torch.count_nonzero(g) == 0, f"absent stream {s} got a gradient"


SUBSETS = {"all": ["a", "b", "c"], "one": ["b"], "two_of_three": ["a", "c"]}


@pytest.mark.parametrize("subset", list(SUBSETS))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dead", ["none", "some", "few"])
@pytest.mark.parametrize("cross_coef", [1.0, 0.0])
@pytest.mark.parametrize("topk", ["global", "local"])
def test_forward_backward_equal_dense_oracle(topk, cross_coef, dead, training, subset, kernel_path):
    names = SUBSETS[subset]
    model = make_model(topk=topk, cross_coef=cross_coef, auxk=AUXK, dead_after_samples=THRESHOLD)
    engine = use_path(model, kernel_path)
    set_counters(model, dead)
    oracle = DenseSPARC(model)
    model.train(training)
    oracle.train(training)
    before = model.samples_since_fired.clone()
    x = make_inputs(model, B, names)

    out, ref = run_both(model, oracle, x, engine)
    check_outputs(model, out, ref, names)
    out.losses.total.backward()
    ref[3].backward()
    check_grads(model, oracle, names)

    # Counters: advanced in training mode only, and exactly as the oracle advances them.
    assert torch.equal(model.samples_since_fired, oracle.counters)
    absent = [i for i, s in enumerate(model.names) if s not in names]
    assert torch.equal(model.samples_since_fired[absent], before[absent])
    if not training:
        assert torch.equal(model.samples_since_fired, before)
    else:
        assert not torch.equal(model.samples_since_fired, before)

    # The cases mean what they say.
    if dead != "none" and training:
        assert all(out.losses.auxk[s] > 0 for s in names), "AuxK term not exercised"
    if dead == "none":
        assert all(out.losses.auxk[s] == 0 for s in names)


def test_global_and_local_cases_differ():
    """Guard for the parametrisation above: on these inputs global and local TopK pick
    different latents, so the two oracle cases are not the same test twice."""
    g, loc = make_model(topk="global"), make_model(topk="local")
    x = make_inputs(g, B)
    cg, cl = g.encode(x), loc.encode(x)
    assert any(not torch.equal(cg[s].indices.sort(1).values, cl[s].indices.sort(1).values) for s in g.names)


@pytest.mark.parametrize("topk", ["global", "local"])
@pytest.mark.parametrize("subset", ["all", "two_of_three"])
def test_adam_steps_with_decoder_constraint_track_oracle(topk, subset, kernel_path):
    """Five Adam steps side by side; latents go dead during the run so AuxK switches on."""
    names = SUBSETS[subset]
    model = make_model(topk=topk, auxk=4, dead_after_samples=2 * B, n_latents=24, k=2)
    engine = use_path(model, kernel_path)
    oracle = DenseSPARC(model)
    opt_m = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_o = torch.optim.Adam(oracle.parameters(), lr=1e-2)
    auxk_seen = False
    for step in range(5):
        x = make_inputs(model, B, names, seed=100 + step)
        opt_m.zero_grad(set_to_none=True)
        opt_o.zero_grad()
        out, ref = run_both(model, oracle, x, engine)
        assert_close(out.losses.total, ref[3], msg=f"step {step} loss")
        auxk_seen |= any(v > 0 for v in out.losses.auxk.values())
        out.losses.total.backward()
        ref[3].backward()
        model.remove_parallel_grad_()
        opt_m.step()
        model.normalize_decoder_()
        oracle.constrain_and_normalize_(opt_o)

        assert torch.equal(model.samples_since_fired, oracle.counters)
        for i, (s, col) in enumerate(zip(model.names, model.cols)):
            assert_close(model.W_enc[:, col], oracle.enc[s], msg=f"step {step} W_enc {s}")
            assert_close(model.W_dec[:, col], oracle.dec[s].t(), msg=f"step {step} W_dec {s}")
            assert_close(model.b_pre[col], oracle.pre[s], msg=f"step {step} b_pre {s}")
            assert_close(model.b_lat[i], oracle.lat[s], msg=f"step {step} b_lat {s}")
    assert auxk_seen, "no latent went dead: the AuxK path was not exercised"
    # The weights did move (the comparison above is not trivially true).
    assert not torch.allclose(model.W_enc, make_model(topk=topk, n_latents=24, k=2).W_enc)


def test_gradient_wrt_inputs_equals_oracle():
    model = make_model()
    oracle = DenseSPARC(model)
    x = {s: v.requires_grad_() for s, v in make_inputs(model, B).items()}
    x_ref = {s: v.detach().clone().requires_grad_() for s, v in x.items()}
    # The code of one latent, as a localisation heatmap would differentiate it.
    code = model.encode(x)["a"].dense()
    ref = oracle(x_ref)[0]["a"]
    (code * torch.arange(model.n_latents)).sum().backward()
    (ref * torch.arange(model.n_latents)).sum().backward()
    for s in model.names:
        g = torch.zeros_like(x[s]) if x[s].grad is None else x[s].grad
        r = torch.zeros_like(x_ref[s]) if x_ref[s].grad is None else x_ref[s].grad
        assert_close(g, r, msg=f"d code / d x_{s}")
