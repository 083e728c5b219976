"""The 1D probe: the logistic fit against scikit-learn, selection without the test rows."""

import numpy as np
import pytest
import torch

from sparc.eval.labels import label_matrix
from sparc.eval.metrics.probes.one_d import balanced, fit_logistic_1d, log_loss, one_d_probe
from sparc.model import SparseCode


def test_logistic_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(3, 80)))
    y = (rng.random(80) < 0.5).astype(float)
    x[1] += 2 * y  # informative
    x[2] = y * 3.0  # separable: only the L2 term keeps w finite
    w, b = fit_logistic_1d(x, y)
    for i in range(3):
        ref = linear_model.LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(x[i][:, None], y)
        assert w[i] == pytest.approx(ref.coef_[0, 0], rel=1e-5, abs=1e-6)
        assert b[i] == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-6)
    ll = log_loss(x, y, w, b)
    metrics = pytest.importorskip("sklearn.metrics")
    p = 1 / (1 + np.exp(-(w[1] * x[1] + b[1])))
    assert ll[1] == pytest.approx(metrics.log_loss(y, p), rel=1e-9)


def test_balanced_sets():
    rng = np.random.default_rng(0)
    positive = np.array([True] * 3 + [False] * 10)
    rows, y = balanced(positive, rng)
    assert y.sum() == 3 and len(rows) == 6 and positive[rows[:3]].all() and not positive[rows[3:]].any()
    rows, y = balanced(~positive, rng)  # more positives than negatives: positives subsampled
    assert len(rows) == 6 and y.sum() == 3


def make(n, informative, rng, n_latents=10):
    """Codes with 2 slots: latent ``informative`` fires on positives (if given), plus noise."""
    y = rng.random(n) < 0.5
    idx = np.stack([np.where(y, informative, 9), rng.integers(0, 8, n)], 1)
    val = np.stack([np.where(y, rng.uniform(1, 2, n), rng.uniform(0, 1, n)), rng.uniform(0, 1, n)], 1)
    code = SparseCode(torch.from_numpy(idx), torch.from_numpy(val).float(), n_latents)
    return code, label_matrix([["cls"] if p else ["other"] for p in y], names=["cls", "other"])


def test_chooses_the_informative_latent_on_train_and_val_only():
    rng = np.random.default_rng(0)
    fit, y_fit = make(300, 3, rng)
    sel, y_sel = make(100, 3, rng)
    rep, y_rep = make(100, 3, rng)
    res = one_d_probe("s", fit, y_fit, sel, y_sel, rep, y_rep, min_positives=50, n_candidates=4)
    by = {c.label: c for c in res.classes}
    assert by["cls"].latent == 3 and by["cls"].log_loss < 0.3
    # Test rows whose informative latent is another one do not change the choice (no
    # selection on test), they only make the test loss bad.
    rep2, y_rep2 = make(100, 5, np.random.default_rng(1))
    res2 = one_d_probe("s", fit, y_fit, sel, y_sel, rep2, y_rep2, min_positives=50, n_candidates=4)
    c2 = {c.label: c for c in res2.classes}["cls"]
    assert c2.latent == 3 and c2.log_loss > by["cls"].log_loss
    # Classes need MORE than min_positives train positives.
    n_pos = int(y_fit.positives()[0])
    assert one_d_probe("s", fit, y_fit, sel, y_sel, rep, y_rep, min_positives=n_pos).n_classes == 1  # "other"
