"""The 1D probe (docs/method.md §5.6): how well does the single best latent predict a class?

For each class with more than ``min_positives`` positives among the train rows:

1. candidates: the latents with the largest gap between their mean activation on the
   class's positives and on its negatives, over the train rows;
2. each candidate gets a one-feature logistic regression (L2 on the weight with C = 1,
   free intercept: scikit-learn's default) on a balanced train set (all positives and as
   many random negatives); the one with the lowest log-loss on the balanced val set is
   chosen;
3. it is refitted on train + val and scored by its log-loss on the balanced test rows.

Selection touches only train and val rows, and the row sets are split by group, unlike
the original, which selected and split at sample level on the test set itself. A
constant guess scores ln 2 ≈ 0.693 on balanced rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sparc.eval.labels import LabelMatrix
from sparc.eval.results import OneDClass, OneDProbe
from sparc.model import SparseCode


def fit_logistic_1d(x: np.ndarray, y: np.ndarray, *, c: float = 1.0, max_iter: int = 100,
                    tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``Σ_i [softplus(z_i) − y_i z_i] + w² / (2c)``, ``z = w x + b``, for each
    row of ``x`` [m, n] against labels ``y`` [n] in {0, 1}, by damped Newton (float64,
    numpy: these problems are tiny). Returns ``(w, b)`` [m] each."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[0]
    w = np.zeros(m)
    b = np.zeros(m)

    def objective(w: np.ndarray, b: np.ndarray) -> np.ndarray:
        z = w[:, None] * x + b[:, None]
        return (np.logaddexp(0.0, z) - y * z).sum(1) + w * w / (2 * c)

    f = objective(w, b)
    for _ in range(max_iter):
        z = w[:, None] * x + b[:, None]
        p = 0.5 * (1 + np.tanh(0.5 * z))  # sigmoid without overflow
        r = p - y
        gw = (r * x).sum(1) + w / c
        gb = r.sum(1)
        h = p * (1 - p)
        hww = (h * x * x).sum(1) + 1 / c
        hwb = (h * x).sum(1)
        hbb = h.sum(1) + 1e-12
        det = hww * hbb - hwb * hwb
        dw = (hbb * gw - hwb * gb) / det
        db = (hww * gb - hwb * gw) / det
        step = np.ones(m)
        f_new = objective(w - dw, b - db)
        for _ in range(30):  # backtracking: never increase the objective
            worse = f_new > f
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
            f_new = objective(w - step * dw, b - step * db)
        w, b, f = w - step * dw, b - step * db, np.minimum(f, f_new)
        if np.abs(step * dw).max() < tol and np.abs(step * db).max() < tol:
            break
    return w, b


def log_loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean log-loss [m] of each (w, b) on feature rows ``x`` [m, n] and labels ``y`` [n]."""
    z = w[:, None] * np.asarray(x, dtype=np.float64) + b[:, None]
    return (np.logaddexp(0.0, z) - np.asarray(y, dtype=np.float64) * z).mean(1)


def columns(code: SparseCode, rows: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """float64 [len(latents), len(rows)]: the activations of ``latents`` on ``rows``."""
    idx = code.indices.numpy()[rows]
    val = code.values.numpy()[rows].astype(np.float64)
    hit = idx[None, :, :] == np.asarray(latents)[:, None, None]
    return (hit * val[None]).sum(2)


def balanced(positive: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels of a balanced set: the positives and as many random negatives (or all
    negatives and as many random positives, whichever is rarer)."""
    pos = np.flatnonzero(positive)
    neg = np.flatnonzero(~positive)
    n = min(len(pos), len(neg))
    if len(pos) > n:
        pos = np.sort(rng.choice(pos, n, replace=False))
    if len(neg) > n:
        neg = np.sort(rng.choice(neg, n, replace=False))
    rows = np.concatenate([pos, neg])
    return rows, np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])


def activation_gap(code: SparseCode, labels: LabelMatrix) -> Tensor:
    """[C, L]: mean activation of each latent on each class's positives minus on its
    negatives."""
    n, L, C = labels.n_rows, code.n_latents, labels.n_classes
    counts = labels.row_counts()
    row_of = np.repeat(np.arange(n), counts)
    # Σ over positives of c: for each (row, class) pair add the row's code.
    pair_rows = torch.from_numpy(row_of)
    idx = code.indices[pair_rows].cpu()
    val = code.values[pair_rows].double().cpu()
    cls = torch.from_numpy(labels.classes)[:, None].expand_as(idx)
    sums = torch.zeros(C * L, dtype=torch.float64)
    sums.index_add_(0, (cls * L + idx).reshape(-1), val.reshape(-1))
    sums = sums.view(C, L)
    total = torch.zeros(L, dtype=torch.float64).index_add_(
        0, code.indices.reshape(-1).cpu(), code.values.double().reshape(-1).cpu())
    n_pos = torch.from_numpy(labels.positives()).double()[:, None]
    mean_pos = sums / n_pos.clamp_min(1)
    mean_neg = (total[None] - sums) / (n - n_pos).clamp_min(1)
    return mean_pos - mean_neg


def one_d_probe(
    stream: str,
    fit: SparseCode, y_fit: LabelMatrix,
    select: SparseCode, y_select: LabelMatrix,
    report: SparseCode, y_report: LabelMatrix,
    *, min_positives: int = 50, n_candidates: int = 8, seed: int = 0,
) -> OneDProbe:
    """The 1D probe of one stream's codes; the three label matrices share their classes."""
    dense = (y_fit.dense(), y_select.dense(), y_report.dense())
    pos = [d.sum(0) for d in dense]
    eligible = np.flatnonzero((pos[0] > min_positives) & (pos[1] > 0) & (pos[2] > 0))
    results = []
    if len(eligible):
        gap = activation_gap(fit, y_fit)
        cands = gap.abs().topk(min(n_candidates, fit.n_latents), dim=1).indices.numpy()
    for c in eligible.tolist():
        rng = np.random.default_rng([seed, c])
        cand = cands[c]
        sets = [balanced(d[:, c], rng) for d in dense]
        if any(len(r) == 0 for r, _ in sets):
            continue  # a set with no negatives (every row has the class)
        (r_fit, l_fit), (r_sel, l_sel), (r_rep, l_rep) = sets
        x_fit = columns(fit, r_fit, cand)
        x_sel = columns(select, r_sel, cand)
        w, b = fit_logistic_1d(x_fit, l_fit)
        choice = int(log_loss(x_sel, l_sel, w, b).argmin())  # first of equals: largest gap
        latent = cand[choice:choice + 1]
        w, b = fit_logistic_1d(np.concatenate([x_fit[choice:choice + 1], x_sel[choice:choice + 1]], axis=1),
                               np.concatenate([l_fit, l_sel]))
        loss = log_loss(columns(report, r_rep, latent), l_rep, w, b)
        results.append(OneDClass(label=y_fit.names[c], latent=int(latent[0]), log_loss=float(loss[0]), n_test=len(r_rep)))
    mean = float(np.mean([r.log_loss for r in results])) if results else math.nan
    return OneDProbe(stream=stream, mean_log_loss=mean, n_classes=len(results), classes=results)
