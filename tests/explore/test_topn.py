"""TopN keeps, per group, the n largest keys (ties: smaller item), whatever the chunking."""

import numpy as np
import pytest

from sparc.explore.topn import TopN, hash_keys


def _brute(groups, keys, items, values, n_groups, n):
    out = np.full((n_groups, n), -1)
    for g in range(n_groups):
        sel = np.flatnonzero(groups == g)
        order = sorted(sel, key=lambda i: (-keys[i], items[i]))[:n]
        out[g, :len(order)] = items[order]
    return out


@pytest.mark.parametrize("chunk,buffer", [(1000, None), (37, 50), (5, 7)])
def test_topn_matches_brute_force(chunk, buffer):
    rng = np.random.default_rng(0)
    G, n, M = 13, 6, 1000
    groups = rng.integers(0, G, M)
    items = np.arange(M)
    keys = rng.integers(0, 20, M).astype(float)  # many ties
    values = keys.astype(np.float32) * 2
    top = TopN(G, n, buffer=buffer)
    for a in range(0, M, chunk):
        sl = slice(a, a + chunk)
        top.update(groups[sl], keys[sl], items[sl], values[sl])
    got, got_keys, got_vals = top.result()
    assert np.array_equal(got, _brute(groups, keys, items, values, G, n))
    held = got >= 0
    assert np.array_equal(got_vals[held], values[got[held]])
    assert np.all(np.diff(np.where(held, got_keys, -1e9), axis=1) <= 0)


def test_groups_with_fewer_entries_are_padded():
    top = TopN(3, 4)
    top.update(np.array([0, 0, 2]), np.array([1.0, 2.0, 3.0]), np.array([5, 6, 7]), np.ones(3, np.float32))
    items, keys, _ = top.result()
    assert items.tolist() == [[6, 5, -1, -1], [-1] * 4, [7, -1, -1, -1]]
    assert np.isneginf(keys[1]).all()


def test_hash_keys_are_deterministic_and_uniform():
    a, b = np.arange(20000), np.arange(20000) % 7
    k1, k2 = hash_keys(a, b, 0), hash_keys(a, b, 0)
    assert np.array_equal(k1, k2) and ((k1 >= 0) & (k1 < 1)).all()
    assert abs(k1.mean() - 0.5) < 0.01
    assert not np.array_equal(k1, hash_keys(a, b, 1))


def test_group_order_equals_lexsort():
    from sparc.explore.topn import group_order

    rng = np.random.default_rng(1)
    M = 5000
    groups = rng.integers(0, 40, M)
    keys = np.round(rng.normal(size=M), 1).astype(np.float32)  # negatives and many ties
    items = rng.permutation(M)
    assert np.array_equal(group_order(groups, keys, items), np.lexsort((items, -keys, groups)))
