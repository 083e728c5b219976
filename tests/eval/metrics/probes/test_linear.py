"""The multi-label linear probe learns informative features and not noise."""

import pytest
import torch

from sparc.eval.metrics.probes.linear import fit_multilabel_probe
from sparc.model import SparseCode


def test_probe_learns_informative_features_and_not_noise():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(600, 3, generator=gen) < 0.3
    informative = y.float() * 2 + 0.3 * torch.randn(600, 3, generator=gen)
    noise = torch.randn(600, 3, generator=gen)
    kw = dict(epochs=15, batch_size=64, lr=1e-2, seed=0)
    good = fit_multilabel_probe(informative[:400], y[:400], informative[400:500], y[400:500],
                                informative[500:], y[500:], **kw)
    bad = fit_multilabel_probe(noise[:400], y[:400], noise[400:500], y[400:500], noise[500:], y[500:], **kw)
    assert good.report_ap > 0.95 and bad.report_ap < 0.6
    assert 1 <= good.best_epoch <= 15
    # Sparse codes take the embedding-bag path: latent c fires for class c.
    idx = torch.stack([torch.arange(3).repeat(600, 1)[i] for i in range(600)])
    code = SparseCode(idx, y.float() * 1.5, 8)
    fit = fit_multilabel_probe(SparseCode(idx[:400], code.values[:400], 8), y[:400],
                               SparseCode(idx[400:500], code.values[400:500], 8), y[400:500],
                               SparseCode(idx[500:], code.values[500:], 8), y[500:], **kw)
    assert fit.report_ap == pytest.approx(1.0)
