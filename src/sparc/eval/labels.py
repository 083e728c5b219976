"""Multi-hot labels of rows as a compact CSR, optionally lifted up the label hierarchy.

The hierarchy maps label → parent (None for a root). A label's *depth* is its number of
ancestors: roots are at depth 0. Lifting to depth ``d`` replaces every label deeper than
``d`` by its ancestor at depth ``d`` and keeps shallower labels; a row's lifted labels are
a set (a row with "cat" and "dog" lifted to "animal" has "animal" once). Labels missing
from the hierarchy count as roots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from sparc.errors import SparcError

Hierarchy = Mapping[str, "str | None"]


def ancestors(label: str, hierarchy: Hierarchy) -> list[str]:
    """``[label, parent, grandparent, ..., root]``; SparcError on a cycle."""
    chain = [label]
    seen = {label}
    parent = hierarchy.get(label)
    while parent is not None:
        if parent in seen:
            raise SparcError(f"the label hierarchy has a cycle through {parent!r}; fix the store's label_hierarchy")
        chain.append(parent)
        seen.add(parent)
        parent = hierarchy.get(parent)
    return chain


def depth_of(label: str, hierarchy: Hierarchy) -> int:
    """Number of ancestors of ``label`` (0 for a root or an unknown label)."""
    return len(ancestors(label, hierarchy)) - 1


def max_depth(labels: Sequence[str], hierarchy: Hierarchy) -> int:
    """Deepest depth among ``labels``."""
    return max((depth_of(label, hierarchy) for label in labels), default=0)


def lift(label: str, depth: int, hierarchy: Hierarchy) -> str:
    """``label``'s ancestor at ``depth``, or ``label`` itself if it is not deeper."""
    chain = ancestors(label, hierarchy)
    return chain[max(0, len(chain) - 1 - depth)]


class LabelMatrix(NamedTuple):
    """Multi-hot labels of ``n_rows`` rows: row i has classes ``classes[indptr[i]:indptr[i+1]]``
    (sorted, unique) among ``names``."""

    indptr: np.ndarray
    """int64 [n_rows + 1]."""
    classes: np.ndarray
    """int64 [nnz] class ids."""
    names: list[str]
    """Class id → label name (sorted)."""

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def row_counts(self) -> np.ndarray:
        """Labels per row, int64 [n_rows]."""
        return np.diff(self.indptr)

    def positives(self) -> np.ndarray:
        """Rows holding each class, int64 [n_classes]."""
        return np.bincount(self.classes, minlength=self.n_classes)

    def take(self, rows: np.ndarray) -> LabelMatrix:
        """The labels of ``rows`` (in that order)."""
        counts = self.row_counts()[rows]
        indptr = np.concatenate(([0], np.cumsum(counts)))
        starts = np.repeat(self.indptr[rows], counts)
        within = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
        return LabelMatrix(indptr, self.classes[starts + within], self.names)

    def dense(self) -> np.ndarray:
        """bool [n_rows, n_classes]."""
        out = np.zeros((self.n_rows, self.n_classes), dtype=bool)
        out[np.repeat(np.arange(self.n_rows), self.row_counts()), self.classes] = True
        return out


def label_matrix(
    labels: Sequence[Sequence[str]],
    *,
    hierarchy: Hierarchy | None = None,
    depth: int | None = None,
    names: Sequence[str] | None = None,
) -> LabelMatrix:
    """Multi-hot labels of rows.

    Parameters
    ----------
    labels
        Each row's label names.
    hierarchy, depth
        Lift every label to its ancestor at ``depth`` (None: keep the labels as given).
    names
        Class vocabulary (sorted by the caller); default: the sorted labels that occur.
        Labels outside it are dropped.
    """
    if depth is not None:
        if hierarchy is None:
            raise SparcError("lifting labels to a depth needs a label hierarchy; the store has none")
        cache: dict[str, str] = {}

        def lifted(x: str) -> str:
            if x not in cache:
                cache[x] = lift(x, depth, hierarchy)
            return cache[x]

        labels = [[lifted(x) for x in row] for row in labels]
    if names is None:
        names = sorted({x for row in labels for x in row})
    ids = {name: i for i, name in enumerate(names)}
    rows_classes = [sorted({ids[x] for x in row if x in ids}) for row in labels]
    counts = np.fromiter((len(r) for r in rows_classes), dtype=np.int64, count=len(rows_classes))
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    classes = np.fromiter((c for r in rows_classes for c in r), dtype=np.int64, count=int(indptr[-1]))
    return LabelMatrix(indptr, classes, list(names))
