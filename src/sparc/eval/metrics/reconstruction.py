"""NMSE, cross-reconstruction NMSE and L0 (docs/method.md §5.1), accumulated chunk by chunk."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from sparc.eval.results import CrossNMSE, Reconstruction
from sparc.model import SparseCode, row_nmse


class ReconstructionAccumulator:
    """Sums of per-row NMSE for every (target, source) pair and of nonzero code entries.

    NMSE is ``mean over rows of ‖x̂ − x‖² / ‖x‖²`` (docs/method.md §2.1); rows with ‖x‖ = 0 are left
    out and counted. L0 counts the NONZERO entries of a code, not its mask size k.
    """

    def __init__(self, streams: Sequence[str]):
        self.streams = list(streams)
        S = len(self.streams)
        self._sum = np.zeros((S, S))  # [target, source]
        self._rows = np.zeros(S, dtype=np.int64)  # rows with ‖x_t‖ > 0
        self._zero = np.zeros(S, dtype=np.int64)
        self._l0 = np.zeros(S)
        self._n = 0

    def update(self, x: Mapping[str, Tensor], codes: Mapping[str, SparseCode],
               recons: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Add one chunk.

        Parameters
        ----------
        x
            Stream → inputs [B, d].
        codes
            Stream → its code.
        recons
            Source stream → target stream → the source's code decoded into the target
            [B, d_target] (:meth:`SPARC.decode_all`).
        """
        for t, target in enumerate(self.streams):
            x_t = x[target]
            ok = x_t.pow(2).sum(1) > 0
            for s, source in enumerate(self.streams):
                per_row = row_nmse(recons[source][target], x_t).double()
                self._sum[t, s] += float(torch.where(ok, per_row, 0.0).sum())
            n_ok = int(ok.sum())
            self._rows[t] += n_ok
            self._zero[t] += ok.numel() - n_ok
        for s, source in enumerate(self.streams):
            self._l0[s] += codes[source].l0().sum().item()
        self._n += next(iter(x.values())).shape[0]

    def result(self) -> Reconstruction:
        mean = self._sum / np.where(self._rows > 0, self._rows, 1)[:, None]
        mean[self._rows == 0] = math.nan
        S = self.streams
        return Reconstruction(
            nmse={s: float(mean[i, i]) for i, s in enumerate(S)},
            cross=[CrossNMSE(t, s, float(mean[i, j]))
                   for i, t in enumerate(S) for j, s in enumerate(S) if i != j],
            l0={s: float(self._l0[i] / self._n) if self._n else math.nan for i, s in enumerate(S)},
            zero_rows={s: int(self._zero[i]) for i, s in enumerate(S)},
        )
