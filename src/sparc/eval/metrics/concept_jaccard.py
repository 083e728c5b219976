"""Concept Jaccard (docs/method.md §5.2): do the latents mean the same labels in every stream?

For latent l and stream s, ``cnt[s, l, c]`` is the number of labelled rows with label c on
which l fires (z_s(i)_l > 0). Two streams agree on l when its label histograms match:
the weighted (Ruzicka) Jaccard ``Σ_c min(cnt_s, cnt_t) / Σ_c max(cnt_s, cnt_t)``. A
latent is *active* in a stream when it fires on at least one labelled row there;
``J(l)`` is the mean over the stream pairs where l is active in both, and 0 when l is
active in fewer than two streams (dead latents count 0, as in the paper).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from sparc.eval.labels import LabelMatrix
from sparc.eval.results import ConceptJaccard, PairJaccard
from sparc.model import SparseCode

N_BINS = 20


def pair_jaccard(cnt_a: np.ndarray, cnt_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Jaccard of two streams' histograms [L, C] per latent, and the mask of
    latents active in both (where it is defined; 0 elsewhere)."""
    both = (cnt_a.sum(1) > 0) & (cnt_b.sum(1) > 0)
    num = np.minimum(cnt_a, cnt_b).sum(1, dtype=np.float64)
    den = np.maximum(cnt_a, cnt_b).sum(1, dtype=np.float64)
    return np.where(both, num / np.where(both, den, 1.0), 0.0), both


def concept_jaccard(counts: np.ndarray, streams: Sequence[str], *, depth: int | None = None,
                    n_labelled_rows: int = 0) -> tuple[ConceptJaccard, np.ndarray]:
    """The concept Jaccard of label histograms ``counts`` [S, L, C]; also returns J(l) [L]."""
    S, L, C = counts.shape
    total = np.zeros(L)
    n_pairs = np.zeros(L, dtype=np.int64)
    pairs = []
    for a, b in itertools.combinations(range(S), 2):
        j, both = pair_jaccard(counts[a], counts[b])
        total += j
        n_pairs += both
        pairs.append(PairJaccard(
            a=streams[a], b=streams[b], mean_all=float(j.mean()),
            mean_active=float(j[both].mean()) if both.any() else float("nan"),
            n_active=int(both.sum()),
        ))
    active_streams = (counts.sum(2) > 0).sum(0)
    multi = active_streams >= 2
    j_l = np.where(multi, total / np.maximum(n_pairs, 1), 0.0)
    hist = np.histogram(j_l[multi], bins=N_BINS, range=(0.0, 1.0))[0]
    result = ConceptJaccard(
        depth=depth, n_classes=C, n_labelled_rows=n_labelled_rows,
        mean_all=float(j_l.mean()),
        mean_active=float(j_l[multi].mean()) if multi.any() else float("nan"),
        n_active=int(multi.sum()), pairs=pairs, histogram=hist.tolist(),
    )
    return result, j_l


def side_by_side(matrices: Sequence[LabelMatrix]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class space for several label matrices of the same rows (e.g. every depth):
    ``(indptr, classes, offsets)`` where row i holds each matrix's classes shifted by that
    matrix's offset (``offsets`` [len + 1], the last = the total number of classes)."""
    offsets = np.concatenate(([0], np.cumsum([m.n_classes for m in matrices]))).astype(np.int64)
    n_rows = matrices[0].n_rows if matrices else 0
    counts = sum((m.row_counts() for m in matrices), np.zeros(n_rows, dtype=np.int64))
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    classes = np.empty(int(indptr[-1]), dtype=np.int64)
    fill = indptr[:-1].copy()
    for m, off in zip(matrices, offsets[:-1]):
        rc = m.row_counts()
        dest = np.repeat(fill, rc) + (np.arange(len(m.classes)) - np.repeat(m.indptr[:-1], rc))
        classes[dest] = m.classes + off
        fill += rc
    return indptr, classes, offsets


class ConceptCounter:
    """Accumulates ``cnt[s, l, c]`` over chunks of rows, for several label depths at once.

    Parameters
    ----------
    streams
        Stream order of the counts.
    n_latents
        L.
    label_sets
        ``(depth, labels of the evaluated rows)`` per depth; each depth has its own classes.
    label_free
        Also count every labelled row as one class, "any label" (:meth:`label_free`).
    """

    def __init__(self, streams: Sequence[str], n_latents: int,
                 label_sets: Sequence[tuple[int | None, LabelMatrix]], *, label_free: bool = False):
        self.streams = list(streams)
        self.n_latents = n_latents
        self.depths = [d for d, _ in label_sets]
        self.has_label_free = bool(label_free and label_sets)
        if self.has_label_free:
            label_sets = [*label_sets, (None, merged_labels(label_sets[0][1]))]
        self.indptr, self.classes, self.offsets = side_by_side([m for _, m in label_sets])
        self.n_classes = int(self.offsets[-1])
        self.n_labelled = int((np.diff(label_sets[0][1].indptr) > 0).sum()) if label_sets else 0
        self.counts = torch.zeros(len(self.streams), n_latents * max(self.n_classes, 1), dtype=torch.int32)

    def update(self, start: int, codes: dict[str, SparseCode]) -> None:
        """Add the rows ``start, start + 1, ...`` encoded as ``codes``."""
        if self.n_classes == 0:
            return
        for s, name in enumerate(self.streams):
            code = codes[name]
            rows, slots = torch.nonzero(code.values > 0, as_tuple=True)
            lat = code.indices[rows, slots].cpu().numpy()
            pos = rows.cpu().numpy() + start
            n = self.indptr[pos + 1] - self.indptr[pos]
            rep = np.repeat(np.arange(len(lat)), n)
            within = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
            cls = self.classes[self.indptr[pos][rep] + within]
            flat = torch.from_numpy(lat[rep] * self.n_classes + cls)
            self.counts[s].index_add_(0, flat, torch.ones(len(flat), dtype=torch.int32))

    def counts_at(self, i: int) -> np.ndarray:
        """The counts [S, L, C] of the i-th depth."""
        full = self.counts.numpy().reshape(len(self.streams), self.n_latents, max(self.n_classes, 1))
        return full[:, :, self.offsets[i]:self.offsets[i + 1]]

    def results(self) -> list[tuple[ConceptJaccard, np.ndarray]]:
        """The concept Jaccard at every depth, with J(l)."""
        return [concept_jaccard(self.counts_at(i), self.streams, depth=d, n_labelled_rows=self.n_labelled)
                for i, d in enumerate(self.depths)]

    def label_free(self) -> ConceptJaccard:
        """The concept Jaccard with all labels merged into one class: ``cnt[s, l]`` = the
        labelled rows on which l fires in s, so J_st(l) = min / max of two firing counts."""
        if not self.has_label_free:
            raise ValueError("this counter was built without label_free=True")
        return concept_jaccard(self.counts_at(len(self.depths)), self.streams,
                               n_labelled_rows=self.n_labelled)[0]

    def reset(self) -> None:
        """Zero the counts (to count another assignment of the same codes)."""
        self.counts.zero_()


def merged_labels(labels: LabelMatrix) -> LabelMatrix:
    """One class, "any label", on every row that has at least one label."""
    has = (labels.row_counts() > 0).astype(np.int64)
    indptr = np.concatenate(([0], np.cumsum(has))).astype(np.int64)
    return LabelMatrix(indptr, np.zeros(int(indptr[-1]), dtype=np.int64), ["(any label)"])
