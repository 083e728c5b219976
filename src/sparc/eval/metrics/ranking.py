"""Ranks of the correct matches in a cross-stream retrieval, block by block.

A query is row i of stream s; the gallery is every row of stream t. Two match rules are
ranked in the same pass over the scores (docs/method.md §5.5):

- **same image** (the headline, the paper's protocol): the correct matches of i are the
  rows showing the same image — the rows whose ``image`` equals i's, or i alone when it
  has none. On a store whose rows are all distinct images this is a plain ranking with
  the query's own row as the only hit.
- **group-aware** (reported beside it under its own name): also any row of i's split
  group (near-duplicates, skin-tone variants, the captions of one image) and any row with
  the identical non-empty caption.

The query's rank is that of the best-ranked correct match. Ties are ranked
pessimistically and without regard to row order: a row that is not a correct match and
scores at least ``best − tol`` is counted above the match, where ``best`` is the best
correct score computed exactly (float64) beside the float32 block scores. ``tol`` absorbs
the round-off between the two, so exact duplicates of the match always count as ties.
Hence ``rank = 1 + #{j not correct : score(i, j) ≥ best(i) − tol}``; an all-zero query
(cosine 0 with everything) ranks last among the rows scoring ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sparc.eval.sampling import group_codes

Rule = Literal["same_image", "group_aware"]
RULES: tuple[Rule, ...] = ("same_image", "group_aware")

MATCH_RULE = ("same image (the paper's protocol): only the rows of the query row's image are correct "
              "(the rows with its 'image'; the row itself when it has none)")
GROUP_MATCH_RULE = ("group-aware: also any row sharing the query row's group (split unit) or its identical "
                    "non-empty caption is correct")
TIE_RULE = ("pessimistic: wrong rows scoring at least best-correct minus tie_tol rank above it; "
            "rank = 1 + their count (independent of row order)")

Pairs = tuple[np.ndarray, np.ndarray]


class MatchKeys:
    """Image, group and caption codes of the rows of a split, to tell correct matches apart.

    Parameters
    ----------
    groups
        Split group of each row.
    captions
        Caption of each row (None or empty: none).
    images
        Image of each row (path or id); None for a row without one, which is then its
        own image. Default: every row its own image.
    """

    def __init__(self, groups: Sequence[str], captions: Sequence[str | None],
                 images: Sequence[str | None] | None = None):
        self.group = group_codes(groups)
        self.caption = _text_codes(captions)
        if images is None:
            images = [None] * len(self.group)
        if len(images) != len(self.group) or len(captions) != len(self.group):
            raise ValueError("groups, captions and images must have one entry per row")
        code = _text_codes(images)
        # A row without an image is its own: a code of its own, after every named image.
        alone = code < 0
        code[alone] = code.max(initial=-1) + 1 + np.arange(int(alone.sum()))
        self.image = code

    @property
    def n_images(self) -> int:
        """Distinct images among the rows."""
        return len(np.unique(self.image))

    def pairs(self, queries: np.ndarray, rule: Rule = "same_image") -> Pairs:
        """Every correct (query, gallery row) pair of the query positions ``queries``
        under ``rule``.

        Returns ``(q, g)``: index into ``queries`` and gallery position, sorted by
        gallery position (then query), without duplicates.
        """
        if rule == "same_image":
            keys = [(self.image, None)]
        elif rule == "group_aware":
            keys = [(self.image, None), (self.group, None), (self.caption, self.caption >= 0)]
        else:
            raise ValueError(f"unknown match rule {rule!r} (one of {', '.join(RULES)})")
        q_parts, g_parts = [], []
        for codes, valid in keys:
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


def _text_codes(values: Sequence[str | None]) -> np.ndarray:
    """An int64 code per entry, equal for equal non-empty text; -1 for None or empty."""
    text = np.array([v if v else "" for v in values], dtype=object).astype(str)
    _, code = np.unique(text, return_inverse=True)
    return np.where(text == "", -1, code).astype(np.int64)


def rank_queries(
    score_block: Callable[[int, int], Tensor],
    best: Tensor,
    pairs: Pairs,
    n_gallery: int,
    block: int,
    *,
    tol: float,
    progress: tqdm | None = None,
) -> np.ndarray:
    """Ranks (1 = best) of the best correct match of each query under one match rule;
    see :func:`rank_under_rules`."""
    return rank_under_rules(score_block, [(best, pairs)], n_gallery, block, tol=tol, progress=progress)[0]


def rank_under_rules(
    score_block: Callable[[int, int], Tensor],
    rules: Sequence[tuple[Tensor, Pairs]],
    n_gallery: int,
    block: int,
    *,
    tol: float,
    progress: tqdm | None = None,
) -> list[np.ndarray]:
    """Ranks (1 = best) of the best correct match of each query, one array per match
    rule, from ONE pass over the gallery's scores; ``n_gallery`` (a miss) where that
    match's score is not finite.

    Parameters
    ----------
    score_block
        ``score_block(a, b)`` → float scores [m, b − a] of the m queries against gallery
        positions ``a ≤ j < b``.
    rules
        Per match rule: ``best`` [m], the exact best correct score of each query, and the
        correct pairs ``(q, g)`` sorted by ``g`` (from :meth:`MatchKeys.pairs`).
    """
    thresholds, above = [], []
    for best, _ in rules:
        threshold = (best.double() - tol).to(torch.float32)
        # Compare in the block's precision, conservatively: round the threshold down.
        threshold = torch.where(threshold.double() > best.double() - tol,
                                torch.nextafter(threshold, torch.tensor(-np.inf)), threshold)
        thresholds.append(threshold)
        above.append(torch.zeros(len(best), dtype=torch.int64))
    for a in range(0, n_gallery, block):
        b = min(a + block, n_gallery)
        scores = score_block(a, b)
        for threshold, count, (best, (q_acc, g_acc)) in zip(thresholds, above, rules):
            thr = threshold.to(scores.device)
            # As uint8 with an int32 sum: half the time of a bool sum into int64.
            count += torch.ge(scores, thr[:, None]).view(torch.uint8).sum(1, dtype=torch.int32).cpu()
            lo, hi = np.searchsorted(g_acc, [a, b])
            if hi > lo:
                q = torch.from_numpy(q_acc[lo:hi]).to(scores.device)
                g = torch.from_numpy(g_acc[lo:hi] - a).to(scores.device)
                hit = scores[q, g] >= thr[q]
                count -= torch.bincount(q[hit], minlength=len(best)).cpu()
        if progress is not None:
            progress.update(b - a)
    out = []
    for count, (best, _) in zip(above, rules):
        ranks = 1 + count.numpy()
        # A query whose own match has no finite score is a miss (worst rank), never a tie at 1.
        ranks[~torch.isfinite(best).numpy()] = n_gallery
        out.append(ranks)
    return out


def best_scores(pair_score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                pairs: Pairs, n_queries: int, chunk: int = 65536) -> Tensor:
    """[m] float64: each query's best exact score over its correct pairs.

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
