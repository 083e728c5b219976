"""Per-sample active-set Jaccard (docs/method.md §5.3): do two streams of the same row use the same latents?

``A_s(i)`` is the set of nonzero latents of stream s on row i, and the score is
``|A_s ∩ A_t| / |A_s ∪ A_t|``. Under joint global-TopK encoding the candidate sets are
shared by construction, so the independent encoding (each stream alone) is the honest
test. A row where both codes are all zero scores 0 (and is counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sparc.eval.results import PairActiveSets
from sparc.model import SparseCode

N_BINS = 20


def active_set_jaccard(a: SparseCode, b: SparseCode) -> tuple[Tensor, Tensor]:
    """Per-row Jaccard of the nonzero index sets of two codes [B], and the rows where both
    are empty [B] (scored 0)."""
    on_a, on_b = a.values > 0, b.values > 0
    if a.indices is b.indices or torch.equal(a.indices, b.indices):
        # Shared selection (joint global TopK): a latent is in both sets when both are nonzero.
        inter = (on_a & on_b).sum(1)
    else:
        # Inactive slots get sentinels that never match (-1 in a, -2 in b); indices are unique
        # within a code, so each match is one latent in both sets.
        ia = torch.where(on_a, a.indices, -1)
        ib = torch.where(on_b, b.indices, -2)
        inter = (ia[:, :, None] == ib[:, None, :]).view(torch.uint8).sum((1, 2), dtype=torch.int64)
    union = on_a.sum(1) + on_b.sum(1) - inter
    empty = union == 0
    return torch.where(empty, 0.0, inter.double() / union.clamp_min(1).double()), empty


class ActiveSetAccumulator:
    """Sums and histograms of the per-sample Jaccard of every stream pair."""

    def __init__(self, streams: Sequence[str]):
        self.streams = list(streams)
        self.pairs = list(itertools.combinations(self.streams, 2))
        self._sum = np.zeros(len(self.pairs))
        self._empty = np.zeros(len(self.pairs), dtype=np.int64)
        self._hist = np.zeros((len(self.pairs), N_BINS), dtype=np.int64)
        self._n = 0

    def update(self, codes: dict[str, SparseCode]) -> None:
        for p, (a, b) in enumerate(self.pairs):
            j, empty = active_set_jaccard(codes[a], codes[b])
            j = j.cpu().numpy()
            self._sum[p] += j.sum()
            self._empty[p] += int(empty.sum())
            self._hist[p] += np.histogram(j, bins=N_BINS, range=(0.0, 1.0))[0]
        self._n += next(iter(codes.values())).indices.shape[0]

    def result(self) -> list[PairActiveSets]:
        return [
            PairActiveSets(a=a, b=b, mean=float(self._sum[p] / self._n) if self._n else float("nan"),
                           n_empty=int(self._empty[p]), histogram=self._hist[p].tolist())
            for p, (a, b) in enumerate(self.pairs)
        ]
