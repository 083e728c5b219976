"""What an edit moved, measured on the store: the store rows nearest to the features
before and after (cosine in the target stream), and the scores of a label probe trained
on the store's own, untouched features of that stream."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from sparc.data import FeatureStore
from sparc.errors import SparcError
from sparc.eval.features import model_inputs
from sparc.eval.labels import label_matrix
from sparc.eval.metrics.probes.linear import TrainedProbe, train_probe


def nearest_rows(store: FeatureStore, stream: str, x: Tensor, top: int, *, chunk: int = 8192) -> list[list[tuple[int, float]]]:
    """For each row of ``x`` [B, d]: the ``top`` store rows of ``stream`` of largest cosine."""
    q = torch.nn.functional.normalize(x.float(), dim=1)
    best_v = torch.full((q.shape[0], 0), -2.0)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
    for start in range(0, store.n_rows, chunk):
        rows = np.arange(start, min(start + chunk, store.n_rows))
        sims = q @ model_inputs(store, stream, rows).float().T
        v = torch.cat([best_v, sims], dim=1)
        i = torch.cat([best_i, torch.from_numpy(rows).expand(q.shape[0], -1)], dim=1)
        keep = v.topk(min(top, v.shape[1]), dim=1)
        best_v, best_i = keep.values, i.gather(1, keep.indices)
    return [[(int(r), float(s)) for r, s in zip(ri, vi)] for ri, vi in zip(best_i.tolist(), best_v.tolist())]


class LabelProbe(NamedTuple):
    """A multi-label probe on one stream's raw features."""

    stream: str
    names: list[str]
    trained: TrainedProbe

    def probabilities(self, x: Tensor) -> Tensor:
        """[B, C] probability of each label."""
        return torch.sigmoid(self.trained.scores(torch.nn.functional.normalize(x.float(), dim=1)))


def label_probe(store: FeatureStore, stream: str, *, epochs: int = 30, seed: int = 0) -> LabelProbe:
    """A linear probe of the store's labels on ``stream``'s features, trained on the train
    split and kept at its best epoch on val (as the evaluation's probes)."""
    meta = store.rows()
    train, val = store.split_rows("train"), store.split_rows("val")
    if not any(meta[r].labels for r in train):
        raise SparcError(f"the store's training rows carry no labels: no probe to score {stream} with")
    names = sorted({x for r in train for x in meta[r].labels})
    known = set(names)
    y = {split: torch.from_numpy(label_matrix([[x for x in meta[r].labels if x in known] for r in rows],
                                              names=names).dense())
         for split, rows in (("train", train), ("val", val if len(val) else train))}
    x = {split: model_inputs(store, stream, rows).float() for split, rows in (("train", train),
                                                                              ("val", val if len(val) else train))}
    trained = train_probe(x["train"], y["train"], x["val"], y["val"], epochs=epochs, batch_size=256, lr=1e-3,
                          seed=seed)
    return LabelProbe(stream, names, trained)
