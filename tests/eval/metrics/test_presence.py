"""Stream presence of the latents (docs/method.md §5.9): a dictionary set by hand whose
latents can fire only in the streams it allows is classified exactly; shares are
proportions; eval.json keeps it all."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparc.data import FeatureStore
from sparc.data.rows import RowMeta
from sparc.data.writer import StoreWriter
from sparc.errors import SparcError
from sparc.eval import EvalReport, EvalSettings, evaluate, render_eval, write_eval
from sparc.eval.metrics.dead_latents import FiringCounter
from sparc.eval.metrics.presence import latent_presence
from sparc.eval.output.compare import compare, render_comparison
from sparc.eval.output.markdown import render_summary
from sparc.model import SPARC, SPARCConfig, SparseCode

FAST = dict(split="all", progress=False, probes=False, retrieval_queries=10, null_shuffles=0)
N_P, N_Q = 95, 5
"""Rows of two kinds: P (x_a = x_b = e0) and Q (x_a = e0, x_b = e1)."""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("presence") / "store"
    e0, e1 = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    a = np.tile(e0, (N_P + N_Q, 1))
    b = np.concatenate([np.tile(e0, (N_P, 1)), np.tile(e1, (N_Q, 1))])
    meta = [RowMeta(row_id=f"r{i}", group_id=f"g{i}", labels=("x",)) for i in range(N_P + N_Q)]
    with StoreWriter(path, {"a": 2, "b": 2}) as w:
        w.append({"a": a, "b": b}, meta)
    return FeatureStore.open(path)


def hand_model() -> SPARC:
    """k = 3 of 6 latents; logits = W_enc x + b_lat with b_pre = 0.

    Stream a (every row): l0 2, l3 1.5, l2 1 (the bias) — the rest −5.
    Stream b: l2 1 (the bias) on every row; l1 2 on P rows (0 on Q rows, so it does not
    fire there); l3 2 on Q rows (−1 on P rows) — the rest −5.

    So l0 fires only in a, l1 only in b, l2 in both on every row, l3 in a on every row
    and in b on the 5 Q rows (firing share of a: 100/105 = 0.952; activation share:
    150/160 = 0.9375), l4 and l5 never."""
    model = SPARC({"a": 2, "b": 2}, SPARCConfig(n_latents=6, k=3, topk="global")).eval()
    with torch.no_grad():
        model.W_enc.zero_()
        model.b_pre.zero_()
        model.b_lat.fill_(-5.0)
        a, b = model.cols
        model.W_enc[0, a] = torch.tensor([2.0, 0.0])
        model.b_lat[0, 0] = 0.0
        model.W_enc[1, b] = torch.tensor([2.0, 0.0])
        model.b_lat[1, 1] = 0.0
        model.b_lat[:, 2] = 1.0
        model.W_enc[3, a] = torch.tensor([1.5, 0.0])
        model.b_lat[0, 3] = 0.0
        model.W_enc[3, b] = torch.tensor([0.0, 3.0])
        model.b_lat[1, 3] = -1.0
    return model


@pytest.fixture(scope="module")
def report(store):
    return evaluate(hand_model(), store, EvalSettings(**FAST), run="hand")


def test_a_dictionary_set_by_hand_is_classified_exactly(report):
    p = report.presence
    assert p.fires == {"a": [100, 0, 100, 100, 0, 0], "b": [0, 95, 100, 5, 0, 0]}
    assert p.activation == {"a": [200.0, 0.0, 100.0, 150.0, 0.0, 0.0], "b": [0.0, 190.0, 100.0, 10.0, 0.0, 0.0]}
    assert p.classes == ["only", "only", "shared", "mostly", "dead", "dead"]
    assert p.main_stream == ["a", "b", "a", "a", "", ""]
    assert (p.shared, p.mostly, p.only, p.dead) == (1, {"a": 1, "b": 0}, {"a": 1, "b": 1}, 2)
    share = p.firing_share()
    assert share["a"][3] == pytest.approx(100 / 105) and share["b"][2] == 0.5 and share["a"][1] == 0.0
    assert p.activation_share()["a"][3] == pytest.approx(150 / 160)
    assert math.isnan(share["a"][4]) and math.isnan(share["b"][5])


@pytest.mark.parametrize(("options", "l3"), [
    (dict(presence_mostly=0.96), "shared"),                              # 0.952 < 0.96
    (dict(presence_mostly=0.9, presence_only=0.95), "only"),             # 0.952 ≥ 0.95
    (dict(presence_basis="activation", presence_mostly=0.94), "shared"),  # 0.9375 < 0.94
    (dict(presence_basis="activation", presence_mostly=0.93), "mostly"),
])
def test_the_thresholds_and_the_basis_move_the_boundary(store, options, l3):
    p = evaluate(hand_model(), store, EvalSettings(**FAST, **options)).presence
    assert p.classes == ["only", "only", "shared", l3, "dead", "dead"]
    assert p.basis == options.get("presence_basis", "firing")


def test_eval_json_round_trip_markdown_and_compare(report, tmp_path):
    write_eval(report, tmp_path / "ev", plots=False)
    back = EvalReport.load(tmp_path / "ev")
    assert back.presence == report.presence
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert "## Latents by stream presence" in md
    assert "| one stream only | 2 | 1 | 1 |" in md and "| mostly one stream | 1 | 1 | 0 |" in md
    assert "shared 1, mostly one stream 1 (a 1, b 0), one stream only 2 (a 1, b 1), dead 2" in render_summary(report)
    row = compare([tmp_path / "ev"]).rows[0]
    assert (row.presence_shared, row.presence_mostly, row.presence_only) == (1, 1, 2)
    assert "| 1 / 1 / 2 |" in render_comparison(compare([tmp_path / "ev"]))
    # An eval.json of an earlier sparc (no presence) still loads, and says so.
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    del data["presence"]
    old = EvalReport.from_json(data)
    assert old.presence is None and "Not measured" in render_eval(old)
    assert compare([tmp_path / "ev"]).rows[0].presence_shared == 1


def test_presence_thresholds_are_checked():
    for bad in (dict(presence_mostly=0.5), dict(presence_mostly=0.95, presence_only=0.9),
                dict(presence_only=1.5), dict(presence_mostly=float("nan")), dict(presence_basis="rows")):
        with pytest.raises(SparcError, match="presence"):
            EvalSettings(**bad)


def test_firing_counter_sums_activations_of_firing_entries():
    fc = FiringCounter(["a", "b"], 3)
    code = SparseCode(torch.tensor([[0, 1], [2, 1]]), torch.tensor([[0.5, 0.0], [1.25, 2.0]]), 3)
    fc.update({"a": code, "b": code})
    fc.update({"a": code, "b": SparseCode(code.indices, torch.zeros(2, 2), 3)})
    assert fc.counts.tolist() == [[2, 2, 2], [1, 1, 1]]
    assert fc.activation.tolist() == [[1.0, 4.0, 2.5], [0.5, 2.0, 1.25]]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.integers(0, 1000)),
       st.floats(0.51, 1.0), st.floats(0.0, 1.0), st.sampled_from(["firing", "activation"]),
       st.floats(1e-3, 1e3))
def test_shares_sum_to_one_over_streams_for_a_latent_that_fires(counts, mostly, frac, basis, scale):
    only = mostly + frac * (1.0 - mostly)
    activation = counts * scale * (1 + np.arange(counts.size).reshape(counts.shape) % 3)
    streams = [f"s{i}" for i in range(counts.shape[0])]
    p = latent_presence(counts, activation, streams,
                        EvalSettings(presence_basis=basis, presence_mostly=mostly, presence_only=only))
    alive = counts.sum(0) > 0
    for share in (p.firing_share(), p.activation_share()):
        total = np.stack(list(share.values())).sum(0)
        assert np.allclose(total[alive], 1.0, rtol=0, atol=1e-12)
        assert np.isnan(total[~alive]).all()
    classifying = np.stack(list((p.firing_share() if basis == "firing" else p.activation_share()).values()))
    for lat, cls in enumerate(p.classes):
        top = classifying[:, lat].max() if alive[lat] else math.nan
        expected = ("dead" if not alive[lat] else "only" if top >= only else "mostly" if top >= mostly else "shared")
        assert cls == expected
        assert (p.main_stream[lat] == "") == (not alive[lat])
    assert p.shared + p.n_mostly + p.n_only + p.dead == counts.shape[1]
