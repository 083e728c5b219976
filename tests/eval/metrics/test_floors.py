"""The floors beside every Jaccard: label-free value, permutation nulls, excess."""

import numpy as np
import pytest
import torch

from sparc.eval.codes import CodeTable, SharedFiring
from sparc.eval.labels import label_matrix
from sparc.eval.metrics.active_sets import ActiveSetAccumulator
from sparc.eval.metrics.concept_jaccard import ConceptCounter
from sparc.eval.metrics.floors import (
    active_set_nulls,
    concept_nulls,
    label_permutations,
    other_group_rows,
    with_active_set_floors,
    with_concept_floors,
)
from sparc.model import SparseCode


def table(idx, val, n_latents):
    t = CodeTable(len(idx), len(idx[0]), n_latents)
    t.put(0, SparseCode(torch.tensor(idx), torch.tensor(val, dtype=torch.float32), n_latents))
    return t


def floored(labels, codes, n_latents, groups=None, shuffles=8, seed=0):
    """The concept Jaccard (labels as given) of ``codes`` with its floors."""
    n = len(labels)
    m = label_matrix(labels)
    streams = list(codes)
    counter = ConceptCounter(streams, n_latents, [(None, m)], label_free=True)
    counter.update(0, {s: c.code(slice(0, n)) for s, c in codes.items()})
    groups = np.arange(n) if groups is None else np.asarray(groups)
    perms, _ = label_permutations(groups, m.row_counts() > 0, shuffles, seed)
    nulls = concept_nulls(streams, n_latents, [(None, m)], perms, codes, n, chunk=3)
    (observed, _), = counter.results()
    return with_concept_floors(observed, counter.label_free(), [x[0] for x in nulls])


def test_labels_without_information_have_no_excess():
    """Every row has the same label: the labelled value IS the label-free one, and no
    shuffle can change it — excess exactly 0."""
    rng = np.random.default_rng(0)
    n, L = 40, 12
    idx = [rng.choice(L, 3, replace=False).tolist() for _ in range(n)]
    a = table(idx, rng.uniform(0, 1, (n, 3)).tolist(), L)
    idx_b = [rng.choice(L, 3, replace=False).tolist() for _ in range(n)]
    b = table(idx_b, rng.uniform(0, 1, (n, 3)).tolist(), L)
    c = floored([["thing"]] * n, {"a": a, "b": b}, L)
    assert 0 < c.mean_all < 1
    assert c.label_free_all == pytest.approx(c.mean_all) and c.label_free_active == pytest.approx(c.mean_active)
    assert c.null_all == pytest.approx(c.mean_all) and c.null_all_sd == pytest.approx(0)
    assert c.excess_all == pytest.approx(0, abs=1e-12) and c.excess_active == pytest.approx(0, abs=1e-12)
    (p,) = c.pairs
    assert p.excess_all == pytest.approx(0, abs=1e-12) and p.label_free_all == pytest.approx(p.mean_all)


def test_labels_carrying_all_of_the_alignment():
    """Latent c fires on exactly the rows of class c, in both streams: observed 1. Stream
    b fires them on OTHER rows of the class than stream a, so without the labels nothing
    ties the two streams' latents together: the null is low and the excess large."""
    n_cls, per = 4, 10
    labels = [[f"c{i // per}"] for i in range(n_cls * per)]
    # Stream a: latent = class on the first half of each class's rows; b on the second half.
    idx_a = [[i // per, n_cls] for i in range(n_cls * per)]
    val_a = [[1.0 if i % per < per // 2 else 0.0, 0.0] for i in range(n_cls * per)]
    val_b = [[0.0 if i % per < per // 2 else 1.0, 0.0] for i in range(n_cls * per)]
    L = n_cls + 1
    c = floored(labels, {"a": table(idx_a, val_a, L), "b": table(idx_a, val_b, L)}, L, shuffles=20)
    assert c.mean_active == pytest.approx(1.0) and c.n_active == n_cls
    assert c.label_free_active == pytest.approx(1.0)  # equal firing counts: label-free says "aligned" too
    assert c.null_active < 0.5
    assert c.excess_active == pytest.approx(c.mean_active - c.null_active) and c.excess_active > 0.5
    assert c.null_all_sd > 0
    assert len(c.null_histogram) == len(c.histogram) and sum(c.null_histogram) == pytest.approx(n_cls)


def test_label_free_reveals_misaligned_labels():
    """Both streams fire latent 0 on 5 rows, but on rows of different classes: the
    label-free value (equal counts) is 1, the labelled one 0."""
    labels = [["x"]] * 5 + [["y"]] * 5
    on_a = [[0], ] * 10
    a = table(on_a, [[1.0]] * 5 + [[0.0]] * 5, 2)
    b = table(on_a, [[0.0]] * 5 + [[1.0]] * 5, 2)
    c = floored(labels, {"a": a, "b": b}, 2)
    assert c.mean_active == 0 and c.label_free_active == 1.0


def test_null_is_deterministic_for_a_seed_and_keeps_groups_whole():
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 8])
    labelled = np.ones(len(groups), dtype=bool)
    labelled[15] = False  # group 8 has one labelled row: it joins the singletons' stratum
    p1, fixed = label_permutations(groups, labelled, 4, seed=7)
    p2, _ = label_permutations(groups, labelled, 4, seed=7)
    p3, _ = label_permutations(groups, labelled, 4, seed=8)
    assert fixed == 0
    assert all((a == b).all() for a, b in zip(p1, p2))
    assert any((a != b).any() for a, b in zip(p1, p3))
    for perm in p1:
        assert sorted(perm.tolist()) == list(range(len(groups)))  # a permutation
        assert perm[15] == 15  # unlabelled rows stay unlabelled
        for g in (0, 1, 2):  # a group's rows take the labels of ONE group, in row order
            src = perm[groups == g]
            assert len(set(groups[src])) == 1 and (np.diff(src) == 1).all()
    # A group whose size no other group shares keeps its labels (and is counted).
    _, fixed = label_permutations(np.array([0, 0, 1, 2]), np.ones(4, dtype=bool), 2, seed=0)
    assert fixed == 2


def test_partners_come_from_other_groups():
    groups = np.array([0, 0, 0, 0, 1, 2, 2, 3])
    draws = other_group_rows(groups, 50, seed=3)
    assert all((rows == np.arange(8)).all() and (groups[d] != groups).all() for rows, d in draws)
    again = other_group_rows(groups, 50, seed=3)
    assert all((a == b).all() for (_, a), (_, b) in zip(draws, again))
    # Every row of another group is reachable (uniform over them).
    seen = {int(d[0]) for _, d in draws}
    assert seen == {4, 5, 6, 7}
    assert other_group_rows(np.zeros(5, dtype=int), 3, seed=0) is None
    # At most max_rows seeded rows per draw.
    (rows, d), = other_group_rows(groups, 1, seed=0, max_rows=3)
    assert len(rows) == 3 and (np.diff(rows) > 0).all() and (groups[d] != groups[rows]).all()


def test_null_counts_equal_the_counter_on_shuffled_labels():
    """The sparse-product recount equals ConceptCounter fed the permuted labels, every
    depth, whatever the chunking."""
    H = {"cat": "animal", "dog": "animal", "animal": None, "car": "vehicle", "bus": "vehicle", "vehicle": None}
    rng = np.random.default_rng(5)
    n, L = 37, 9
    labels = [list(rng.choice(["cat", "dog", "car", "bus"], rng.integers(0, 3), replace=False)) for _ in range(n)]
    sets = [(None, label_matrix(labels)), (0, label_matrix(labels, hierarchy=H, depth=0))]
    codes = {s: table([rng.choice(L, 3, replace=False).tolist() for _ in range(n)],
                      (rng.uniform(size=(n, 3)) * (rng.uniform(size=(n, 3)) > 0.3)).tolist(), L) for s in "abc"}
    perms, _ = label_permutations(np.arange(n) // 2, sets[0][1].row_counts() > 0, 2, seed=1)
    for chunk in (5, 100):
        nulls = concept_nulls(list("abc"), L, sets, perms, codes, n, chunk=chunk)
        for perm, per_depth in zip(perms, nulls):
            counter = ConceptCounter(list("abc"), L, [(d, m.take(perm)) for d, m in sets])
            counter.update(0, {s: c.code(slice(0, n)) for s, c in codes.items()})
            assert per_depth == [c for c, _ in counter.results()]


def test_per_sample_null_pairs_rows_with_other_rows():
    # Every row uses its own latents, the same in both streams: observed 1, and any other
    # row shares none → null 0, excess 1.
    n = 6
    idx = [[2 * i, 2 * i + 1] for i in range(n)]
    t = table(idx, [[1.0, 1.0]] * n, 2 * n)
    partners = other_group_rows(np.arange(n), 3, seed=0)
    ((means, hist),) = active_set_nulls(["a", "b"], partners, {"a": t, "b": t}, chunk=4).values()
    assert len(means) == 3
    acc = ActiveSetAccumulator(["a", "b"])
    acc.update({"a": t.code(slice(0, n)), "b": t.code(slice(0, n))})
    (p,) = acc.result()
    p = with_active_set_floors(p, (means, hist))
    assert p.mean == 1.0 and p.null == 0.0 and p.excess == 1.0 and p.null_sd == 0.0
    assert p.null_histogram[0] == n and len(p.null_by_draw) == 3
    # Every row uses the same latents: the null equals the observed value, excess 0.
    same = table([[0, 1]] * n, [[1.0, 1.0]] * n, 4)
    ((means, hist),) = active_set_nulls(["a", "b"], partners, {"a": same, "b": same}).values()
    assert means == [1.0, 1.0, 1.0]


def test_shared_firing_keeps_what_fires():
    streams = ["a", "b"]
    idx = torch.tensor([[3, 1], [0, 2]])
    codes = {"a": SparseCode(idx, torch.tensor([[0.5, 0.0], [1.0, 2.0]]), 4),
             "b": SparseCode(idx, torch.tensor([[0.0, 0.3], [0.0, 0.0]]), 4)}
    f = SharedFiring(streams, 2, 2, 4)
    f.put(0, codes)
    a = f.stream("a").code(np.array([1, 0]))
    assert a.indices.tolist() == [[0, 2], [3, 1]] and a.values.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert f.stream("b").code(slice(0, 2)).values.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="share"):
        f.put(0, {"a": codes["a"], "b": SparseCode(idx.flip(1), codes["b"].values, 4)})
