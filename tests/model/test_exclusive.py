"""Stream-exclusive latents (docs/method.md §1.11): their rows exactly zero in every
other stream, at initialisation, after any number of steps on every kernel path and
after save/load; the forward and its gradients equal to the dense oracle with those
rows masked (tests/oracle.py); the settings' one-line errors."""

from __future__ import annotations

import pytest
import torch

from oracle import DenseSPARC
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.model.exclusive import allowed, zero_outside_
from sparc.model.selection import Context, selection_rule

from ._util import assert_close, make_inputs, make_model
from .conftest import use_path
from .test_oracle import check_grads, check_outputs, run_both, set_counters
from .test_usae import check_against_oracle

B = 8
EXCLUSIVE = ("a:3", "c:2")


def exclusive_model(**cfg):
    model = make_model(exclusive=EXCLUSIVE, **cfg)
    zero_outside_(model)  # make_model draws non-zero latent biases everywhere
    return model


def forbidden_zero(model) -> bool:
    """Whether every weight of an exclusive latent outside its stream is exactly 0."""
    ok = allowed(model)
    for s, col in enumerate(model.cols):
        out = ~ok[s]
        if (model.W_enc[out, col] != 0).any() or (model.W_dec[out, col] != 0).any() or (model.b_lat[s, out] != 0).any():
            return False
    return True


def test_the_last_latents_belong_to_their_streams_in_the_order_given():
    model = SPARC({"a": 5, "b": 4, "c": 3}, SPARCConfig(n_latents=24, k=3, exclusive=EXCLUSIVE))
    assert model.latent_owner.tolist() == [-1] * 19 + [0, 0, 0, 2, 2]
    assert forbidden_zero(model)
    ok = allowed(model)
    for s, col in enumerate(model.cols):  # every row it owns is a unit row, as a shared one
        norms = model.W_dec[ok[s], col].norm(dim=1)
        assert_close(norms, torch.ones_like(norms), atol=1e-6, rtol=1e-6)
    assert "latent_owner" not in model.state_dict()  # derived from the config, not saved


@pytest.mark.parametrize("settings, message", [
    (dict(exclusive=("a:0",)), "must number at least 1"),
    (dict(exclusive=("a:-2",)), "must number at least 1"),
    (dict(exclusive=("a",)), "takes STREAM:N"),
    (dict(exclusive=("a:x",)), "takes STREAM:N"),
    (dict(exclusive=("a:2", "a:3")), "names stream 'a' twice"),
    (dict(exclusive=("a:12", "b:12")), "gives 24 exclusive latents, but n_latents is 24"),
    (dict(exclusive=("a:2",), method="matryoshka", matryoshka=(8, 24)), "does not go with --method matryoshka"),
])
def test_bad_exclusive_settings_are_one_line_errors(settings, message):
    with pytest.raises(SparcError, match=message) as e:
        SPARCConfig(n_latents=24, k=3, **settings)
    assert "\n" not in str(e.value)


def test_an_unknown_stream_is_a_one_line_error():
    with pytest.raises(SparcError, match="names stream 'x', which is not among the streams") as e:
        SPARC({"a": 5, "b": 4}, SPARCConfig(n_latents=24, k=3, exclusive=("x:2",)))
    assert "\n" not in str(e.value)


METHODS = {"sparc": {}, "local": dict(method="local"), "batchtopk": dict(method="batchtopk"), "usae": dict(method="usae")}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dead", ["none", "some"])
@pytest.mark.parametrize("method", list(METHODS))
def test_forward_and_gradients_equal_the_masked_dense_oracle(method, dead, training, kernel_path):
    model = exclusive_model(auxk=6, dead_after_samples=1000, **METHODS[method])
    engine = use_path(model, kernel_path)
    set_counters(model, dead)
    oracle = DenseSPARC(model)
    model.train(training)
    oracle.train(training)
    x = make_inputs(model, B)
    out, ref = run_both(model, oracle, x, engine)
    names = list(model.names)
    if method == "usae" and training:
        check_against_oracle(model, oracle, out, ref, list(out.codes), names)
    else:
        check_outputs(model, out, ref, names)
        out.losses.total.backward()
        ref[3].backward()
        check_grads(model, oracle, names)
    ok = allowed(model)
    for s, col in enumerate(model.cols):  # exactly none where a latent does not belong
        assert torch.count_nonzero(model.W_dec.grad[~ok[s], col]) == 0
        assert torch.count_nonzero(model.W_enc.grad[~ok[s], col]) == 0
        assert torch.count_nonzero(model.b_lat.grad[s, ~ok[s]]) == 0
    if dead == "some":  # never dead, so never AuxK's, where it does not belong
        assert not (model.dead_mask() & ~ok).any()


def test_an_exclusive_latents_one_logit_counts_for_every_stream_in_the_global_sum():
    model = exclusive_model()
    x = make_inputs(model, B)
    logits = model.logits(x).logits                        # [S, B, L]
    owner = model.latent_owner
    for s in range(3):  # the other streams give it exactly 0
        others = (owner >= 0) & (owner != s)
        assert torch.count_nonzero(logits[s][:, others]) == 0
    # By hand: latent 3 is exclusive to stream 0. Shared latent 0 sums 0.3 + 0.3 + 0.3 =
    # 0.9; latent 3 has 0.4 from its stream alone, 1.2 counted three times: it wins; with
    # two streams given (0.8 against 0.6) too; its own stream alone compares 0.4 with 0.3.
    rule = selection_rule("global")
    logits = torch.zeros(3, 1, 5, dtype=torch.float64)
    logits[:, 0, 0] = 0.3
    logits[0, 0, 3] = 0.4
    ctx = Context(True, None, (0, 1, 2), torch.tensor([False, False, False, True, True]))
    assert rule.choose(logits, 1, ctx).idx[:, 0].tolist() == [[3]] * 3
    assert rule.choose(logits[:2], 1, ctx._replace(streams=(0, 1))).idx[:, 0].tolist() == [[3]] * 2
    logits[0, 0, 3] = 0.29
    assert rule.choose(logits, 1, ctx).idx[:, 0].tolist() == [[0]] * 3
    assert rule.choose(logits, 1, ctx._replace(exclusive=None)).idx[0, 0].tolist() == [0]


@pytest.mark.parametrize("method", ["sparc", "usae"])
def test_adam_steps_with_the_decoder_constraint_keep_the_zeros(method, kernel_path, tmp_path):
    """The training optimizer (Adam with the decoder constraint in its step, the tables
    stepped in backward where the path does) leaves the zeros exactly zero; so do save
    and load."""
    from sparc.model.engine import StepEngine
    from sparc.train.optim import SPARCAdam

    model = exclusive_model(auxk=4, dead_after_samples=2 * B, **METHODS[method])
    use_path(model, kernel_path)
    engine = StepEngine(model, gradient_buffers=True)
    opt = SPARCAdam(model, lr=1e-2, engine=engine, in_backward=True)
    model.train()
    for step in range(6):
        out = model(make_inputs(model, B, seed=step), engine=engine)
        out.losses.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert forbidden_zero(model), f"step {step}"
    assert (model.W_dec[model.latent_owner == 0, model.cols[0]] != 0).all(1).any()  # they did learn
    model.save(tmp_path / "m")
    back = SPARC.load(tmp_path / "m")
    assert back.cfg.exclusive == EXCLUSIVE and torch.equal(back.latent_owner, model.latent_owner)
    assert forbidden_zero(back)
