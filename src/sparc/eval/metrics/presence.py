"""Stream presence of the latents (docs/method.md §5.9): in which streams each latent is
used when every stream is encoded alone, and the taxonomy shared / mostly one stream /
one stream only / dead.

The inputs are the independent encoding's per-stream firing counts and summed
activations [S, L] (:class:`~sparc.eval.metrics.dead_latents.FiringCounter`, accumulated
chunk by chunk), so nothing here grows with the number of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparc.eval.results import PRESENCE_CLASSES, LatentPresence, stream_shares
from sparc.eval.settings import EvalSettings

SIGNIFICANT = 7
"""Significant digits the summed activations keep in eval.json (float32's precision)."""


def round_significant(x: np.ndarray, digits: int = SIGNIFICANT) -> list[float]:
    """``x`` as Python floats with ``digits`` significant digits (short in JSON)."""
    return [float(f"{v:.{digits}g}") for v in x.tolist()]


def classify(share: np.ndarray, mostly: float, only: float) -> tuple[np.ndarray, np.ndarray]:
    """(class index into :data:`~sparc.eval.results.PRESENCE_CLASSES` [L], main stream [L]) from the
    shares [S, L] (NaN columns: dead latents)."""
    dead = np.isnan(share).all(0)
    filled = np.where(np.isnan(share), -1.0, share)
    main = filled.argmax(0)  # the first stream on a tie
    top = filled.max(0)
    cls = np.where(dead, 3, np.where(top >= only, 2, np.where(top >= mostly, 1, 0)))
    return cls, main


def latent_presence(counts: np.ndarray, activation: np.ndarray, streams: Sequence[str],
                    settings: EvalSettings) -> LatentPresence:
    """The presence of every latent from the independent encoding's firing ``counts`` and
    summed ``activation`` [S, L], classified as ``settings`` says.

    The activations are rounded to :data:`SIGNIFICANT` digits first and the classes
    taken from the rounded values, so eval.json's classes are those its own values give."""
    streams = list(streams)
    act = np.array([round_significant(a) for a in activation], dtype=np.float64).reshape(activation.shape)
    totals = counts.astype(np.float64) if settings.presence_basis == "firing" else act
    cls, main = classify(stream_shares(totals), settings.presence_mostly, settings.presence_only)
    return LatentPresence(
        basis=settings.presence_basis,
        shared=int((cls == 0).sum()),
        mostly={s: int(((cls == 1) & (main == i)).sum()) for i, s in enumerate(streams)},
        only={s: int(((cls == 2) & (main == i)).sum()) for i, s in enumerate(streams)},
        dead=int((cls == 3).sum()),
        fires={s: counts[i].tolist() for i, s in enumerate(streams)},
        activation={s: act[i].tolist() for i, s in enumerate(streams)},
        classes=[PRESENCE_CLASSES[c] for c in cls.tolist()],
        main_stream=["" if c == 3 else streams[m] for c, m in zip(cls.tolist(), main.tolist())],
    )
