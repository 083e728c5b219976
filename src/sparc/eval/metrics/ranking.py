"""Ranks of the correct matches in a cross-stream retrieval, block by block.

A query is row i of stream s; the gallery is every row of stream t. The *acceptable*
matches of i are the rows sharing its group (the same image) or its caption (identical,
non-empty): retrieving any of them is not a miss, and the query's rank is that of the
best-ranked acceptable match.

Ties are ranked pessimistically and without regard to row order: a non-acceptable row
whose score is at least ``best − tol`` is counted above the match, where ``best`` is the
best acceptable score computed exactly (float64) beside the float32 block scores.
``tol`` absorbs the round-off between the two, so exact duplicates of the match always
count as ties. Hence ``rank = 1 + #{j not acceptable : score(i, j) ≥ best(i) − tol}``;
an all-zero query (cosine 0 with everything) ranks last among the rows scoring ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sparc.eval.sampling import group_codes

MATCH_RULE = "a row sharing the query row's group (image) or its identical non-empty caption is a correct match"
TIE_RULE = ("pessimistic: wrong rows scoring at least best-correct minus tie_tol rank above it; "
            "rank = 1 + their count (independent of row order)")


class MatchKeys:
    """Group and caption codes of the rows of a split, to tell correct matches apart."""

    def __init__(self, groups: Sequence[str], captions: Sequence[str | None]):
        self.group = group_codes(groups)
        caps = np.array([c if c else "" for c in captions], dtype=object).astype(str)
        _, code = np.unique(caps, return_inverse=True)
        self.caption = np.where(caps == "", -1, code).astype(np.int64)

    def pairs(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every acceptable (query, gallery row) pair of the query positions ``queries``.

        Returns ``(q, g)``: index into ``queries`` and gallery position, sorted by
        gallery position (then query), without duplicates.
        """
        q_parts, g_parts = [], []
        for codes, valid in ((self.group, None), (self.caption, self.caption >= 0)):
            order = np.argsort(codes, kind="stable")
            sorted_codes = codes[order]
            qc = codes[queries]
            lo = np.searchsorted(sorted_codes, qc, side="left")
            hi = np.searchsorted(sorted_codes, qc, side="right")
            if valid is not None:
                hi = np.where(valid[queries], hi, lo)
            n = hi - lo
            q = np.repeat(np.arange(len(queries)), n)
            within = np.arange(len(q)) - np.repeat(np.cumsum(n) - n, n)
            q_parts.append(q)
            g_parts.append(order[np.repeat(lo, n) + within])
        flat = np.unique(np.concatenate(g_parts) * len(queries) + np.concatenate(q_parts))
        return flat % len(queries), flat // len(queries)


def rank_queries(
    score_block: Callable[[int, int], Tensor],
    best: Tensor,
    pairs: tuple[np.ndarray, np.ndarray],
    n_gallery: int,
    block: int,
    *,
    tol: float,
    progress: tqdm | None = None,
) -> np.ndarray:
    """Ranks (1 = best) of the best acceptable match of each query; ``n_gallery`` (a
    miss) where that match's score is not finite.

    Parameters
    ----------
    score_block
        ``score_block(a, b)`` → float scores [m, b − a] of the m queries against gallery
        positions ``a ≤ j < b``.
    best
        [m] exact best acceptable score of each query.
    pairs
        Acceptable pairs ``(q, g)`` sorted by ``g`` (from :meth:`MatchKeys.pairs`).
    """
    q_acc, g_acc = pairs
    threshold = (best.double() - tol).to(torch.float32)
    # Compare in the block's precision, conservatively: round the threshold down.
    threshold = torch.where(threshold.double() > best.double() - tol,
                            torch.nextafter(threshold, torch.tensor(-np.inf)), threshold)
    above = torch.zeros(len(best), dtype=torch.int64)
    for a in range(0, n_gallery, block):
        b = min(a + block, n_gallery)
        scores = score_block(a, b)
        thr = threshold.to(scores.device)
        # As uint8 with an int32 sum: half the time of a bool sum into int64.
        above += torch.ge(scores, thr[:, None]).view(torch.uint8).sum(1, dtype=torch.int32).cpu()
        lo, hi = np.searchsorted(g_acc, [a, b])
        if hi > lo:
            q = torch.from_numpy(q_acc[lo:hi]).to(scores.device)
            g = torch.from_numpy(g_acc[lo:hi] - a).to(scores.device)
            hit = scores[q, g] >= thr[q]
            above -= torch.bincount(q[hit], minlength=len(best)).cpu()
        if progress is not None:
            progress.update(b - a)
    ranks = 1 + above.numpy()
    # A query whose own match has no finite score is a miss (worst rank), never a tie at 1.
    ranks[~torch.isfinite(best).numpy()] = n_gallery
    return ranks


def best_scores(pair_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                pairs: tuple[np.ndarray, np.ndarray], n_queries: int, chunk: int = 65536) -> Tensor:
    """[m] float64: each query's best exact score over its acceptable pairs.

    ``pair_score(q, g)`` returns the float64 scores of query indices ``q`` against gallery
    positions ``g`` (same length)."""
    q_acc, g_acc = pairs
    best = np.full(n_queries, -np.inf)
    for a in range(0, len(q_acc), chunk):
        q, g = q_acc[a:a + chunk], g_acc[a:a + chunk]
        np.maximum.at(best, q, pair_score(q, g))
    return torch.from_numpy(best)


def retrieval_metrics(ranks: np.ndarray, n_population: int) -> tuple[float, float, float, float, float, float]:
    """``(R@1, R@5, R@10, median rank, MRR, R@1 95% half-width)`` of ``ranks``.

    The half-width is the normal approximation for a sample of ``len(ranks)`` of
    ``n_population`` queries (finite-population corrected: 0 when all are used)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    n = len(ranks)
    r1 = float((ranks <= 1).mean())
    fpc = (n_population - n) / (n_population - 1) if n_population > 1 else 0.0
    ci = 1.96 * float(np.sqrt(max(r1 * (1 - r1), 0.0) / n * max(fpc, 0.0)))
    return (r1, float((ranks <= 5).mean()), float((ranks <= 10).mean()),
            float(np.median(ranks)), float((1.0 / ranks).mean()), ci)
