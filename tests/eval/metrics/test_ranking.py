"""Retrieval ranks: acceptable matches, pessimistic deterministic ties, metrics."""

import numpy as np
import pytest
import torch

from sparc.eval.metrics.ranking import MatchKeys, best_scores, rank_queries, retrieval_metrics


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
    q, g = keys.pairs(np.array([0, 3, 4]))
    pairs = sorted(zip(q.tolist(), g.tolist()))
    # Query 0: its group {0, 1} and caption "a" {0, 2}. Query row 3 / 4: no caption → only itself.
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4)]
    assert list(g) == sorted(g)  # sorted by gallery position for the block loop


def test_metrics_by_hand():
    r1, r5, r10, med, mrr, ci = retrieval_metrics(np.array([1, 2, 6, 11]), 4)
    assert (r1, r5, r10, med) == (0.25, 0.5, 0.75, 4.0)
    assert mrr == pytest.approx((1 + 1 / 2 + 1 / 6 + 1 / 11) / 4)
    assert ci == 0.0  # every row was a query: no sampling error
    *_, ci = retrieval_metrics(np.array([1, 2, 6, 11]), 1000)
    assert ci == pytest.approx(1.96 * np.sqrt(0.25 * 0.75 / 4 * 996 / 999))
