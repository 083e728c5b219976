"""NMSE, cross NMSE and L0 by hand."""

import math

import pytest
import torch

from sparc.eval.metrics.reconstruction import ReconstructionAccumulator
from sparc.model import SparseCode


def test_nmse_cross_and_l0_by_hand():
    # Two 2-d streams a and b; rows 0 and 1.
    x = {"a": torch.tensor([[3.0, 4.0], [0.0, 0.0]]), "b": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    # What each source's code decodes to, in every stream (source → target → [2, 2]).
    recons = {
        "a": {"a": torch.tensor([[3.0, 0.0], [1.0, 1.0]]), "b": torch.tensor([[1.0, 1.0], [0.0, 1.0]])},
        "b": {"a": torch.tensor([[0.0, 4.0], [5.0, 5.0]]), "b": torch.tensor([[1.0, 0.0], [0.0, 0.0]])},
    }
    codes = {"a": SparseCode(torch.tensor([[0, 1, 2]] * 2), torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), 4),
             "b": SparseCode(torch.tensor([[0, 1, 2]] * 2), torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 3.0]]), 4)}
    acc = ReconstructionAccumulator(["a", "b"])
    acc.update(x, codes, recons)
    r = acc.result()
    # a ← a: row 0 ‖(0, −4)‖² / ‖(3, 4)‖² = 16/25; row 1 has ‖x_a‖ = 0: left out (and counted).
    assert r.nmse["a"] == pytest.approx(16 / 25) and r.zero_rows["a"] == 1
    # b ← b: row 0 ‖(0, 0)‖² / 1 = 0; row 1 ‖(0, −2)‖² / 4 = 1 → mean 0.5.
    assert r.nmse["b"] == pytest.approx(0.5)
    # a ← b (target a, source b): row 0 ‖(−3, 0)‖² / 25 = 9/25.
    assert r.cross_nmse("a", "b") == pytest.approx(9 / 25)
    # b ← a: row 0 ‖(0, 1)‖² / 1 = 1; row 1 ‖(0, −1)‖² / 4 = 1/4 → mean 5/8.
    assert r.cross_nmse("b", "a") == pytest.approx(5 / 8)
    # L0 counts nonzero entries, not the k = 3 slots: a → (2 + 0) / 2 = 1; b → (3 + 2) / 2.
    assert r.l0 == {"a": 1.0, "b": 2.5}


def test_all_zero_stream_gives_nan():
    acc = ReconstructionAccumulator(["a"])
    acc.update({"a": torch.zeros(2, 2)}, {"a": SparseCode(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1), 4)},
               {"a": {"a": torch.ones(2, 2)}})
    assert math.isnan(acc.result().nmse["a"]) and acc.result().zero_rows["a"] == 2
