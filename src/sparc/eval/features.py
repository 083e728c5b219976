"""The features of evaluated rows, read from a store's memory-mapped arrays."""

from __future__ import annotations

import numpy as np
import torch

from sparc.data import FeatureStore
from sparc.data.gather import read_rows
from sparc.data.normalize import l2_normalize


def read_features(features: np.ndarray, rows: np.ndarray, *, normalize: bool = True) -> torch.Tensor:
    """float32 features of the sorted store ``rows``, a CPU tensor of its own.

    ``normalize`` scales each row to unit L2 norm: what the model expects from a store
    written without normalisation (docs/method.md §1.6), and what cosine scores need."""
    x = read_rows(features, rows).astype(np.float32)
    return torch.from_numpy(l2_normalize(x) if normalize else x)


def model_inputs(store: FeatureStore, stream: str, rows: np.ndarray) -> torch.Tensor:
    """The features of the sorted store ``rows`` as the model takes them: unit L2 norm,
    normalised here only when the store was written without it."""
    return read_features(store.features(stream), rows, normalize=not store.normalized)
