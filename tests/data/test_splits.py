"""Group-hash splits: no leakage, right fractions, independent of row order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparc.data import FeatureStore, RowMeta, Split
from sparc.data.splits import assign_splits, check_fractions
from sparc.errors import SparcError
from tests.data.helpers import random_features, write

group_lists = st.lists(st.text(min_size=0, max_size=6), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(groups=group_lists, seed=st.integers(0, 2**31), data=st.data())
def test_no_group_in_two_splits_and_order_independent(groups, seed, data):
    codes = assign_splits(groups, (0.6, 0.2, 0.2), seed)
    assert codes.dtype == np.int8 and set(codes.tolist()) <= {0, 1, 2}
    by_group: dict[str, set[int]] = {}
    for g, c in zip(groups, codes.tolist()):
        by_group.setdefault(g, set()).add(c)
    assert all(len(s) == 1 for s in by_group.values())
    perm = data.draw(st.permutations(range(len(groups))))
    permuted = assign_splits([groups[i] for i in perm], (0.6, 0.2, 0.2), seed)
    np.testing.assert_array_equal(permuted, codes[list(perm)])


def test_fractions_roughly_right_and_seed_matters():
    groups = [f"img{i}" for i in range(20_000)]
    codes = assign_splits(groups, (0.7, 0.2, 0.1), seed=3)
    frac = np.bincount(codes, minlength=3) / len(groups)
    np.testing.assert_allclose(frac, [0.7, 0.2, 0.1], atol=0.015)
    other = assign_splits(groups, (0.7, 0.2, 0.1), seed=4)
    assert (other != codes).mean() > 0.2
    # Stable across calls (and so across re-imports).
    np.testing.assert_array_equal(codes, assign_splits(groups, (0.7, 0.2, 0.1), seed=3))


def test_degenerate_fractions():
    groups = [str(i) for i in range(200)]
    assert set(assign_splits(groups, (1, 0, 0), 0).tolist()) == {0}
    assert set(assign_splits(groups, (0, 0, 1), 0).tolist()) == {2}


@pytest.mark.parametrize("fr", [(0.5, 0.5), (0.5, 0.6, -0.1), (float("nan"), 0.5, 0.5), (0.3, 0.3, 0.3)])
def test_bad_fractions(fr):
    with pytest.raises(SparcError):
        check_fractions(fr)


def test_split_parse():
    assert Split.parse("val") is Split.VAL and Split.parse(Split.ALL) is Split.ALL
    with pytest.raises(SparcError, match="unknown split 'dev'; choose one of: train, val, test, all"):
        Split.parse("dev")


def test_store_splits_follow_groups_under_row_permutation(tmp_path):
    n = 300
    feats = random_features(n)
    meta = [RowMeta(f"r{i}", group_id=f"g{i % 40}") for i in range(n)]
    a = FeatureStore.open(write(tmp_path / "a", feats, meta))
    perm = np.random.default_rng(1).permutation(n)
    b = FeatureStore.open(write(tmp_path / "b", {k: v[perm] for k, v in feats.items()}, [meta[i] for i in perm]))
    split_of = {}
    for store in (a, b):
        parts = [store.split_rows(s) for s in ("train", "val", "test")]
        assert sum(map(len, parts)) == n
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), store.split_rows("all"))
        for s, rows in zip(("train", "val", "test"), parts):
            assert np.all(np.diff(rows) > 0) and rows.dtype == np.int64
            for i in rows:
                m = store.rows()[i]
                assert split_of.setdefault(m.row_id, s) == s  # same split in both stores
        groups = [{store.rows()[i].group_id for i in rows} for rows in parts]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
