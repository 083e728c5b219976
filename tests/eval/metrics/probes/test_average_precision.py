"""Average precision: by hand, with ties, and against scikit-learn."""

import math

import numpy as np
import pytest
import torch

from sparc.eval.metrics.probes.average_precision import average_precision, macro_average_precision


def test_by_hand():
    s = torch.tensor([[0.9], [0.8], [0.7]])
    y = torch.tensor([[True], [False], [True]])
    # Positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    assert average_precision(s, y).item() == pytest.approx(5 / 6)
    # All three tied: one threshold with precision 2/3 for both positives.
    assert average_precision(torch.ones(3, 1), y).item() == pytest.approx(2 / 3)
    assert math.isnan(average_precision(s, torch.zeros(3, 1, dtype=torch.bool)).item())


def test_matches_sklearn_with_ties():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, size=(200, 9)).astype(np.float32)
    y = rng.random((200, 9)) < 0.2
    ap = average_precision(torch.from_numpy(s), torch.from_numpy(y), class_chunk=4).numpy()
    ref = [sklearn.average_precision_score(y[:, c], s[:, c]) for c in range(9)]
    assert ap == pytest.approx(ref, abs=1e-12)
    assert macro_average_precision(torch.from_numpy(s), torch.from_numpy(y)) == pytest.approx(np.mean(ref))
