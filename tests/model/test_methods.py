"""The methods beside SPARC (docs/method.md §1.8–1.9): BatchTopK's selection and
threshold, Matryoshka's nested prefixes, each against the dense oracle (tests/oracle.py)
on every kernel path, and the method names of the config."""

from __future__ import annotations

import pytest
import torch

from oracle import DenseSPARC
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.model.forward import code_rows
from sparc.model.selection import Context, Selection, selection_rule, stack_selections

from ._util import assert_close, make_inputs, make_model
from .conftest import use_path
from .test_oracle import SUBSETS, check_grads, check_outputs, run_both, set_counters

B = 8


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def chosen(sel, s=0):
    """Each row's chosen latents, as sets."""
    return [set(i[k].tolist()) for i, k in zip(sel.idx[s], sel.keep[s])]


# ------------------------------------------------------------------ BatchTopK by hand

def test_batchtopk_keeps_the_top_b_k_of_the_batch_with_one_mask_for_every_stream():
    # Two samples, k = 2: the batch keeps 4 latents; sample 0's summed scores take 3.
    a = t([[[5, 4, 3, 0], [1, 0, 0, 2]]])
    b = t([[[1, 1, 1, 0], [0, 0, 0, 1]]])
    logits = torch.cat([a, b])  # sums: [6, 5, 4, 0], [1, 0, 0, 3]
    sel = selection_rule("batch-global").choose(logits, 2, Context(True, None, (0, 1)))
    assert sel.idx.shape == (2, 2, 3)
    assert chosen(sel, 0) == [{0, 1, 2}, {3}] and chosen(sel, 1) == chosen(sel, 0)
    assert torch.equal(sel.idx[0], sel.idx[1])
    for row in range(2):  # padding never repeats a chosen latent
        assert len(set(sel.idx[0, row].tolist())) == 3


def test_local_batchtopk_chooses_per_stream():
    logits = torch.cat([t([[[5, 4, 3, 0], [1, 0, 0, 2]]]), t([[[0, 0, 0, 1], [3, 2, 0, 4]]])])
    sel = selection_rule("batch-local").choose(logits, 2, Context(True, None, (0, 1)))
    assert chosen(sel, 0) == [{0, 1, 2}, {3}] and chosen(sel, 1) == [{3}, {0, 1, 3}]


def test_batchtopk_threshold_running_estimate_and_inference():
    rule = selection_rule("batch-global")
    theta = torch.tensor([-1.0], dtype=torch.float64)
    logits = torch.cat([t([[[5, 4, 3, 0], [1, 0, 0, 2]]]), t([[[1, 1, 1, 0], [0, 0, 0, 1]]])])
    ctx = Context(True, theta, (0, 1))
    sel = rule.choose(logits, 2, ctx)
    rule.observe(logits, sel, ctx, 0.5)
    assert theta.item() == 3 / 2  # the least kept sum (3), per stream summed (2 streams)
    rule.observe(logits * 2, rule.choose(logits * 2, 2, ctx), ctx, 0.5)
    assert theta.item() == 0.5 * 1.5 + 0.5 * 3.0
    # Inference: the summed logits against S'·θ = 4.5: each row on its own.
    eval_ctx = ctx._replace(training=False)
    sel = rule.choose(logits, 2, eval_ctx)
    assert chosen(sel, 0) == [{0, 1}, set()]
    alone = rule.choose(logits[:1, :1], 2, eval_ctx._replace(streams=(0,)))  # one row, one stream: θ·1
    assert chosen(alone, 0) == [{0, 1, 2}]
    assert rule.choose_alone(logits, 2, eval_ctx).idx.shape[0] == 2


def test_selections_of_different_widths_stack_with_distinct_padding():
    """A rule's per-stream choices (choose_alone's default) made one selection."""
    logits = t([[[4, 3, 2, 1]], [[1, 2, 3, 4]]])
    parts = [Selection(torch.tensor([[[0, 1, 2]]]), torch.tensor([[[True, True, True]]])),
             Selection(torch.tensor([[[3]]]), None)]
    sel = stack_selections(parts, logits)
    assert sel.idx.shape == (2, 1, 3)
    assert chosen(sel, 0) == [{0, 1, 2}] and chosen(sel, 1) == [{3}]
    assert len(set(sel.idx[1, 0].tolist())) == 3  # the padding repeats no latent
    same = stack_selections([Selection(torch.tensor([[[0]]]), None)] * 2, logits)
    assert same.keep is None and same.idx.shape == (2, 1, 1)


def test_a_row_is_encoded_alike_in_any_batch_once_trained():
    model = make_model(method="batchtopk", n_latents=24, k=3)
    model.train()
    model(make_inputs(model, 16))
    assert model.batch_threshold.item() > 0
    model.eval()
    x = make_inputs(model, 16, seed=5)
    whole = model.encode(x)
    part = model.encode({s: v[3:4] for s, v in x.items()})
    for s in model.names:  # the same latents; values to the products' round-off (batch 16 vs 1)
        assert torch.equal(whole[s].dense()[3:4] > 0, part[s].dense() > 0)
        assert_close(whole[s].dense()[3:4], part[s].dense())


def test_code_rows_groups_and_drops_padding():
    idx = torch.tensor([[[5, 0, 9], [2, 7, 1]]])
    val = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
    keep = torch.tensor([[[True, True, False], [True, True, True]]])
    crow, col, v = code_rows(idx, val, keep, torch.tensor([4]))  # groups [0, 4), [4, L)
    # rows (group 0, sample 0), (0, 1), (1, 0), (1, 1)
    assert crow.tolist() == [0, 1, 3, 4, 5]
    assert col.tolist() == [0, 2, 1, 5, 7] and v.tolist() == [2.0, 4.0, 6.0, 1.0, 5.0]
    crow, col, v = code_rows(idx, val, None, None)
    assert crow.tolist() == [0, 3, 6] and col.tolist() == idx.reshape(-1).tolist()


# ------------------------------------------------------------------ the dense oracle

METHODS = {"batchtopk": dict(method="batchtopk"), "batchtopk-local": dict(method="batchtopk-local"),
           "matryoshka": dict(method="matryoshka", matryoshka=(4, 12, 24))}


@pytest.mark.parametrize("subset", ["all", "two_of_three"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dead", ["none", "some"])
@pytest.mark.parametrize("method", list(METHODS))
def test_methods_equal_the_dense_oracle(method, dead, training, subset, kernel_path):
    names = SUBSETS[subset]
    model = make_model(auxk=6, dead_after_samples=1000, **METHODS[method])
    engine = use_path(model, kernel_path)
    set_counters(model, dead)
    oracle = DenseSPARC(model)
    model.train(training)
    oracle.train(training)
    x = make_inputs(model, B, names)
    out, ref = run_both(model, oracle, x, engine)
    check_outputs(model, out, ref, names)
    out.losses.total.backward()
    ref[3].backward()
    check_grads(model, oracle, names)
    assert torch.equal(model.samples_since_fired, oracle.counters)
    if method.startswith("batchtopk") and training:  # the rows did get different numbers of latents
        counts = {int(n) for s in names for n in (out.codes[s].values != 0).sum(1)}
        assert len(counts) > 1
    if method == "matryoshka":
        assert list(out.losses.prefix_nmse) == [4, 12, 24]
        assert out.losses.prefix_nmse[4] > out.losses.prefix_nmse[24]


@pytest.mark.parametrize("method", list(METHODS))
def test_adam_steps_of_the_methods_track_the_oracle(method, kernel_path):
    model = make_model(auxk=4, dead_after_samples=2 * B, **METHODS[method])
    engine = use_path(model, kernel_path)
    oracle = DenseSPARC(model)
    opt_m = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_o = torch.optim.Adam(oracle.parameters(), lr=1e-2)
    for step in range(4):
        x = make_inputs(model, B, seed=100 + step)
        opt_m.zero_grad(set_to_none=True)
        opt_o.zero_grad()
        out, ref = run_both(model, oracle, x, engine)
        assert_close(out.losses.total, ref[3], msg=f"step {step} loss")
        out.losses.total.backward()
        ref[3].backward()
        model.remove_parallel_grad_()
        opt_m.step()
        model.normalize_decoder_()
        oracle.constrain_and_normalize_(opt_o)
        for s, col in zip(model.names, model.cols):
            assert_close(model.W_enc[:, col], oracle.enc[s], msg=f"step {step} W_enc {s}")
            assert_close(model.W_dec[:, col], oracle.dec[s].t(), msg=f"step {step} W_dec {s}")


def test_one_prefix_is_sparc():
    """A Matryoshka of one prefix (the whole dictionary) is SPARC, to the bit."""
    m = make_model(method="matryoshka", matryoshka=(24,), auxk=0)
    s = make_model(auxk=0)
    x = make_inputs(s, B)
    assert torch.equal(m(x).losses.total, s(x).losses.total)


# ------------------------------------------------------------------ names, settings, files

def test_methods_fill_their_settings_and_read_back():
    assert SPARCConfig().method == "sparc"
    assert SPARCConfig(topk="local").method == "local"
    assert SPARCConfig(cross_coef=0.0).method == "no-cross"
    assert SPARCConfig(method="no-cross").cross_coef == 0
    assert SPARCConfig(method="batchtopk-local").topk == "batch-local"
    assert SPARCConfig(n_latents=4096, k=32, method="matryoshka").matryoshka == (256, 1024, 4096)
    cfg = SPARCConfig(n_latents=64, k=4, method="matryoshka", matryoshka=(8, 64))
    assert SPARCConfig.from_dict(cfg.to_dict()) == cfg
    # A config written before methods had names reads as the method its settings make.
    old = {k: v for k, v in SPARCConfig(topk="local").to_dict().items() if k not in ("method", "threshold_decay")}
    assert SPARCConfig.from_dict(old).method == "local"
    assert SPARCConfig().with_method("batchtopk").topk == "batch-global"


@pytest.mark.parametrize("settings, message", [
    (dict(method="topk"), "unknown method 'topk'"),
    (dict(method="sparc", topk="local"), "method 'sparc' chooses latents by topk 'global'"),
    (dict(method="sparc", cross_coef=0.0), "cross_coef 0 is the method 'no-cross'"),
    (dict(method="no-cross", cross_coef=1.0), "has no cross loss"),
    (dict(method="sparc", matryoshka=(8, 64)), "go with --method matryoshka"),
    (dict(matryoshka=(16, 8, 64)), "must grow"),
    (dict(matryoshka=(8, 32)), "must be the whole dictionary"),
    (dict(k=8, matryoshka=(4, 64)), "larger than the smallest matryoshka prefix"),
    (dict(method="batchtopk", threshold_decay=1.0), "threshold_decay"),
])
def test_bad_method_settings_are_one_line_errors(settings, message):
    with pytest.raises(SparcError, match=message) as e:
        SPARCConfig(**{"n_latents": 64, "k": 4, **settings})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("method", list(METHODS))
def test_save_and_load_keep_the_method_and_its_threshold(method, tmp_path):
    model = make_model(**METHODS[method])
    model.train()
    for seed in range(3):
        model(make_inputs(model, B, seed=seed))
    model.save(tmp_path / "m")
    back = SPARC.load(tmp_path / "m")
    assert back.cfg == model.cfg
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert hasattr(back, "batch_threshold") == method.startswith("batchtopk")
    model.eval()
    back.eval()
    x = make_inputs(model, B, seed=9)
    for s, code in model.encode(x).items():
        assert torch.equal(back.encode(x)[s].dense(), code.dense())
