"""Seeded samples of whole groups."""

import numpy as np

from sparc.eval.sampling import sample_groups


def test_group_samples_keep_whole_groups():
    groups = np.repeat(np.arange(50), 3)  # 50 groups of 3 rows
    rows = np.arange(150) + 1000
    got = sample_groups(rows, groups, cap=40, seed=0)
    assert len(got) <= 40 and len(got) % 3 == 0
    taken = groups[got - 1000]
    for g in np.unique(taken):
        assert (taken == g).sum() == 3  # no group is cut
    assert np.array_equal(sample_groups(rows, groups, 0, 0), rows)
