"""Per-sample active-set Jaccard by hand."""

import pytest
import torch

from sparc.eval.metrics.active_sets import ActiveSetAccumulator, active_set_jaccard
from sparc.model import SparseCode


def code(idx, val):
    return SparseCode(torch.tensor(idx), torch.tensor(val, dtype=torch.float32), 10)


def test_by_hand():
    a = code([[1, 2, 3, 9], [1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2, 3]],
             [[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    b = code([[4, 3, 2, 9], [4, 3, 2, 1], [5, 6, 7, 8], [9, 8, 7, 6]],
             [[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]])
    j, empty = active_set_jaccard(a, b)
    # Row 0: A = {1,2,3} (9 is selected but zero), B = {2,3,4} → |∩| = 2, |∪| = 4 → 0.5.
    # Row 1: the same four latents in another order → 1.  Row 2: both empty → 0 (counted).
    # Row 3: disjoint → 0.
    assert j.tolist() == [0.5, 1.0, 0.0, 0.0]
    assert empty.tolist() == [False, False, True, False]
    acc = ActiveSetAccumulator(["a", "b"])
    acc.update({"a": a, "b": b})
    (p,) = acc.result()
    assert p.mean == pytest.approx(1.5 / 4) and p.n_empty == 1
    assert p.histogram[10] == 1 and p.histogram[19] == 1 and p.histogram[0] == 2
