"""Steering and ablation (sparc/steer): edits applied to codes exactly as by hand, a model
set to a known dictionary steered and ablated as computed by hand, and `sparc steer`."""

import pytest
import torch

from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig, SparseCode
from sparc.steer import Edit, apply_edits, parse_edit, steer


def code(rows):
    """SparseCode of rows given as {latent: value}, width 2, 6 latents."""
    idx = [[*r.keys(), *[0] * (2 - len(r))] for r in rows]
    val = [[*r.values(), *[0.0] * (2 - len(r))] for r in rows]
    return SparseCode(torch.tensor(idx), torch.tensor(val), 6)


def as_dict(c: SparseCode):
    return [{int(i): round(float(v), 6) for i, v in zip(ii, vv) if v > 0} for ii, vv in zip(c.indices, c.values)]


def test_edits_by_hand():
    c = code([{0: 1.0, 2: 0.5}, {3: 2.0}])
    assert as_dict(apply_edits(c, [Edit("set", (4,), (0.7,))])) == [{0: 1.0, 2: 0.5, 4: 0.7}, {3: 2.0, 4: 0.7}]
    assert as_dict(apply_edits(c, [Edit("add", (0, 3), (0.5, -1.0))])) == [{0: 1.5, 2: 0.5}, {0: 0.5, 3: 1.0}]
    assert as_dict(apply_edits(c, [Edit("scale", (2, 3), (0.0,))])) == [{0: 1.0}, {}]
    assert as_dict(apply_edits(c, [Edit("zero", (0,)), Edit("add", (2,), (-5.0,))])) == [{}, {3: 2.0}]  # no negatives
    assert parse_edit("add", "3,4=0.5") == Edit("add", (3, 4), (0.5,))
    assert parse_edit("zero", "7") == Edit("zero", (7,))
    for op, text, msg in (("add", "3", "give a value after '='"), ("zero", "3=1", "zero takes no value"),
                          ("set", "x=1", "give latent ids")):
        with pytest.raises(SparcError, match=msg):
            parse_edit(op, text)
    with pytest.raises(SparcError, match="latent 9 does not exist; this model has 6 latents"):
        apply_edits(c, [Edit("zero", (9,))])


def test_a_known_dictionary_steers_and_ablates_as_computed_by_hand():
    # 4 latents; stream a (3 dims) reads and writes axis-aligned rows, stream b (2 dims) its own.
    torch.manual_seed(0)
    m = SPARC({"a": 3, "b": 2}, SPARCConfig(n_latents=4, k=1, auxk=0)).eval()
    with torch.no_grad():
        m.W_enc.zero_()
        m.W_enc[0, 0] = m.W_enc[1, 1] = m.W_enc[2, 2] = 1.0
        m.W_dec.copy_(torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0.6, 0.8], [0.6, 0.8, 0, 0.8, 0.6]]))
        m.b_pre.zero_()
        m.b_lat.zero_()
    x = torch.tensor([[0.0, 0.8, 0.6]])  # k = 1: latent 1 (0.8)
    done = steer(m, {"a": x}, [Edit("add", (2,), (0.5,))], ["a", "b"])
    assert as_dict(done.code) == [{1: 0.8}] and as_dict(done.edited) == [{1: 0.8, 2: 0.5}]
    torch.testing.assert_close(done.before["b"], torch.tensor([[0.0, 0.8]]))
    torch.testing.assert_close(done.after["b"], torch.tensor([[0.3, 1.2]]))   # + 0.5 × (0.6, 0.8)
    torch.testing.assert_close(done.after["a"], torch.tensor([[0.0, 0.8, 0.5]]))
    ablated = steer(m, {"a": x}, [Edit("zero", (1,))], ["b"])
    torch.testing.assert_close(ablated.after["b"], torch.zeros(1, 2))  # nothing left but b_pre = 0
    with pytest.raises(SparcError, match="unknown stream 'c'"):
        steer(m, {"a": x}, [], ["c"])
