"""Multi-label linear probe: how much label information a representation carries.

One linear layer with a sigmoid per class, trained with binary cross-entropy and Adam
on the fit rows; the epoch with the lowest cross-entropy on the selection rows is kept
(early stopping), and its macro average precision on the report rows is the result. Dense inputs are
standardised with the fit rows' mean and std; sparse codes are divided by the RMS of
their nonzero values (which keeps them sparse) and enter through an embedding bag, so a
probe on L = 8192 latents costs O(k) per row, not O(L).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparc.eval.metrics.probes.average_precision import macro_average_precision as macro_ap
from sparc.model import SparseCode

Inputs = Tensor | SparseCode


class ProbeFit(NamedTuple):
    report_ap: float
    select_ap: float
    """Macro AP on the selection rows at the kept epoch."""
    best_epoch: int
    """1-based epoch kept."""


def n_rows(x: Inputs) -> int:
    return x.indices.shape[0] if isinstance(x, SparseCode) else x.shape[0]


def take(x: Inputs, rows: Tensor) -> Inputs:
    if isinstance(x, SparseCode):
        return SparseCode(x.indices[rows], x.values[rows], x.n_latents)
    return x[rows]


class Standardizer:
    """Scales inputs by statistics of the fit rows (dense: per feature; sparse: one scalar)."""

    def __init__(self, fit: Inputs):
        if isinstance(fit, SparseCode):
            nz = fit.values[fit.values > 0]
            rms = nz.pow(2).mean().sqrt().item() if nz.numel() else 1.0
            self.scale = rms if rms > 0 else 1.0
            self.mean = self.std = None
        else:
            self.mean = fit.mean(0)
            self.std = fit.std(0).clamp_min(1e-6)

    def __call__(self, x: Inputs) -> Inputs:
        if isinstance(x, SparseCode):
            return SparseCode(x.indices, x.values / self.scale, x.n_latents)
        return (x - self.mean) / self.std


class LinearProbe(nn.Module):
    """``logits = x W + b`` for dense ``x`` or a sparse code."""

    def __init__(self, d_in: int, n_classes: int, prior: Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_in, n_classes))
        # Start at the class priors: the zero-information probe.
        p = prior.clamp(1e-4, 1 - 1e-4)
        self.bias = nn.Parameter(torch.log(p / (1 - p)).float())

    def forward(self, x: Inputs) -> Tensor:
        if isinstance(x, SparseCode):
            out = F.embedding_bag(x.indices, self.weight, per_sample_weights=x.values, mode="sum")
        else:
            out = x @ self.weight
        return out + self.bias


@torch.no_grad()
def predict(probe: LinearProbe, x: Inputs, batch: int = 8192) -> Tensor:
    n = n_rows(x)
    return torch.cat([probe(take(x, torch.arange(a, min(a + batch, n)))) for a in range(0, n, batch)]) \
        if n else torch.zeros(0, probe.bias.shape[0])


class TrainedProbe(NamedTuple):
    """A probe with the scaling of its inputs: ``scores(x)`` gives its logits."""

    probe: LinearProbe
    scaler: Standardizer
    best_epoch: int

    def scores(self, x: Inputs) -> Tensor:
        return predict(self.probe, self.scaler(x))


def train_probe(fit: Inputs, y_fit: Tensor, select: Inputs, y_select: Tensor, *, epochs: int, batch_size: int,
                lr: float, seed: int) -> TrainedProbe:
    """Train on ``fit`` (standardised by its own statistics), keep the epoch with the
    lowest loss on ``select``. ``y_*`` are bool [n, C] over the same classes."""
    gen = torch.Generator().manual_seed(seed)
    scaler = Standardizer(fit)
    fit, select = scaler(fit), scaler(select)
    d_in = fit.n_latents if isinstance(fit, SparseCode) else fit.shape[1]
    probe = LinearProbe(d_in, y_fit.shape[1], y_fit.float().mean(0))
    opt = torch.optim.Adam(probe.parameters(), lr=lr, fused=probe.weight.device.type in ("cpu", "cuda"))
    target = y_fit.float()
    n = n_rows(fit)
    best = (math.inf, 0, None)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen)
        with torch.enable_grad():  # callers may run under no_grad (evaluate does)
            for a in range(0, n, batch_size):
                rows = order[a:a + batch_size]
                loss = F.binary_cross_entropy_with_logits(probe(take(fit, rows)), target[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        select_loss = F.binary_cross_entropy_with_logits(predict(probe, select), y_select.float()).item()
        if select_loss < best[0] or best[2] is None:
            best = (select_loss, epoch, {k: v.detach().clone() for k, v in probe.state_dict().items()})
    probe.load_state_dict(best[2])
    return TrainedProbe(probe, scaler, best[1])


def fit_multilabel_probe(
    fit: Inputs, y_fit: Tensor, select: Inputs, y_select: Tensor, report: Inputs, y_report: Tensor,
    *, epochs: int, batch_size: int, lr: float, seed: int,
) -> ProbeFit:
    """Train on ``fit``, keep the epoch with the lowest loss on ``select``, score ``report``.

    ``y_*`` are bool [n, C] over the same classes.
    """
    trained = train_probe(fit, y_fit, select, y_select, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    return ProbeFit(report_ap=macro_ap(trained.scores(report), y_report),
                    select_ap=macro_ap(trained.scores(select), y_select), best_epoch=trained.best_epoch)
