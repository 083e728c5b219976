"""Concept names: (a) the original's majority-of-top-50 protocol, (b) a vocabulary
through a text stream, and (b) measured against (a)."""

import numpy as np
import pytest
import torch

from sparc.data import FeatureStore
from sparc.errors import SparcError
from sparc.eval.features import model_inputs
from sparc.eval.labels import depth_of
from sparc.explore.naming import (
    Names,
    NamingSettings,
    default_vocabulary,
    evaluate_vocabulary_names,
    name_latents,
    names_for_run,
    render_evaluation,
    row_labels,
)
from sparc.explore.settings import StatsSettings
from sparc.explore.stats import compute_stats, stats_for_run
from sparc.model import SPARC


@pytest.mark.parametrize("encoding", ["joint", "independent"])
def test_label_names_follow_the_original_protocol(store, model, encoding):
    stats = compute_stats(model, store, StatsSettings(split="all", top=50, progress=False))
    names = name_latents(model, store, stats, NamingSettings(encoding=encoding), log=lambda m: None)
    rows = store.split_rows("all")
    x = {s: model_inputs(store, s, rows) for s in model.names}
    with torch.no_grad():
        if encoding == "joint":
            codes = {s: c.dense().numpy() for s, c in model.encode(x).items()}
        else:
            codes = {s: model.encode({s: x[s]})[s].dense().numpy() for s in model.names}
    meta = store.rows()
    hierarchy = store.label_hierarchy()
    for s, stream in enumerate(model.names):
        z = codes[stream]
        for lat in range(model.n_latents):
            active = np.flatnonzero((z[:, lat] > 0) & np.array([bool(meta[r].labels) for r in rows]))
            top = sorted(active, key=lambda i: (-z[i, lat], rows[i]))[:50]
            if not top:
                assert names.majority[s, lat] == -1 and not names.accepted[s, lat]
                continue
            votes = {}
            for i in top:
                for label in meta[rows[i]].labels:
                    votes[label] = votes.get(label, 0) + 1
            best = max(votes.values())
            label = min((c for c, v in votes.items() if v == best), key=lambda c: (-depth_of(c, hierarchy), c))
            assert names.classes[names.majority[s, lat]] == label
            assert names.n_voters[s, lat] == len(top) and names.count[s, lat] == best
            assert names.accepted[s, lat] == (best / len(top) >= 0.3)
    aligned = names.aligned
    for lat in range(model.n_latents):
        expect = all(names.label_name(s, lat) is not None for s in model.names) and \
            len({names.label_name(s, lat) for s in model.names}) == 1
        assert aligned[lat] == expect


def test_specific_labels_drop_ancestors(tmp_path):
    from sparc.data import RowMeta, StoreWriter

    labels = [("Animals", "cats"), ("Animals",), ("cats", "dogs", "Animals"), ()]
    with StoreWriter(tmp_path / "s", {"a": 2}, label_hierarchy={"cats": "Animals", "dogs": "Animals",
                                                               "Animals": None}) as w:
        w.append({"a": np.ones((4, 2), np.float32)}, [RowMeta(f"r{i}", labels=x) for i, x in enumerate(labels)])
    store = FeatureStore.open(tmp_path / "s")
    rows = np.arange(4)
    assert row_labels(store, rows, "given") == labels
    assert row_labels(store, rows, "specific") == [("cats",), ("Animals",), ("cats", "dogs"), ()]


def _names(majority, count, n_voters, streams=("a", "b"), classes=("cat", "dog")):
    return Names(settings=NamingSettings(), streams=list(streams), classes=list(classes),
                 majority=np.array(majority), count=np.array(count), n_voters=np.array(n_voters))


def test_purity_acceptance_alignment_and_display_name():
    n = _names([[0, 0, 1, -1], [0, 1, 1, -1]], [[3, 20, 10, 0], [40, 30, 5, 0]], [[10, 50, 50, 0], [50, 50, 50, 0]])
    assert n.accepted.tolist() == [[True, True, False, False], [True, True, False, False]]
    assert n.aligned.tolist() == [True, False, False, False]
    assert n.name(0) == "cat" and n.name(1) == "cat (a) / dog (b)" and n.name(2) is None


def test_vocabulary_names_on_the_world(world):
    store, run = FeatureStore.open(world["store"]), world["run"]
    model = SPARC.load(run)
    stats = stats_for_run(run, model, store, StatsSettings(split="test", progress=False))
    names = names_for_run(run, model, store, stats, NamingSettings(), log=lambda m: None)
    assert names.text_stream == "txt" and names.notes == []
    # the vocabulary: every label, then the captions of the rows outside the split only
    vocab = default_vocabulary(store, stats, "given")
    inside = {store.rows()[r].caption for r in stats.rows}
    outside = {store.rows()[r].caption for r in range(store.n_rows) if r not in set(stats.rows.tolist())}
    captions = [e for e, k in zip(vocab.entries, vocab.kind) if k == "caption"]
    assert set(captions) == outside and "fruit" in vocab.entries and "apple" in vocab.entries
    assert not (set(captions) - outside) and (inside - outside).isdisjoint(captions)
    # words: the entries with the largest activation of each latent, through txt
    from tests.explore.world import FakeText

    feats = FakeText().encode(names.vocabulary).numpy()
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    with torch.no_grad():
        dense = model.encode({"txt": torch.from_numpy(feats)})["txt"].dense().numpy()
    for lat in range(model.n_latents):
        order = sorted(np.flatnonzero(dense[:, lat] > 0), key=lambda i: (-dense[i, lat], i))[:5]
        got = [names.vocabulary[i] for i in names.words[lat] if i >= 0]
        assert got == [names.vocabulary[i] for i in order]
        np.testing.assert_allclose([v for _, v in names.top_words(lat)], dense[order, lat], rtol=1e-4, atol=1e-5)
    # a trained model names its latents, and its words agree with its labels far above chance
    ev = names.evaluation["txt"]
    assert ev["latents"] >= 10 and ev["top1"] > ev["chance"] + 0.3
    assert "top word belongs to the name" in render_evaluation(names)
    # saved, reloaded and reused
    again = names_for_run(run, model, store, stats, NamingSettings(), log=lambda m: pytest.fail(m))
    assert again.vocabulary == names.vocabulary and np.array_equal(again.words, names.words)


def test_evaluation_counts_by_hand():
    n = _names([[0, 1, 0]], [[5, 5, 5]], [[5, 5, 5]], streams=("t",))
    n.words = np.array([[0, 1], [0, -1], [2, 0]])
    n.word_scores = np.ones((3, 2), np.float32)
    belongs = [frozenset({"cat"}), frozenset({"dog"}), frozenset()]
    ev = evaluate_vocabulary_names(n, belongs)["t"]
    assert ev["latents"] == 3 and ev["top1"] == pytest.approx(1 / 3) and ev["top_words"] == pytest.approx(2 / 3)
    assert ev["chance"] == pytest.approx(1 / 3)


def test_word_list_and_errors(world, tmp_path):
    store, run = FeatureStore.open(world["store"]), world["run"]
    model = SPARC.load(run)
    stats = stats_for_run(run, model, store, StatsSettings(split="test", progress=False))
    words = tmp_path / "words.txt"
    words.write_text("apple\nwhale\n\nsubmarine\napple\n")
    names = name_latents(model, store, stats, NamingSettings(vocabulary=words))
    assert names.vocabulary == ["apple", "whale", "submarine"] and set(names.vocabulary_kind) == {"word"}
    with pytest.raises(SparcError, match="not a text stream"):
        name_latents(model, store, stats, NamingSettings(text_stream="img"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(SparcError, match="has no entries"):
        name_latents(model, store, stats, NamingSettings(vocabulary=empty))
    with pytest.raises(SparcError, match="recompute them with --top 60"):
        name_latents(model, store, stats, NamingSettings(top=60))
    with pytest.raises(SparcError):
        NamingSettings(min_purity=2)


def test_missing_backbone_drops_the_label_names_with_a_note(world, monkeypatch, tmp_path):
    from sparc.extract.backbones import BACKBONES

    store, run = FeatureStore.open(world["store"]), world["run"]
    model = SPARC.load(run)
    stats = stats_for_run(run, model, store, StatsSettings(split="test", progress=False))
    monkeypatch.delitem(BACKBONES.classes, "explore-fake-text")
    names = name_latents(model, store, stats, NamingSettings())
    assert set(names.vocabulary_kind) == {"caption"} and "label names left out" in names.notes[0]
    words = tmp_path / "w.txt"
    words.write_text("apple\n")
    with pytest.raises(SparcError, match="unknown backbone"):
        name_latents(model, store, stats, NamingSettings(vocabulary=words))
