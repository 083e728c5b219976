"""Per-group top-n selection over a stream of (group, key, item, value) entries, in
bounded memory: what keeps each latent's top activating rows and its random sample of
firing rows during the one statistics pass.

Entries below a group's current n-th key are dropped as they arrive; the others wait in
a buffer that is merged into the kept entries now and then, touching only the groups
that received entries. The result is the same whatever the chunking: per group, the n
entries with the largest key, ties broken by the smaller item.
"""

from __future__ import annotations

import numpy as np

MIX = np.uint64(0x9E3779B97F4A7C15)


def hash_keys(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random keys in [0, 1) for the pairs ``(a, b)`` (int arrays):
    splitmix64 of the pair and the seed. Equal pairs get equal keys in any order or chunking."""
    with np.errstate(over="ignore"):
        x = (a.astype(np.uint64) * np.uint64(0x100000001B3)) ^ (b.astype(np.uint64) + np.uint64(seed) * MIX)
        x = x + MIX
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _descending_bits(keys: np.ndarray) -> np.ndarray:
    """uint64 codes of float32 ``keys`` whose ascending order is the keys' descending order."""
    bits = (keys.astype(np.float32) + np.float32(0)).view(np.uint32).astype(np.uint64)  # -0.0 → 0.0
    negative = bits >= np.uint64(0x80000000)
    ordered = np.where(negative, np.uint64(0xFFFFFFFF) - bits, bits | np.uint64(0x80000000))  # ascending with keys
    return np.uint64(0xFFFFFFFF) - ordered


def group_order(groups: np.ndarray, keys: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The permutation sorting entries by group, then key (largest first), then item:
    one quicksort of a packed (group, key) code; the rare equal codes are then ordered
    by item, so the result is the same as ``np.lexsort((items, -keys, groups))``."""
    code = (groups.astype(np.uint64) << np.uint64(32)) | _descending_bits(keys)
    order = np.argsort(code)
    sorted_code = code[order]
    tied = np.flatnonzero(sorted_code[1:] == sorted_code[:-1])
    if len(tied):
        pos = np.unique(np.concatenate([tied, tied + 1]))
        sub = order[pos]
        order[pos] = sub[np.lexsort((items[sub], code[sub]))]
    return order


class TopN:
    """Keeps, for each of ``n_groups`` groups, the ``n`` entries with the largest key
    (keys are compared as float32; equal keys: the smaller item first).

    Parameters
    ----------
    n_groups
        Number of groups (e.g. encodings × streams × latents), below 2**32.
    n
        Entries kept per group.
    buffer
        Pending entries that trigger a merge (default: max(n_groups·n, 262,144)).
    """

    def __init__(self, n_groups: int, n: int, *, buffer: int | None = None):
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n_groups, self.n = n_groups, n
        self.keys = np.full((n_groups, n), -np.inf, dtype=np.float32)
        self.items = np.full((n_groups, n), -1, dtype=np.int64)
        self.values = np.zeros((n_groups, n), dtype=np.float32)
        self.threshold = np.full(n_groups, -np.inf, dtype=np.float32)
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._n_pending = 0
        self._buffer = buffer or max(n_groups * n, 1 << 18)

    def update(self, groups: np.ndarray, keys: np.ndarray, items: np.ndarray, values: np.ndarray) -> None:
        """Offer entries (1-d arrays of equal length). An item must not be offered twice
        to the same group."""
        keys = keys.astype(np.float32)
        keep = keys >= self.threshold[groups]
        if not keep.all():
            groups, keys, items, values = groups[keep], keys[keep], items[keep], values[keep]
        if len(groups) == 0:
            return
        self._pending.append((groups.astype(np.int64), keys, items.astype(np.int64), values.astype(np.float32)))
        self._n_pending += len(groups)
        if self._n_pending >= self._buffer:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        g_new, k_new, i_new, v_new = (np.concatenate(parts) for parts in zip(*self._pending))
        self._pending, self._n_pending = [], 0
        touched = np.unique(g_new)
        held = self.items[touched] >= 0
        g_old = np.repeat(touched, held.sum(1))
        g = np.concatenate([g_old, g_new])
        k = np.concatenate([self.keys[touched][held], k_new])
        it = np.concatenate([self.items[touched][held], i_new])
        v = np.concatenate([self.values[touched][held], v_new])
        order = group_order(g, k, it)
        g, k, it, v = g[order], k[order], it[order], v[order]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        counts = np.diff(np.r_[starts, len(g)])
        rank = np.arange(len(g)) - np.repeat(starts, counts)
        sel = rank < self.n
        g, k, it, v, rank = g[sel], k[sel], it[sel], v[sel], rank[sel]
        self.keys[touched] = -np.inf
        self.items[touched] = -1
        self.values[touched] = 0
        self.keys[g, rank] = k
        self.items[g, rank] = it
        self.values[g, rank] = v
        full = self.items[touched, self.n - 1] >= 0
        self.threshold[touched] = np.where(full, self.keys[touched, self.n - 1], -np.inf)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, keys, values), each [n_groups, n], sorted by key (largest first) within
        each group; item −1 (key −inf, value 0) pads groups with fewer than n entries."""
        self._merge()
        return self.items, self.keys, self.values
