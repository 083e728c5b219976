"""The features of evaluated rows, read from a store's memory-mapped arrays, and their
encodings chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from sparc.data import FeatureStore
from sparc.data.gather import read_rows
from sparc.data.normalize import l2_normalize
from sparc.model import SPARC, SparseCode


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


@dataclass(frozen=True)
class EncodedChunk:
    """One chunk of rows through the model: both encodings from one encoder pass."""

    start: int
    stop: int
    """The chunk's place among the encoded rows: ``rows[start:stop]``."""
    inputs: dict[str, torch.Tensor]
    """Per stream, the model's inputs for the chunk (on the model's device)."""
    joint: dict[str, SparseCode]
    """The model's own top-k (for a ``local`` model: the independent codes)."""
    independent: dict[str, SparseCode]
    """Each stream's own top-k."""


def encode_in_chunks(model: SPARC, store: FeatureStore, streams: Sequence[str], rows: np.ndarray,
                     chunk_rows: int, device: torch.device, *, progress: bool, desc: str) -> Iterator[EncodedChunk]:
    """The sorted store ``rows`` encoded ``chunk_rows`` at a time, in order, with a
    progress bar (``desc``) when ``progress``."""
    local = model.joint_is_independent
    n = len(rows)
    with tqdm(total=n, disable=not progress, desc=desc, unit="row", unit_scale=True, dynamic_ncols=True) as bar:
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            x = {s: model_inputs(store, s, rows[a:b]).to(device) for s in streams}
            # One encoder pass serves both encodings (docs/method.md §5).
            logits = model.logits(x)
            independent = model.select(logits, alone=True)
            yield EncodedChunk(a, b, x, independent if local else model.select(logits), independent)
            bar.update(b - a)
