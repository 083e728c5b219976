"""Average precision per class, vectorised over classes (equal to scikit-learn's).

``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct score thresholds in decreasing order.
Tied scores form one threshold, so a positive scoring s gets the precision
``#{positives scoring ≥ s} / #{rows scoring ≥ s}``, and AP is the mean of that over the
positives: the result does not depend on the order of tied rows. After one sort per
class, only the positives are touched (two binary searches each).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def average_precision(scores: Tensor, labels: Tensor, *, class_chunk: int = 128) -> Tensor:
    """AP of every column: ``scores`` float [n, C], ``labels`` bool [n, C] → float64 [C]
    (NaN for a class without positives)."""
    n, C = scores.shape
    out = torch.full((C,), math.nan, dtype=torch.float64)
    if n == 0:
        return out
    for a in range(0, C, class_chunk):
        # One class per row, contiguous; keys ascending = scores descending.
        key, order = (-scores[:, a:a + class_chunk].t()).contiguous().sort(dim=1)
        y = labels[:, a:a + class_chunk].t().gather(1, order)
        n_pos = y.sum(1)
        if int(n_pos.max()) == 0:
            continue
        # Keys of each class's positives, in order, padded with +inf to a rectangle.
        r, i = y.nonzero(as_tuple=True)
        slot = torch.arange(len(r), device=r.device) - (n_pos.cumsum(0) - n_pos)[r]
        pos_key = key.new_full((key.shape[0], int(n_pos.max())), math.inf)
        pos_key[r, slot] = key[r, i]
        at_or_above = torch.searchsorted(key, pos_key, right=True)      # rows scoring ≥ s
        pos_above = torch.searchsorted(pos_key, pos_key, right=True)   # positives scoring ≥ s
        valid = torch.isfinite(pos_key)
        precision = torch.where(valid, pos_above.double() / at_or_above.clamp_min(1).double(), 0.0)
        ap = precision.sum(1) / n_pos.double()
        out[a:a + class_chunk] = torch.where(n_pos > 0, ap, math.nan).cpu()
    return out


def macro_average_precision(scores: Tensor, labels: Tensor) -> float:
    """Mean AP over the classes that have at least one positive (NaN if none has)."""
    ap = average_precision(scores, labels)
    ap = ap[~ap.isnan()]
    return float(ap.mean()) if len(ap) else math.nan
