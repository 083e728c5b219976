"""Concept Jaccard against hand-computed cases."""

import numpy as np
import pytest
import torch

from sparc.eval.labels import label_matrix
from sparc.eval.metrics.concept_jaccard import ConceptCounter, concept_jaccard, pair_jaccard
from sparc.model import SparseCode


def test_pair_and_latent_jaccard_by_hand():
    # Streams a, b; latents 0..2; classes 0..1.
    a = np.array([[2, 1], [0, 0], [1, 0]])
    b = np.array([[1, 1], [3, 0], [0, 2]])
    j, both = pair_jaccard(a, b)
    # l0: Σmin = 1 + 1 = 2, Σmax = 2 + 1 = 3 → 2/3.  l1: dead in a → not both active → 0.
    # l2: Σmin = 0 + 0 = 0, Σmax = 1 + 2 = 3 → 0.
    assert j == pytest.approx([2 / 3, 0, 0])
    assert both.tolist() == [True, False, True]
    res, j_l = concept_jaccard(np.stack([a, b]), ["a", "b"])
    # mean over all L with the single-stream latent l1 counted 0: (2/3 + 0 + 0) / 3 = 2/9;
    # over the latents active in ≥ 2 streams (l0, l2): (2/3 + 0) / 2 = 1/3.
    assert res.mean_all == pytest.approx(2 / 9)
    assert res.mean_active == pytest.approx(1 / 3)
    assert res.n_active == 2
    assert j_l == pytest.approx([2 / 3, 0, 0])
    (p,) = res.pairs
    assert (p.a, p.b, p.n_active) == ("a", "b", 2)
    assert p.mean_all == pytest.approx(2 / 9) and p.mean_active == pytest.approx(1 / 3)
    assert sum(res.histogram) == 2 and res.histogram[13] == 1 and res.histogram[0] == 1  # 2/3 → bin 13


def test_mean_over_pairs_where_active_in_both():
    # Three streams, one latent, one class... two classes: a = [1, 1], b = [1, 0], c dead.
    counts = np.array([[[1, 1]], [[1, 0]], [[0, 0]]])
    res, j_l = concept_jaccard(counts, ["a", "b", "c"])
    # Only the pair (a, b) has the latent active in both: J = min(1,1)+min(1,0) / (1+1) = 1/2;
    # the pairs with c do not enter the mean (they are not "0" for this latent).
    assert j_l == pytest.approx([0.5])
    assert [p.n_active for p in res.pairs] == [1, 0, 0]
    assert res.mean_all == pytest.approx(0.5)


def test_dead_latents_count_zero_in_the_mean_over_all():
    counts = np.zeros((2, 4, 1), dtype=int)
    counts[:, 0, 0] = 5  # only latent 0 is alive, identically in both streams: J = 1
    res, _ = concept_jaccard(counts, ["a", "b"])
    assert res.mean_active == 1.0
    assert res.mean_all == pytest.approx(1 / 4)  # the 3 dead latents count 0, as the paper


def code(idx, val):
    return SparseCode(torch.tensor(idx), torch.tensor(val, dtype=torch.float32), 3)


def test_counter_counts_labelled_rows_where_the_latent_fires():
    labels = [["x"], ["x", "y"], []]  # row 2 unlabelled
    m = label_matrix(labels)
    counter = ConceptCounter(["a", "b"], 3, [(None, m)])
    # Stream a: row 0 fires l0 (l1 selected but ReLU'd to 0), row 1 fires l0 and l2,
    # row 2 (unlabelled) fires l1 and l2.
    a = code([[0, 1], [0, 2], [1, 2]], [[1.0, 0.0], [0.5, 2.0], [1.0, 1.0]])
    b = code([[2, 1], [0, 1], [0, 1]], [[1.0, 1.0], [1.0, 0.0], [3.0, 3.0]])
    # Feed in two chunks to exercise the row offset.
    counter.update(0, {"a": SparseCode(a.indices[:1], a.values[:1], 3), "b": SparseCode(b.indices[:1], b.values[:1], 3)})
    counter.update(1, {"a": SparseCode(a.indices[1:], a.values[1:], 3), "b": SparseCode(b.indices[1:], b.values[1:], 3)})
    cnt = counter.counts_at(0)
    # a: l0 ← rows 0 {x}, 1 {x,y} = [2, 1]; l1 ← row 2 only (no labels) = [0, 0]; l2 ← row 1 = [1, 1]
    assert cnt[0].tolist() == [[2, 1], [0, 0], [1, 1]]
    # b: l0 ← row 1 = [1, 1]; l1 ← row 0 = [1, 0] (row 1's l1 is 0, row 2 unlabelled); l2 ← row 0 = [1, 0]
    assert cnt[1].tolist() == [[1, 1], [1, 0], [1, 0]]
    (res, j_l), = counter.results()
    # l0: (1+1)/(2+1) = 2/3; l1: active in b only → 0; l2: (1+0)/(1+1) = 1/2.
    assert j_l == pytest.approx([2 / 3, 0, 1 / 2])
    assert res.n_labelled_rows == 2


def test_counter_at_several_depths():
    H = {"cat": "animal", "dog": "animal", "animal": None, "car": None}
    labels = [["cat", "dog"], ["car"]]
    sets = [(None, label_matrix(labels)), (0, label_matrix(labels, hierarchy=H, depth=0))]
    counter = ConceptCounter(["a", "b"], 2, sets)
    c = code([[0, 1], [0, 1]], [[1.0, 0.0], [1.0, 1.0]])
    counter.update(0, {"a": c, "b": c})
    leaf, lifted = counter.counts_at(0), counter.counts_at(1)
    # Leaf classes [car, cat, dog]: l0 fires on both rows → [1, 1, 1]; l1 on row 1 → [1, 0, 0].
    assert leaf[0].tolist() == [[1, 1, 1], [1, 0, 0]]
    # Depth 0 classes [animal, car]: row 0's cat + dog lift to ONE animal → l0 = [1, 1].
    assert lifted[0].tolist() == [[1, 1], [0, 1]]
    assert [r.depth for r, _ in counter.results()] == [None, 0]
