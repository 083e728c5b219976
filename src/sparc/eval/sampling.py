"""Seeded row samples: whole groups for the probes, plain rows for retrieval queries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_codes(group_ids: Sequence[str]) -> np.ndarray:
    """An int64 code per row, equal for rows of the same group."""
    _, codes = np.unique(np.asarray(group_ids, dtype=object).astype(str), return_inverse=True)
    return codes.astype(np.int64)


def sample_groups(rows: np.ndarray, groups: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Sorted subset of ``rows`` made of whole groups, at most ``cap`` rows (0: all).

    Groups are taken in a seeded random order while they fit; a group larger than
    ``cap`` is skipped rather than split, so no group is ever cut across row sets.

    Parameters
    ----------
    rows
        Candidate row indices.
    groups
        Group code of every candidate (same length as ``rows``).
    """
    rows = np.asarray(rows)
    if cap == 0 or len(rows) <= cap:
        return np.sort(rows)
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    taken = np.zeros(len(uniq), dtype=bool)
    total = 0
    for g in order:
        if total + sizes[g] <= cap:
            taken[g] = True
            total += sizes[g]
            if total == cap:
                break
    return np.sort(rows[taken[inverse]])


def sample_rows(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``cap`` of ``n`` rows (0 or ≥ n: all)."""
    if cap == 0 or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
