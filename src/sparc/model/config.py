"""Hyperparameters of a SPARC model (the stream dimensions come from the data)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sparc.errors import SparcError
from sparc.jsonio import from_json

TopK = Literal["global", "local"]
"""The selection rules of :mod:`sparc.model.selection`, as the CLI lists them."""


@dataclass(frozen=True)
class SPARCConfig:
    """Architecture and loss of a SPARC model. Defaults are the paper's."""

    n_latents: int = 8192
    """Number of latents L, shared by every stream."""

    k: int = 64
    """Active latents per sample (TopK)."""

    topk: TopK = "global"
    """'global': one set of k latents per sample, chosen from the summed logits of the streams present (SPARC). 'local': each stream chooses its own k (the baseline)."""

    auxk: int = 64
    """k_aux: latents of the auxiliary loss, chosen among each stream's dead latents (0 turns the auxiliary loss off)."""

    auxk_coef: float = 1 / 32
    """Weight of the auxiliary (AuxK) loss."""

    cross_coef: float = 1.0
    """Weight of the cross-reconstruction loss (0 gives the 'no cross' ablation)."""

    fire_threshold: float = 1e-3
    """A latent fires on a sample when its code value exceeds this."""

    dead_after_samples: int = 256_000
    """A latent is dead in a stream once it has not fired there for this many training samples (256,000 = the original's 1,000 steps at batch 256). Dead latents feed AuxK."""

    def __post_init__(self) -> None:
        if self.n_latents < 2:
            raise SparcError(f"n_latents must be at least 2, got {self.n_latents}")
        if not 1 <= self.k < self.n_latents:
            raise SparcError(
                f"k must satisfy 1 <= k < n_latents ({self.n_latents}), got k={self.k}; "
                "pick a smaller k or more latents"
            )
        from sparc.model.selection import selection_rule  # the registered rules (docs/architecture.md)

        selection_rule(self.topk)
        if self.auxk < 0:
            raise SparcError(f"auxk must be non-negative, got {self.auxk}")
        for name in ("auxk_coef", "cross_coef", "fire_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SparcError(f"{name} must be a non-negative number, got {value}")
        if self.dead_after_samples < 1:
            raise SparcError("dead_after_samples must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, what: str = "model config") -> SPARCConfig:
        """Read a config written by :meth:`to_dict` (the rule of :mod:`sparc.jsonio`)."""
        return from_json(cls, d, what=what)
