"""Label hierarchy: depths, lifting, multi-hot matrices."""

import numpy as np
import pytest

from sparc.errors import SparcError
from sparc.eval.labels import ancestors, depth_of, label_matrix, lift

# animal (0) ─ mammal (1) ─ cat, dog (2);  animal ─ bird (1);  car (0)
H = {"animal": None, "mammal": "animal", "cat": "mammal", "dog": "mammal", "bird": "animal", "car": None}


def test_depths_and_lift():
    assert ancestors("cat", H) == ["cat", "mammal", "animal"]
    assert [depth_of(x, H) for x in ("animal", "mammal", "cat", "car")] == [0, 1, 2, 0]
    assert depth_of("unknown", H) == 0  # not in the hierarchy: a root
    assert lift("cat", 1, H) == "mammal"
    assert lift("cat", 0, H) == "animal"
    assert lift("cat", 5, H) == "cat"  # not deeper than 5: kept
    assert lift("bird", 1, H) == "bird"
    assert lift("car", 1, H) == "car"


def test_lifted_rows_are_sets():
    rows = [["cat", "dog"], ["bird", "car"], [], ["cat"]]
    m = label_matrix(rows, hierarchy=H, depth=1)
    assert m.names == ["bird", "car", "mammal"]
    # cat + dog both lift to mammal: one positive, not two.
    assert m.dense().astype(int).tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 0, 1]]
    m0 = label_matrix(rows, hierarchy=H, depth=0)
    assert m0.names == ["animal", "car"]
    assert m0.positives().tolist() == [3, 1]
    leaf = label_matrix(rows)
    assert leaf.names == ["bird", "car", "cat", "dog"]
    assert leaf.take(np.array([3, 0])).dense().astype(int).tolist() == [[0, 0, 1, 0], [0, 0, 1, 1]]


def test_vocabulary_and_errors():
    m = label_matrix([["cat", "zebra"]], names=["cat", "dog"])
    assert m.dense().tolist() == [[True, False]]  # zebra is outside the vocabulary
    with pytest.raises(SparcError, match="cycle"):
        lift("a", 0, {"a": "b", "b": "a"})
    with pytest.raises(SparcError, match="hierarchy"):
        label_matrix([["cat"]], depth=1)
