"""How much of an alignment figure is about concepts: its floors (docs/method.md §5.2, §5.3).

A concept Jaccard compares two streams' label histograms per latent. Under joint global
TopK every stream fires the same latents on the same rows, so the histograms match
whatever the labels are, and the figure mostly measures equal firing counts. Beside
every concept Jaccard sparc therefore reports:

- the **label-free value**: the same formula with all labels merged into one class
  (:meth:`ConceptCounter.label_free`) — no concept information at all;
- a **permutation null**: the labels shuffled across the evaluated rows, whole groups
  moved together (:func:`label_permutations`), mean and spread over seeded shuffles;
- the **excess** = observed − null: the label-specific part.

For the per-sample active-set Jaccard the null pairs row i of one stream with a random
row of another group in the other stream (:func:`other_group_rows`), on at most
:data:`NULL_ROWS` seeded rows per draw.

Cost: the nulls reuse the codes the streaming pass kept (the independent codes, and the
joint firing for a global model) — no second encoding pass. Each shuffle recounts the
label histograms of every depth from those codes as one sparse × dense product per
stream and chunk of rows (:func:`concept_nulls`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from sparc.eval.labels import LabelMatrix
from sparc.eval.metrics.active_sets import N_BINS, active_set_jaccard
from sparc.eval.metrics.concept_jaccard import concept_jaccard, side_by_side
from sparc.eval.results import ConceptJaccard, PairActiveSets, PairJaccard, spread
from sparc.model import SparseCode
from sparc.model.kernels import csr_tensor

FIGURES = ("all", "active")
NULL_ROWS = 16384
"""Rows per draw of the per-sample null (a seeded sample when the split has more)."""


class CodeSource(Protocol):
    """Codes of rows of one stream, as :meth:`sparc.eval.codes.CodeTable.code`."""

    def code(self, rows: np.ndarray | slice, device: str | torch.device = "cpu") -> SparseCode: ...


def _rng(seed: int, draw: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, draw, purpose])


def label_permutations(groups: np.ndarray, labelled: np.ndarray, n: int, seed: int) -> tuple[list[np.ndarray], int]:
    """``n`` seeded shuffles of the labels across rows, whole groups moved together.

    Returns ``(perms, fixed)``: under ``perm`` row i takes the labels of row ``perm[i]``.
    A group's labelled rows move as one block onto the labelled rows of another group
    with as many labelled rows (in row order); unlabelled rows stay unlabelled, so the
    labelled rows, every class's row count and the label-free value are unchanged.
    ``fixed`` counts the labelled rows of groups whose number of labelled rows no other
    group shares: they keep their own labels.

    Parameters
    ----------
    groups
        int [N] group code of each row.
    labelled
        bool [N] rows with at least one label.
    """
    N = len(groups)
    rows = np.flatnonzero(labelled)
    rows = rows[np.lexsort((rows, groups[rows]))]
    _, start, size = np.unique(groups[rows], return_index=True, return_counts=True)
    strata = [(int(sz), np.flatnonzero(size == sz)) for sz in np.unique(size)]
    fixed = sum(sz for sz, blocks in strata if len(blocks) == 1)
    perms = []
    for draw in range(n):
        rng = _rng(seed, draw, 1)
        perm = np.arange(N)
        for sz, blocks in strata:
            if len(blocks) < 2:
                continue
            src = rng.permutation(blocks)
            within = np.arange(sz)
            perm[rows[(start[blocks][:, None] + within).ravel()]] = rows[(start[src][:, None] + within).ravel()]
        perms.append(perm)
    return perms, fixed


def other_group_rows(groups: np.ndarray, n: int, seed: int,
                     max_rows: int = 0) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``n`` seeded draws of ``(rows, partners)``: every row (or a seeded sample of
    ``max_rows`` of them, 0 = all) with a partner chosen uniformly among the rows of the
    OTHER groups (so never the row itself nor its near-duplicates); None when all rows
    are one group."""
    N = len(groups)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    start = np.searchsorted(sorted_groups, groups, side="left")
    size = np.searchsorted(sorted_groups, groups, side="right") - start
    if N == 0 or (size == N).any():
        return None
    out = []
    for draw in range(n):
        rng = _rng(seed, draw, 2)
        rows = np.sort(rng.choice(N, size=max_rows, replace=False)) if 0 < max_rows < N else np.arange(N)
        r = rng.integers(0, N - size[rows])
        # r indexes the group-sorted rows with the row's own group cut out.
        out.append((rows, order[np.where(r < start[rows], r, r + size[rows])]))
    return out


def _moments(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if not np.isnan(v)]
    if len(vals) != len(values) or not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), spread(vals)


def firing_matrix(code: SparseCode) -> Tensor:
    """The transposed firing matrix of a chunk of rows: sparse CSR [L, B] float32 with a 1
    where latent l fires (value > 0) on row b."""
    fired = code.values > 0
    B, k = code.indices.shape
    lat = code.indices[fired]
    rows = torch.arange(B, device=lat.device)[:, None].expand(B, k)[fired]
    order = torch.argsort(lat, stable=True)  # rows stay sorted within a latent
    crow = torch.zeros(code.n_latents + 1, dtype=torch.int64, device=lat.device)
    crow[1:] = torch.cumsum(torch.bincount(lat, minlength=code.n_latents), 0)
    return csr_tensor(crow, rows[order], torch.ones(len(order), device=lat.device), (code.n_latents, B))


def concept_nulls(streams: Sequence[str], n_latents: int, label_sets: Sequence[tuple[int | None, LabelMatrix]],
                  perms: Sequence[np.ndarray], codes: Mapping[str, CodeSource], n_rows: int,
                  chunk: int = 16384) -> list[list[ConceptJaccard]]:
    """The concept Jaccard of ``codes`` under each shuffle of the labels: one list per
    shuffle, one entry per depth (the counts of :class:`ConceptCounter` with row i given
    the labels of row ``perm[i]``).

    Every depth is counted at once, ``cnt[s] = Fᵀ_s · Y_perm``: the firing matrices of the
    codes, ``chunk`` rows at a time, are built once (sparse, ≤ 12 bytes per firing) and
    multiplied by the dense permuted labels of those rows for each shuffle.
    """
    if not perms or not label_sets:
        return [[] for _ in perms]
    indptr, classes, offsets = side_by_side([m for _, m in label_sets])
    C = int(offsets[-1])
    bounds = [(a, min(a + chunk, n_rows)) for a in range(0, n_rows, chunk)]
    firing = {s: [firing_matrix(codes[s].code(slice(a, b))) for a, b in bounds] for s in streams}
    n_labelled = int((label_sets[0][1].row_counts() > 0).sum())
    out = []
    for perm in perms:
        counts = torch.zeros(len(streams), n_latents, max(C, 1))
        for c, (a, b) in enumerate(bounds):
            y = _dense_labels(indptr, classes, perm[a:b], max(C, 1))
            for i, s in enumerate(streams):
                counts[i] += torch.sparse.mm(firing[s][c], y)
        cnt = counts.round().to(torch.int64).numpy()  # exact: float32 holds counts up to 2**24
        out.append([concept_jaccard(cnt[:, :, offsets[d]:offsets[d + 1]], streams, depth=depth,
                                    n_labelled_rows=n_labelled)[0]
                    for d, (depth, _) in enumerate(label_sets)])
    return out


def _dense_labels(indptr: np.ndarray, classes: np.ndarray, rows: np.ndarray, n_classes: int) -> Tensor:
    """float32 [len(rows), n_classes]: 1 where row ``rows[i]`` has the class."""
    counts = indptr[rows + 1] - indptr[rows]
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cls = classes[np.repeat(indptr[rows], counts) + within]
    y = torch.zeros(len(rows), n_classes)
    y[torch.from_numpy(np.repeat(np.arange(len(rows)), counts)), torch.from_numpy(cls)] = 1.0
    return y


def with_concept_floors(observed: ConceptJaccard, label_free: ConceptJaccard | None,
                        nulls: Sequence[ConceptJaccard]) -> ConceptJaccard:
    """``observed`` with its label-free value, permutation null (mean, sd over ``nulls``,
    the same depth under each shuffle) and excess filled in, overall and per pair."""

    def floors(obs, free, null_list) -> dict:
        out = {}
        for f in FIGURES:
            value = getattr(obs, f"mean_{f}")
            mean, sd = _moments([getattr(x, f"mean_{f}") for x in null_list]) if null_list else (np.nan, np.nan)
            out[f"label_free_{f}"] = getattr(free, f"mean_{f}") if free is not None else np.nan
            out[f"null_{f}"], out[f"null_{f}_sd"] = mean, sd
            out[f"excess_{f}"] = value - mean
        return {k: float(v) for k, v in out.items()}

    pairs: list[PairJaccard] = []
    for i, p in enumerate(observed.pairs):
        free_pair = label_free.pairs[i] if label_free is not None else None
        pairs.append(dataclasses.replace(p, **floors(p, free_pair, [x.pairs[i] for x in nulls])))
    null_hist = np.mean([x.histogram for x in nulls], axis=0).tolist() if nulls else []
    return dataclasses.replace(observed, pairs=pairs, null_histogram=null_hist,
                               **floors(observed, label_free, nulls))


def active_set_nulls(streams: Sequence[str], draws: Sequence[tuple[np.ndarray, np.ndarray]],
                     codes: Mapping[str, CodeSource], chunk: int = 8192
                     ) -> dict[tuple[str, str], tuple[list[float], np.ndarray]]:
    """Per stream pair (a, b): for each draw ``(rows, partners)`` the mean per-sample
    Jaccard of row ``rows[i]`` in a against row ``partners[i]`` in b, and the histogram
    (rows per bin) averaged over the draws."""
    out = {}
    for a, b in itertools.combinations(streams, 2):
        means, hist = [], np.zeros(N_BINS)
        for rows, partners in draws:
            total = 0.0
            for c in range(0, len(rows), chunk):
                d = min(c + chunk, len(rows))
                j, _ = active_set_jaccard(codes[a].code(rows[c:d]), codes[b].code(partners[c:d]))
                j = j.cpu().numpy()
                total += float(j.sum())
                hist += np.histogram(j, bins=N_BINS, range=(0.0, 1.0))[0]
            means.append(total / max(len(rows), 1))
        out[(a, b)] = (means, hist / max(len(draws), 1))
    return out


def with_active_set_floors(observed: PairActiveSets, null: tuple[list[float], np.ndarray] | None) -> PairActiveSets:
    """``observed`` with its null (mean, sd over the draws), excess and null histogram."""
    if null is None or not null[0]:
        return observed
    means, hist = null
    mean, sd = _moments(means)
    return dataclasses.replace(observed, null=mean, null_sd=sd, excess=observed.mean - mean,
                               null_by_draw=[float(m) for m in means], null_histogram=hist.tolist())
