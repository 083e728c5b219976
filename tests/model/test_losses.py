"""Losses, codes and reconstructions of tiny models worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sparc.model import SPARC, SPARCConfig, nmse

from ._util import assert_close

E1, E2 = [1.0, 0.0], [0.0, 1.0]
NEG_E1, NEG_E2 = [-1.0, 0.0], [0.0, -1.0]
# Encoder rows e1, e2, −e1, −e2: the logits of x = [p, q] are [p, q, −p, −q].
PLUS_MINUS = [E1, E2, NEG_E1, NEG_E2]
# The same directions with e1 and e2 swapped: logits of [p, q] are [q, p, −q, −p].
SWAPPED = [E2, E1, NEG_E2, NEG_E1]


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def hand_model(enc: dict, dec: dict, *, k: int, b_pre=None, b_lat=None, **cfg) -> SPARC:
    """A model with every weight given: ``enc``/``dec`` map stream → [L, d] rows."""
    streams = {s: len(rows[0]) for s, rows in enc.items()}
    L = len(next(iter(enc.values())))
    model = SPARC(streams, SPARCConfig(n_latents=L, k=k, **cfg), dtype=torch.float64)
    with torch.no_grad():
        for i, (s, col) in enumerate(zip(model.names, model.cols)):
            model.W_enc[:, col] = t(enc[s])
            model.W_dec[:, col] = t(dec[s])
            model.b_pre[col] = t(b_pre[s]) if b_pre else 0.0
            model.b_lat[i] = t(b_lat[s]) if b_lat else 0.0
    model.eval()
    return model


def test_nmse_two_by_two():
    recon = t([[1, 0], [0, 0]])
    target = t([[1, 1], [0, 2]])
    # row 1: ‖[0, −1]‖² / ‖[1, 1]‖² = 1/2;  row 2: ‖[0, −2]‖² / ‖[0, 2]‖² = 4/4 = 1
    # mean over the batch: (1/2 + 1) / 2 = 3/4
    assert nmse(recon, target).item() == pytest.approx(0.75, abs=1e-15)
    # a zero prediction has NMSE 1 whatever the scale of the target
    assert nmse(torch.zeros(2, 2, dtype=torch.float64), 7 * target).item() == pytest.approx(1.0)


def test_one_stream_k1_codes_and_loss():
    model = hand_model({"a": PLUS_MINUS}, {"a": PLUS_MINUS}, k=1, auxk=0)
    x = {"a": t([[3, 1], [-1, -2]])}
    out = model(x)
    # row 1: logits [3, 1, −3, −1] → latent 0, value 3 → recon 3·e1 = [3, 0]
    # row 2: logits [−1, −2, 1, 2] → latent 3, value 2 → recon 2·(−e2) = [0, −2]
    code = out.codes["a"]
    assert code.indices.tolist() == [[0], [3]]
    assert code.values.tolist() == [[3.0], [2.0]]
    assert out.recons["a"].tolist() == [[3.0, 0.0], [0.0, -2.0]]
    # NMSE: row 1 ‖[0, −1]‖²/‖[3, 1]‖² = 1/10; row 2 ‖[1, 0]‖²/‖[−1, −2]‖² = 1/5
    expected = (1 / 10 + 1 / 5) / 2
    assert out.losses.self_nmse["a"].item() == pytest.approx(expected, abs=1e-15)
    # one stream: no cross term, no dead latent → total = self NMSE
    assert out.cross_recons == {} and out.losses.cross_nmse == {}
    assert out.losses.total.item() == pytest.approx(expected, abs=1e-15)


def test_one_stream_with_biases():
    model = hand_model(
        {"a": PLUS_MINUS}, {"a": PLUS_MINUS}, k=1, auxk=0,
        b_pre={"a": [1, 0]}, b_lat={"a": [0, 2.5, 0, 0]},
    )
    x = {"a": t([[4, 1]])}
    out = model(x)
    # u = x − b_pre = [3, 1]; logits = [3, 1, −3, −1] + b_lat = [3, 3.5, −3, −1]
    # → latent 1, value 3.5; recon = 3.5·e2 + b_pre = [1, 3.5]
    assert out.codes["a"].indices.tolist() == [[1]]
    assert out.codes["a"].values.tolist() == [[3.5]]
    assert out.recons["a"].tolist() == [[1.0, 3.5]]
    # error [−3, 2.5]: 9 + 6.25 = 15.25 over ‖[4, 1]‖² = 17
    assert out.losses.total.item() == pytest.approx(15.25 / 17, abs=1e-15)


def two_streams(k, **cfg):
    # stream a: encoder = decoder = PLUS_MINUS; stream b: encoder = decoder = SWAPPED
    return hand_model({"a": PLUS_MINUS, "b": SWAPPED}, {"a": PLUS_MINUS, "b": SWAPPED}, k=k, **cfg)


X2 = {"a": t([[3, 1]]), "b": t([[1, 2]])}


def test_reconstructions_are_the_forwards_whenever_they_are_read():
    """Made on first access, they are what the forward would have made: the pre-bias
    of that forward (not one stepped since), its grad mode, and gradients that reach the
    weights."""
    model = two_streams(k=1, auxk=0, b_pre={"a": [0.5, 0.0], "b": [0.0, 0.0]})
    out = model(X2)
    out.recons["a"].sum().backward()
    # d/d b_pre of Σ(z_a·e1 + b_pre_a), z_a = e1·(x_a − b_pre_a): [1, 1] − [1, 0] in a's columns
    assert model.W_dec.grad is not None and model.b_pre.grad.tolist() == [0.0, 1.0, 0.0, 0.0]
    out = model(X2)
    with torch.no_grad():
        model.b_pre.add_(10.0)
    # x − b_pre = [2.5, 1] for a: z_a = 2.5, z_b = 2 at latent 0 (as in the test below)
    assert out.recons["a"].tolist() == [[3.0, 0.0]]            # 2.5·e1 + [0.5, 0]
    assert out.cross_recons[("a", "b")].tolist() == [[2.5, 0.0]]  # 2·e1 + [0.5, 0]
    assert out.recons["a"] is out.recons["a"]                   # made once
    assert len(out.recons) == 2 and dict(out.cross_recons).keys() == {("a", "b"), ("b", "a")}
    with torch.no_grad():
        quiet = model(X2)
    assert not quiet.recons["a"].requires_grad


def test_two_streams_global_k1():
    out = two_streams(k=1, auxk=0)(X2)
    # h_a = [3, 1, −3, −1]; h_b (swapped) = [2, 1, −2, −1]; sum = [5, 2, −5, −2] → I = {0}
    # z_a = ReLU(3) = 3 at latent 0, z_b = ReLU(2) = 2 at latent 0
    assert out.codes["a"].indices.tolist() == out.codes["b"].indices.tolist() == [[0]]
    assert out.codes["a"].values.tolist() == [[3.0]]
    assert out.codes["b"].values.tolist() == [[2.0]]
    # self:  x̂_a = 3·e1 = [3, 0];  x̂_b = 2·e2 = [0, 2]   (latent 0 of b decodes to e2)
    # cross: x̂_{a←b} = 2·e1 = [2, 0];  x̂_{b←a} = 3·e2 = [0, 3]
    assert out.recons["a"].tolist() == [[3.0, 0.0]]
    assert out.recons["b"].tolist() == [[0.0, 2.0]]
    assert out.cross_recons[("a", "b")].tolist() == [[2.0, 0.0]]
    assert out.cross_recons[("b", "a")].tolist() == [[0.0, 3.0]]
    L = out.losses
    # self a: ‖[0, −1]‖²/10 = 0.1;  self b: ‖[−1, 0]‖²/5 = 0.2
    # cross a←b: ‖[−1, −1]‖²/10 = 0.2;  cross b←a: ‖[−1, 1]‖²/5 = 0.4
    assert L.self_nmse["a"].item() == pytest.approx(0.1, abs=1e-15)
    assert L.self_nmse["b"].item() == pytest.approx(0.2, abs=1e-15)
    assert L.cross_nmse[("a", "b")].item() == pytest.approx(0.2, abs=1e-15)
    assert L.cross_nmse[("b", "a")].item() == pytest.approx(0.4, abs=1e-15)
    # total = mean(0.1, 0.2) + 1·mean(0.2, 0.4) = 0.15 + 0.3
    assert L.total.item() == pytest.approx(0.45, abs=1e-15)
    assert L.named() == pytest.approx({
        "loss": 0.45, "nmse/a": 0.1, "nmse/b": 0.2,
        "cross_nmse/a<-b": 0.2, "cross_nmse/b<-a": 0.4, "auxk/a": 0.0, "auxk/b": 0.0,
    })


def test_two_streams_global_k2():
    out = two_streams(k=2, auxk=0)(X2)
    # sum = [5, 2, −5, −2] → I = {0, 1}; z_a = [3, 1], z_b = [2, 1] at latents 0, 1
    assert sorted(out.codes["a"].indices[0].tolist()) == [0, 1]
    # x̂_a = 3·e1 + 1·e2 = [3, 1] = x_a;  x̂_b = 2·e2 + 1·e1 = [1, 2] = x_b
    assert out.losses.self_nmse["a"].item() == 0.0
    assert out.losses.self_nmse["b"].item() == 0.0
    # x̂_{a←b} = 2·e1 + 1·e2 = [2, 1]: ‖[−1, 0]‖²/10 = 0.1
    # x̂_{b←a} = 3·e2 + 1·e1 = [1, 3]: ‖[0, 1]‖²/5 = 0.2
    assert out.cross_recons[("a", "b")].tolist() == [[2.0, 1.0]]
    assert out.cross_recons[("b", "a")].tolist() == [[1.0, 3.0]]
    assert out.losses.total.item() == pytest.approx((0.1 + 0.2) / 2, abs=1e-15)


def test_two_streams_local_k1():
    # local: h_a = [3, 1, −3, −1] → latent 0 (3);  x_b = [2, 1]: h_b = [1, 2, −1, −2] → latent 1
    # (global would pick sum = [4, 3, −4, −3] → latent 0 for both)
    out = two_streams(k=1, auxk=0, topk="local")({"a": t([[3, 1]]), "b": t([[2, 1]])})
    assert out.codes["a"].indices.tolist() == [[0]]
    assert out.codes["b"].indices.tolist() == [[1]]
    # x̂_b = 2·(latent 1 of b = e1) = [2, 0]: ‖[0, −1]‖²/5 = 0.2
    # x̂_{a←b} = 2·(latent 1 of a = e2) = [0, 2]: ‖[−3, 1]‖²/10 = 1
    # x̂_{b←a} = 3·(latent 0 of b = e2) = [0, 3]: ‖[−2, 2]‖²/5 = 1.6
    assert out.losses.cross_nmse[("a", "b")].item() == pytest.approx(1.0, abs=1e-15)
    assert out.losses.cross_nmse[("b", "a")].item() == pytest.approx(1.6, abs=1e-15)
    # total = mean(0.1, 0.2) + mean(1, 1.6) = 0.15 + 1.3
    assert out.losses.total.item() == pytest.approx(1.45, abs=1e-15)


def test_cross_coef_zero_drops_cross_term_but_reports_it():
    model = two_streams(k=1, auxk=0, cross_coef=0.0)
    out = model(X2)
    # same numbers as test_two_streams_global_k1, total = mean self NMSE only
    assert out.losses.total.item() == pytest.approx(0.15, abs=1e-15)
    assert out.losses.cross_nmse[("a", "b")].item() == pytest.approx(0.2, abs=1e-15)
    assert out.losses.cross_nmse[("b", "a")].item() == pytest.approx(0.4, abs=1e-15)
    # and the cross term sends no gradient. Decoder row 0 of stream a (w = e1) is used by
    # x̂_a = 3·w only: d/dw [½·‖3w − x_a‖²/10] = ½·2·3·(3w − x_a)/10 = 0.3·[0, −1]
    # (with λ = 1, x̂_{a←b} = 2·w would add ½·2·2·[−1, −1]/10 = [−0.2, −0.2])
    out.losses.total.backward()
    assert model.W_dec.grad[0, model.cols[0]].tolist() == pytest.approx([0.0, -0.3], abs=1e-15)


def test_relu_after_global_selection_zeroes_a_stream():
    model = hand_model({"a": PLUS_MINUS, "b": PLUS_MINUS}, {"a": PLUS_MINUS, "b": PLUS_MINUS},
                       k=1, auxk=0)
    model.train()
    x = {"a": t([[3, 1]]), "b": t([[-1, 0]])}
    out = model(x)
    # h_a = [3, 1, −3, −1]; h_b = [−1, 0, 1, 0]; sum = [2, 1, −2, −1] → I = {0}
    # z_a = ReLU(3) = 3 but z_b = ReLU(−1) = 0: selected, yet inactive in stream b
    assert out.codes["a"].indices.tolist() == out.codes["b"].indices.tolist() == [[0]]
    assert out.codes["a"].values.tolist() == [[3.0]]
    assert out.codes["b"].values.tolist() == [[0.0]]
    assert out.codes["b"].l0().tolist() == [0]
    # x̂_b = b_pre = 0 → NMSE 1; x̂_{a←b} = 0 → NMSE 1
    assert out.losses.self_nmse["b"].item() == 1.0
    assert out.losses.cross_nmse[("a", "b")].item() == 1.0
    # latent 0 fired in a (counter reset) but not in b (counter += batch size 1)
    assert model.samples_since_fired.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]


# AuxK case: encoder PLUS_MINUS, decoder of latent 1 turned to (e1 + e2)/√2.
R = 1 / math.sqrt(2)
AUX_DEC = [E1, [R, R], NEG_E1, NEG_E2]


def aux_model(**cfg):
    return hand_model({"a": PLUS_MINUS}, {"a": AUX_DEC}, k=1, auxk=1, auxk_coef=1 / 32,
                      dead_after_samples=100, **cfg)


def test_auxk_by_hand():
    model = aux_model()
    model.samples_since_fired[0, [1, 3]] = 100  # latents 1 and 3 are dead
    out = model({"a": t([[3, 2]])})
    # logits [3, 2, −3, −2] → latent 0, value 3 → x̂ = [3, 0]; self NMSE = ‖[0, 2]‖²/13 = 4/13
    # AuxK: dead {1, 3}, logits 2 and −2 → latent 1, e = ReLU(2) = 2
    #   aux = 2·(1/√2, 1/√2) = (√2, √2); residual target = x − x̂ = (0, 2)
    #   ‖(√2, √2 − 2)‖² = 2 + (6 − 4√2) = 8 − 4√2;  / ‖(0, 2)‖² = 4  →  2 − √2
    aux = 2 - math.sqrt(2)
    assert out.losses.self_nmse["a"].item() == pytest.approx(4 / 13, abs=1e-15)
    assert out.losses.auxk["a"].item() == pytest.approx(aux, abs=1e-14)
    assert out.losses.total.item() == pytest.approx(4 / 13 + aux / 32, abs=1e-14)


def test_auxk_of_silent_dead_latents_is_one():
    model = aux_model()
    model.samples_since_fired[0, 3] = 100  # only latent 3 is dead; its logit is −2
    out = model({"a": t([[3, 2]])})
    # e = ReLU(−2) = 0 → aux = 0; NMSE of predicting 0 for the residual (0, 2) is 1
    assert out.losses.auxk["a"].item() == 1.0
    assert out.losses.total.item() == pytest.approx(4 / 13 + 1 / 32, abs=1e-15)


def test_auxk_exactly_zero_without_dead_latents():
    model = aux_model()
    model.samples_since_fired[0] = 99  # one sample short of dead
    out = model({"a": t([[3, 2]])})
    assert out.losses.auxk["a"].item() == 0.0
    assert out.losses.total.item() == out.losses.self_nmse["a"].item()
    # in training mode the batch itself makes them dead (99 + 1 = 100) before AuxK:
    model.train()
    out = model({"a": t([[3, 2]])})
    # latent 0 fired (counter 0); latents 1, 2, 3 reach 100 → AuxK as in test_auxk_by_hand
    assert model.samples_since_fired.tolist() == [[0, 100, 100, 100]]
    assert out.losses.auxk["a"].item() == pytest.approx(2 - math.sqrt(2), abs=1e-14)


def test_auxk_off_when_auxk_is_zero():
    model = hand_model({"a": PLUS_MINUS}, {"a": AUX_DEC}, k=1, auxk=0, dead_after_samples=1)
    model.samples_since_fired.fill_(10)  # everything dead, but auxk = 0
    out = model({"a": t([[3, 2]])})
    assert out.losses.auxk["a"].item() == 0.0
    assert out.losses.total.item() == pytest.approx(4 / 13, abs=1e-15)


def test_l0_counts_nonzero_entries_not_k():
    model = hand_model({"a": PLUS_MINUS}, {"a": PLUS_MINUS}, k=3, auxk=0)
    # logits [3, 1, −3, −1] → top 3 = latents 0, 1, 3 with values 3, 1, ReLU(−1) = 0
    code = model.encode({"a": t([[3, 1]])})["a"]
    assert sorted(code.indices[0].tolist()) == [0, 1, 3]
    assert code.l0().tolist() == [2]
    assert_close(code.dense(), t([[3, 1, 0, 0]]))
