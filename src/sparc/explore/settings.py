"""The settings of exploring a run — the statistics pass and the naming — kept apart from
the code that computes them so that the ``sparc`` command reads them without loading
PyTorch (sparc/lazy.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sparc.errors import SparcError, require_at_least
from sparc.jsonio import to_json

Encoding = Literal["joint", "independent"]
ENCODINGS: tuple[Encoding, ...] = ("joint", "independent")
"""The two ways a run's codes are read: all streams together, or each stream alone."""


@dataclass(frozen=True)
class StatsSettings:
    """What the statistics pass keeps. Saved with the statistics; changing any field
    but ``chunk_rows``, ``device`` and ``progress`` recomputes them."""

    split: str = "all"
    """Split of the store to compute the statistics on (train, val, test or all; exploring reads every row by default, as the report does; 'sparc eval' keeps the held-out test split)."""

    top: int = 50
    """Top activating rows kept per latent, stream and encoding (the naming protocol reads the top 50)."""

    quantile_bins: int = 10
    """Activation quantile bins per latent and stream (rows sampled from across the activation range)."""

    per_bin: int = 5
    """Rows kept per quantile bin."""

    seed: int = 0
    """Seed of the sample of firing rows."""

    chunk_rows: int = 2048
    """Rows encoded at a time (memory grows with it: chunk_rows × n_latents × 4 bytes × streams)."""

    device: str = "cpu"
    """Torch device of the model."""

    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "top", "quantile_bins", "per_bin", "chunk_rows")
        from sparc.data.splits import Split

        Split.parse(self.split)

    def identity(self) -> dict:
        """The fields that change the statistics."""
        from sparc.data.splits import Split

        return {"split": str(Split.parse(self.split)), "top": self.top, "quantile_bins": self.quantile_bins,
                "per_bin": self.per_bin, "seed": self.seed}


@dataclass(frozen=True)
class NamingSettings:
    """How latents are named."""

    encoding: Encoding = "joint"
    """Codes whose top rows name the latents: joint (all streams together, the original's protocol) or independent (each stream alone)."""

    top: int = 50
    """Top labelled rows per latent and stream that vote for its name."""

    min_purity: float = 0.3
    """Accept a name when at least this fraction of those rows carry it."""

    labels: Literal["given", "specific"] = "given"
    """given: every label of a row votes (the original); specific: not the labels that are ancestors of the row's other labels."""

    text_stream: str | None = None
    """Text stream the vocabulary goes through (default: the first text stream)."""

    vocabulary: Path | None = None
    """A word list (one entry a line) instead of the store's label names and the captions outside the split."""

    words: int = 5
    """Vocabulary entries kept per latent."""

    backbone: str | None = None
    """FAMILY[:key=value,...] of the text stream's backbone, when its options cannot be read from the store's fingerprint."""

    device: str = "cpu"
    """Torch device of the text stream's backbone."""

    def __post_init__(self) -> None:
        if self.top < 1 or self.words < 1:
            raise SparcError("top and words must be at least 1")
        if not 0 <= self.min_purity <= 1:
            raise SparcError(f"min_purity must be between 0 and 1, got {self.min_purity}")
        if self.encoding not in ("joint", "independent"):
            raise SparcError(f"encoding must be joint or independent, got {self.encoding!r}")

    def identity(self) -> dict:
        out = to_json(self)
        out.pop("device")
        if self.vocabulary is not None:
            try:
                out["vocabulary_sha256"] = hashlib.sha256(Path(self.vocabulary).read_bytes()).hexdigest()
            except OSError as e:
                raise SparcError(f"cannot read the vocabulary {self.vocabulary}: {e.strerror or e}") from None
        return out
