"""Multi-label probe and its group-aware row sets."""

import numpy as np
import pytest
import torch

from sparc.eval.probes import fit_multilabel_probe
from sparc.eval.probing import probe_row_sets
from sparc.eval.sampling import sample_groups
from sparc.eval.settings import EvalSettings
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


def test_group_samples_keep_whole_groups():
    groups = np.repeat(np.arange(50), 3)  # 50 groups of 3 rows
    rows = np.arange(150) + 1000
    got = sample_groups(rows, groups, cap=40, seed=0)
    assert len(got) <= 40 and len(got) % 3 == 0
    taken = groups[got - 1000]
    for g in np.unique(taken):
        assert (taken == g).sum() == 3  # no group is cut
    assert np.array_equal(sample_groups(rows, groups, 0, 0), rows)


def test_probe_row_sets_have_no_group_leakage(store):
    meta = store.rows()
    fit, sel, rep = probe_row_sets(meta, store.split_rows("train"), store.split_rows("val"),
                                   store.split_rows("test"), EvalSettings(probe_fit_rows=60, probe_select_rows=20))
    assert len(fit) <= 60 and len(sel) <= 20 and len(rep) == len(store.split_rows("test"))
    g = [{meta[r].group_id for r in rows} for rows in (fit, sel, rep)]
    assert not (g[0] & g[1]) and not (g[0] & g[2]) and not (g[1] & g[2])
    # Every sampled group is complete: all its rows in the split are in the sample.
    for rows, split in ((fit, "train"), (sel, "val")):
        chosen = {meta[r].group_id for r in rows}
        full = [r for r in store.split_rows(split) if meta[r].group_id in chosen]
        assert sorted(full) == sorted(rows.tolist())
