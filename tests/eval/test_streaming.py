"""evaluate(): streaming equals one chunk, counts equal a dense brute force, JSON round trip."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from sparc.data.normalize import l2_normalize
from sparc.eval import EvalReport, EvalSettings, evaluate, render_eval, write_eval
from sparc.eval.labels import label_matrix

from .helpers import small_model

FAST = dict(progress=False, probe_epochs=2, retrieval_queries=20)


@pytest.fixture(scope="module")
def reports(store):
    model = small_model(store)
    with torch.no_grad():
        model.b_lat[:, :4] = -100.0  # latents 0-3 can never win the TopK: dead in every stream
    one = evaluate(model, store, EvalSettings(chunk_rows=100_000, retrieval_block=100_000, **FAST), run="m")
    many = evaluate(model, store, EvalSettings(chunk_rows=7, retrieval_block=9, **FAST), run="m")
    return model, one, many


def close(a, b, path=""):
    """Recursive equality; floats to 1e-6 (float32 products of other shapes, sums in another order)."""
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            close(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-9), path
    else:
        assert a == b, path


def test_chunked_equals_unchunked(reports):
    _, one, many = reports
    # Everything but the chunk sizes (settings) and the timings is the same.
    close(dataclasses.replace(one, settings=many.settings, seconds={}), dataclasses.replace(many, seconds={}))


def test_concept_counts_equal_a_dense_brute_force(store, reports):
    model, one, _ = reports
    rows = store.split_rows("test")
    x = {s: torch.from_numpy(l2_normalize(np.array(store.features(s)[rows], dtype=np.float32))) for s in model.names}
    Y = label_matrix([store.rows()[r].labels for r in rows]).dense().astype(np.int64)
    with torch.no_grad():
        joint = model.encode(x)
    # cnt[s, l, c] = Σ_i [z_s(i)_l > 0] Y[i, c] from dense codes.
    cnt = np.stack([(joint[s].dense().numpy() > 0).astype(np.int64).T @ Y for s in model.names])
    j_sum, n_pairs = np.zeros(model.n_latents), np.zeros(model.n_latents)
    for a in range(3):
        for b in range(a + 1, 3):
            both = (cnt[a].sum(1) > 0) & (cnt[b].sum(1) > 0)
            j = np.minimum(cnt[a], cnt[b]).sum(1) / np.maximum(np.maximum(cnt[a], cnt[b]).sum(1), 1)
            j_sum += np.where(both, j, 0)
            n_pairs += both
    multi = (cnt.sum(2) > 0).sum(0) >= 2
    j_l = np.where(multi, j_sum / np.maximum(n_pairs, 1), 0)
    c = one.encoding("joint").concept(None)
    assert c.mean_all == pytest.approx(j_l.mean())
    assert c.mean_active == pytest.approx(j_l[multi].mean())
    # The dead latents 0-3 count 0 in the mean over all L (the paper's convention).
    assert one.encoding("joint").dead.dead_in_all >= 4
    assert c.mean_all == pytest.approx(c.mean_active * c.n_active / model.n_latents)


def test_report_contents(store, reports):
    model, one, _ = reports
    assert [e.encoding for e in one.encodings] == ["joint", "independent"]
    assert one.n_rows == len(store.split_rows("test"))
    # The store's hierarchy has depth 2 (c_i → low_even → low): labels as given, depths 0 and 1.
    assert [c.depth for c in one.encoding("joint").concept_jaccard] == [None, 0, 1]
    assert one.encoding("joint").concept(0).n_classes == 2  # low, high
    # Under global TopK the joint codes share their latents: per-sample Jaccard near 1.
    assert one.encoding("joint").mean_active_set_jaccard() > one.encoding("independent").mean_active_set_jaccard()
    assert one.retrieval.n_queries == 20 and one.retrieval.n_gallery == one.n_rows
    assert len(one.retrieval.results) == 6 * 2 + 2
    assert one.probes is not None and len(one.probes.multilabel) == 9
    assert one.probes.fit_split == "train" and one.probes.report_split == "test"
    md = render_eval(one)
    assert "## Retrieval" in md and "concept" in md.lower()


def test_json_round_trip_and_files(reports, tmp_path):
    _, one, _ = reports
    written = write_eval(one, tmp_path / "ev")
    assert set(written.plots) == {"firing", "jaccard", "cross_nmse", "dead"}
    for rel in written.plots.values():
        assert (tmp_path / "ev" / rel).stat().st_size > 1000
    back = EvalReport.load(tmp_path / "ev")
    close(back, written)
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert data["settings"]["chunk_rows"] == 100_000 and data["format"] == "sparc-eval"
    assert "(plots/firing.png)" in (tmp_path / "ev" / "eval.md").read_text()


def test_probes_need_the_test_split(store):
    model = small_model(store, topk="local")
    rep = evaluate(model, store, EvalSettings(split="val", **FAST))
    assert rep.probes is None and any("probes skipped" in n for n in rep.notes)
    assert any("local TopK" in n for n in rep.notes)
    assert rep.encodings[0].reconstruction == rep.encodings[1].reconstruction


def test_every_jaccard_has_its_floors(reports):
    _, one, _ = reports
    for enc in one.encodings:
        free = enc.concept_jaccard[0].label_free_all
        for c in enc.concept_jaccard:
            assert c.label_free_all == free  # no labels at all: the same at every depth
            for f in ("all", "active"):
                obs, null = getattr(c, f"mean_{f}"), getattr(c, f"null_{f}")
                assert 0 <= null <= 1 and getattr(c, f"null_{f}_sd") >= 0
                assert getattr(c, f"excess_{f}") == pytest.approx(obs - null)
            for p in c.pairs:
                assert p.excess_all == pytest.approx(p.mean_all - p.null_all) and 0 <= p.label_free_all <= 1
            assert sum(c.null_histogram) == pytest.approx(c.n_active)
        for p in enc.active_sets:
            assert len(p.null_by_draw) == 5 and p.null == pytest.approx(np.mean(p.null_by_draw))
            assert p.excess == pytest.approx(p.mean - p.null)
        mean, sd = enc.mean_active_set_null()
        assert mean == pytest.approx(np.mean([p.null for p in enc.active_sets])) and sd >= 0
    # Joint global TopK shares the selection: its per-sample Jaccard is far above its null.
    joint = one.encoding("joint")
    assert all(p.excess > 0.3 for p in joint.active_sets)


def test_floors_need_no_second_encoding_pass(store, monkeypatch):
    """The nulls reuse the kept codes: the encoder runs as often with them as without."""
    model = small_model(store)
    calls = []
    logits = model.logits
    monkeypatch.setattr(model, "logits", lambda x: calls.append(1) or logits(x))
    settings = dict(FAST, probes=False, chunk_rows=13)
    evaluate(model, store, EvalSettings(null_shuffles=0, **settings))
    without = len(calls)
    calls.clear()
    rep = evaluate(model, store, EvalSettings(null_shuffles=3, **settings))
    assert len(calls) == without
    assert len(rep.encoding("joint").active_sets[0].null_by_draw) == 3
    none = evaluate(model, store, EvalSettings(null_shuffles=0, **settings)).encoding("joint").concept(None)
    assert math.isnan(none.null_all) and math.isnan(none.excess_all) and not math.isnan(none.label_free_all)


def test_nulls_are_deterministic_for_a_seed(store, reports):
    model, one, _ = reports
    again = evaluate(model, store, EvalSettings(chunk_rows=50, retrieval_block=50, probes=False, **FAST), run="m")
    for a, b in zip(one.encodings, again.encodings):
        assert [c.null_all for c in a.concept_jaccard] == [c.null_all for c in b.concept_jaccard]
        assert [p.null_by_draw for p in a.active_sets] == [p.null_by_draw for p in b.active_sets]
    other = evaluate(model, store, EvalSettings(seed=1, probes=False, **FAST), run="m")
    assert [p.null_by_draw for p in other.encoding("joint").active_sets] != \
        [p.null_by_draw for p in one.encoding("joint").active_sets]


def test_an_eval_json_of_the_old_format_asks_for_a_rerun(reports, tmp_path):
    """Version 1 counted a row of the query's group as a hit in R@1: refused, not misread."""
    _, one, _ = reports
    data = one.to_json()
    data["version"] = 1
    (tmp_path / "eval.json").write_text(json.dumps(data))
    from sparc.errors import SparcError

    with pytest.raises(SparcError, match="version 1.*run 'sparc eval' again") as e:
        EvalReport.load(tmp_path)
    assert len(str(e.value).splitlines()) == 1
