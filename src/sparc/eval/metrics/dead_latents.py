"""Dead latents (docs/method.md §5.4): how often each latent fires per stream, the latents
that never fire and their patterns across streams."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparc.eval.results import DeadLatents, FiringHistogram
from sparc.model import SparseCode


class FiringCounter:
    """Rows on which each latent fires (value > 0), per stream: int64 [S, L] ``counts``;
    and its summed activation, float64 [S, L] ``activation`` (the stream presence of §5.9)."""

    def __init__(self, streams: Sequence[str], n_latents: int):
        self.streams = list(streams)
        self.counts = np.zeros((len(self.streams), n_latents), dtype=np.int64)
        self.activation = np.zeros((len(self.streams), n_latents), dtype=np.float64)
        self.n_rows = 0

    def update(self, codes: dict[str, SparseCode]) -> None:
        for s, name in enumerate(self.streams):
            code = codes[name]
            on = code.values > 0
            fired = code.indices[on]
            self.counts[s] += torch.bincount(fired, minlength=self.counts.shape[1]).cpu().numpy()
            # Summed on the CPU in float64, in row order: the same sums on every device.
            self.activation[s] += torch.bincount(fired.cpu(), weights=code.values[on].cpu().double(),
                                                 minlength=self.counts.shape[1]).numpy()
        self.n_rows += next(iter(codes.values())).indices.shape[0]

    def dead(self) -> DeadLatents:
        return dead_latents(self.counts, self.streams)

    def histogram(self, bins_per_decade: int = 4) -> FiringHistogram:
        return firing_histogram(self.counts, self.n_rows, self.streams, bins_per_decade)


def dead_latents(counts: np.ndarray, streams: Sequence[str]) -> DeadLatents:
    """Dead latents per stream and the patterns across streams, from firing counts [S, L]."""
    dead = counts == 0
    n_dead = dead.sum(0)
    S = len(streams)
    return DeadLatents(
        n_latents=int(counts.shape[1]),
        dead={s: int(dead[i].sum()) for i, s in enumerate(streams)},
        dead_in_all=int((n_dead == S).sum()),
        dead_in_some=int(((n_dead > 0) & (n_dead < S)).sum()),
        alive_in_all=int((n_dead == 0).sum()),
    )


def firing_histogram(counts: np.ndarray, n_rows: int, streams: Sequence[str],
                     bins_per_decade: int = 4) -> FiringHistogram:
    """Latents per log-spaced bin of firing fraction, from 1/n_rows up to 1."""
    decades = max(1, int(np.ceil(np.log10(max(n_rows, 2)))))
    edges = np.logspace(-decades, 0, decades * bins_per_decade + 1)
    out = {}
    for i, s in enumerate(streams):
        frac = counts[i][counts[i] > 0] / max(n_rows, 1)
        out[s] = np.histogram(frac, bins=edges)[0].tolist()
    return FiringHistogram(edges=edges.tolist(), counts=out)
