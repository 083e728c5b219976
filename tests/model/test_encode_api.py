"""The model's selection API: one set of logits gives the joint and the independent
codes, bitwise equal to encoding the streams together and each alone; ``decode_all``
equals decoding into each stream."""

import pytest
import torch

from sparc.model import SPARC, SPARCConfig

DIMS = {"a": 6, "b": 5, "c": 5}


def _model(topk):
    torch.manual_seed(0)
    model = SPARC(DIMS, SPARCConfig(n_latents=24, k=3, topk=topk)).eval()
    with torch.no_grad():
        model.b_lat.normal_()  # nonzero biases and pre-biases exercise every term
        model.b_pre.normal_(std=0.1)
    return model


@pytest.mark.parametrize("topk", ["global", "local"])
def test_select_equals_encode(topk):
    model = _model(topk)
    x = {s: torch.nn.functional.normalize(torch.randn(17, d), dim=1) for s, d in DIMS.items()}
    with torch.no_grad():
        logits = model.logits(x)
        assert logits.streams == tuple(DIMS) and logits.logits.shape == (3, 17, 24)
        joint, indep = model.select(logits), model.select(logits, "local")
        ref_joint = model.encode(x)
        for s in DIMS:
            assert torch.equal(joint[s].indices, ref_joint[s].indices)
            assert torch.equal(joint[s].values, ref_joint[s].values)
            alone = model.encode({s: x[s]})[s]
            assert torch.equal(indep[s].indices, alone.indices)
            assert torch.equal(indep[s].values, alone.values)
            full = model.decode_all(joint[s])
            assert list(full) == list(DIMS)
            for t in DIMS:
                assert torch.allclose(full[t], model.decode(joint[s], t), atol=1e-6)
    if topk == "global":
        # Joint codes share their latents; independent ones generally do not.
        assert torch.equal(joint["a"].indices, joint["b"].indices)
        assert not torch.equal(indep["a"].indices, indep["b"].indices)


def test_logits_of_a_subset_in_model_order():
    model = _model("global")
    x = {s: torch.randn(4, DIMS[s]) for s in ("c", "a")}
    logits = model.logits(x)
    assert logits.streams == ("a", "c")
    with torch.no_grad():
        by_hand = (x["a"] - model.b_pre[:6]) @ model.W_enc[:, :6].t() + model.b_lat[0]
    assert torch.allclose(logits.logits[0], by_hand, atol=1e-6)
    assert not logits.logits.requires_grad


def test_select_rejects_unknown_topk():
    from sparc.errors import SparcError

    model = _model("global")
    with pytest.raises(SparcError, match="topk"):
        model.select(model.logits({"a": torch.randn(2, 6)}), "banana")


def test_set_pre_bias_and_reinit_latents():
    from sparc.errors import SparcError

    model = _model("global")
    model.set_pre_bias_({"b": torch.arange(5.0)})
    assert model.b_pre[6:11].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(SparcError, match="shape"):
        model.set_pre_bias_({"b": torch.zeros(4)})
    with torch.no_grad():
        model.samples_since_fired[1, [2, 5]] = 10**9
    assert model.dead_mask(10**9)[1].nonzero().squeeze(1).tolist() == [2, 5]
    before = model.W_enc.detach().clone()
    touched = model.reinit_latents_("b", torch.tensor([2, 5]), std=0.5,
                                    generator=torch.Generator().manual_seed(0))
    assert model.samples_since_fired[1].sum() == 0
    assert model.b_lat[1, [2, 5]].tolist() == [0.0, 0.0]
    changed = (model.W_enc != before).nonzero()
    assert set(changed[:, 0].tolist()) == {2, 5} and set(changed[:, 1].tolist()) <= set(range(6, 11))
    assert torch.allclose(model.W_dec[[2, 5], 6:11].norm(dim=1), torch.ones(2))
    assert [p.shape for p, _ in touched] == [model.W_enc.shape, model.W_dec.shape, model.b_lat.shape]



def test_decoder_directions_are_the_decode_of_one_hot_codes():
    from sparc.model import SparseCode

    model = _model("global")
    ids = torch.arange(24)[:, None]
    for s, d in DIMS.items():
        dirs = model.decoder_directions(s)
        assert dirs.shape == (24, d) and not dirs.requires_grad
        assert torch.allclose(dirs.norm(dim=1), torch.ones(24), atol=1e-6)
        with torch.no_grad():
            one_hot = model.decode(SparseCode(ids, torch.ones(24, 1), 24), s)
            zero = model.decode(SparseCode(ids, torch.zeros(24, 1), 24), s)  # b_pre
        assert torch.allclose(dirs, one_hot - zero, atol=1e-6)
        dirs += 1  # a copy: the model is untouched
        assert torch.allclose(model.decoder_directions(s).norm(dim=1), torch.ones(24), atol=1e-6)


def test_latent_logits_are_the_logits_at_chosen_latents_with_gradient():
    model = _model("global")
    x = torch.nn.functional.normalize(torch.randn(4, 5), dim=1).requires_grad_(True)
    idx = torch.tensor([[0, 3], [1, 2], [5, 23], [7, 7]])
    got = model.latent_logits("b", x, idx)
    with torch.no_grad():
        want = model.logits({"b": x}).logits[0].gather(1, idx)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(model.latent_logits("b", x, torch.tensor([2, 4])), model.latent_logits(
        "b", x, torch.tensor([[2, 4]] * 4)))
    (g,) = torch.autograd.grad(got.sum(), x)
    assert g.abs().sum() > 0
