"""Retrieval ranks: acceptable matches, pessimistic deterministic ties, metrics."""

import numpy as np
import pytest
import torch

from sparc.eval.metrics.ranking import MatchKeys, best_scores, rank_queries, rank_under_rules, retrieval_metrics


def ranks_of(scores, acceptable, tol=1e-6, block=2):
    """Rank the queries of a full [m, n] score matrix, given acceptable gallery lists."""
    scores = torch.tensor(scores, dtype=torch.float32)
    q = np.array([i for i, acc in enumerate(acceptable) for _ in acc])
    g = np.array([j for acc in acceptable for j in acc])
    order = np.lexsort((q, g))
    pairs = (q[order], g[order])
    best = best_scores(lambda qi, gi: scores[qi, gi].double().numpy(), pairs, len(acceptable))
    return rank_queries(lambda a, b: scores[:, a:b], best, pairs, scores.shape[1], block, tol=tol)


def test_rank_counts_wrong_rows_above_the_best_match():
    s = [[0.9, 0.5, 0.9, 0.95, 0.1]]
    # Only item 1 is correct: best 0.5; wrong items scoring ≥ 0.5 are 0, 2, 3 → rank 4.
    assert ranks_of(s, [[1]]).tolist() == [4]
    # Items 1 and 2 correct (shared image): best 0.9; wrong ≥ 0.9: item 3 and item 0, which TIES
    # the best and is ranked above it (pessimistic) → rank 3.
    assert ranks_of(s, [[1, 2]]).tolist() == [3]
    # Item 3 correct: nothing scores above 0.95 → rank 1.
    assert ranks_of(s, [[3]]).tolist() == [1]


def test_ties_do_not_depend_on_row_order():
    s = np.array([[0.7, 0.7, 0.7, 0.2]])
    for perm in ([0, 1, 2, 3], [2, 1, 0, 3], [3, 0, 2, 1]):
        inv = np.argsort(perm)
        # The correct item is original item 1, wherever it sits; two wrong items tie with it.
        assert ranks_of(s[:, perm], [[int(inv[1])]]).tolist() == [3]


def test_chunked_equals_unchunked():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, size=(6, 11)).astype(np.float32) / 4  # many ties
    acc = [[i, (i + 3) % 11] for i in range(6)]
    assert ranks_of(s, acc, block=1).tolist() == ranks_of(s, acc, block=11).tolist() == ranks_of(s, acc, block=4).tolist()


def test_match_keys_groups_and_captions():
    keys = MatchKeys(["g0", "g0", "g1", "g2", "g3"], ["a", "b", "a", None, ""])
    q, g = keys.pairs(np.array([0, 3, 4]), "group_aware")
    pairs = sorted(zip(q.tolist(), g.tolist()))
    # Query 0: its group {0, 1} and caption "a" {0, 2}. Query row 3 / 4: no caption → only itself.
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4)]
    assert list(g) == sorted(g)  # sorted by gallery position for the block loop
    # Same image (the headline): no images given, so every row is its own image.
    q, g = keys.pairs(np.array([0, 3, 4]))
    assert sorted(zip(q.tolist(), g.tolist())) == [(0, 0), (1, 3), (2, 4)]


def test_match_keys_same_image():
    # Rows 0 and 2 show one image (two captions of it); rows 1 and 3 have no image: each is its own.
    # Row 1 shares row 0's group (a skin-tone variant, say) but not its image.
    keys = MatchKeys(["g0", "g0", "g0", "g1"], ["x", "y", "z", "x"], ["a.jpg", None, "a.jpg", None])
    assert keys.n_images == 3
    q, g = keys.pairs(np.array([0, 1, 3]))
    assert sorted(zip(q.tolist(), g.tolist())) == [(0, 0), (0, 2), (1, 1), (2, 3)]
    q, g = keys.pairs(np.array([0, 1, 3]), "group_aware")
    # Query 0: group {0, 1, 2}, image {0, 2}, caption "x" {0, 3}; query 3: caption "x" {0, 3}.
    assert sorted(zip(q.tolist(), g.tolist())) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2),
                                                    (2, 0), (2, 3)]
    with pytest.raises(ValueError, match="match rule"):
        keys.pairs(np.array([0]), "same_group")


def test_two_rules_from_one_pass_equal_each_alone():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 5, size=(5, 9)).astype(np.float32) / 5  # many ties
    keys = MatchKeys([f"g{i // 3}" for i in range(9)], [None] * 9, [f"i{i // 2}" for i in range(9)])
    queries = np.arange(5)
    scores = torch.from_numpy(s)
    rules = []
    for rule in ("same_image", "group_aware"):
        pairs = keys.pairs(queries, rule)
        rules.append((best_scores(lambda qi, gi: scores[qi, gi].double().numpy(), pairs, 5), pairs))
    together = rank_under_rules(lambda a, b: scores[:, a:b], rules, 9, 4, tol=1e-6)
    for (best, pairs), got in zip(rules, together):
        assert got.tolist() == rank_queries(lambda a, b: scores[:, a:b], best, pairs, 9, 2, tol=1e-6).tolist()
    # More correct rows can only lower (improve) a rank.
    assert (together[1] <= together[0]).all()


def test_metrics_by_hand():
    r1, r5, r10, med, mrr, ci = retrieval_metrics(np.array([1, 2, 6, 11]), 4)
    assert (r1, r5, r10, med) == (0.25, 0.5, 0.75, 4.0)
    assert mrr == pytest.approx((1 + 1 / 2 + 1 / 6 + 1 / 11) / 4)
    assert ci == 0.0  # every row was a query: no sampling error
    *_, ci = retrieval_metrics(np.array([1, 2, 6, 11]), 1000)
    assert ci == pytest.approx(1.96 * np.sqrt(0.25 * 0.75 / 4 * 996 / 999))
