"""Hyperparameters of a SPARC model (the stream dimensions come from the data)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from sparc.errors import SparcError
from sparc.jsonio import from_json

TopK = Literal["global", "local", "batch-global", "batch-local"]
"""The selection rules of :mod:`sparc.model.selection`, as the CLI lists them."""


@dataclass(frozen=True)
class SPARCConfig:
    """Architecture and loss of a SPARC model. Defaults are the paper's."""

    n_latents: int = 8192
    """Number of latents L, shared by every stream."""

    k: int = 64
    """Active latents per sample (TopK; BatchTopK: on average over the batch)."""

    method: str | None = None
    """The method (docs/method.md §1.8-1.10): sparc (global TopK + cross loss), local (local TopK + cross loss), no-cross (global TopK, cross_coef 0), batchtopk (BatchTopK of the summed logits), batchtopk-local (BatchTopK per stream), matryoshka (nested prefixes on SPARC's rules), usae (per step one stream drawn at random, encoded by its own TopK, decodes every stream; the NMSE summed over the targets). Default: the method --topk, --cross-coef and --matryoshka make (sparc)."""

    topk: TopK | None = None
    """The selection rule. 'global': one set of k latents per sample, chosen from the summed logits of the streams present (SPARC). 'local': each stream chooses its own k (the baseline). 'batch-global' / 'batch-local': BatchTopK. Default: the method's."""

    auxk: int = 64
    """k_aux: latents of the auxiliary loss, chosen among each stream's dead latents (0 turns the auxiliary loss off)."""

    auxk_coef: float = 1 / 32
    """Weight of the auxiliary (AuxK) loss."""

    cross_coef: float | None = None
    """Weight of the cross-reconstruction loss. Default: the method's (1; 0 for no-cross)."""

    matryoshka: tuple[int, ...] = ()
    """Matryoshka's nested prefix sizes in latents, growing and ending at n_latents (e.g. 512 2048 8192). Default with --method matryoshka: L/16, L/4, L."""

    exclusive: tuple[str, ...] = ()
    """Stream-exclusive latents, STREAM:N each (e.g. dino:12 clip:12): N latents of that stream only, their encoder and decoder rows exactly zero in every other stream (docs/method.md §1.11); the last latents of the dictionary. The shared latents keep the method's rules."""

    threshold_decay: float = 0.999
    """BatchTopK: decay of the running estimate of the inference threshold (the smallest positive score a training batch keeps)."""

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
        from sparc.model.methods import resolve  # the registered methods (docs/architecture.md)

        # The method fixes the settings that make it (its rule, cross loss, prefixes):
        # filled here, so a config always holds them as the model uses them.
        for name, value in zip(("method", "topk", "cross_coef", "matryoshka"), resolve(self)):
            object.__setattr__(self, name, value)
        from sparc.model.exclusive import parse

        object.__setattr__(self, "exclusive", tuple(str(e) for e in self.exclusive))
        if parse(self.exclusive, self.n_latents) and self.matryoshka:
            raise SparcError("--exclusive does not go with --method matryoshka yet; drop one of them")
        if not (math.isfinite(self.threshold_decay) and 0 <= self.threshold_decay < 1):
            raise SparcError(f"threshold_decay must be in [0, 1), got {self.threshold_decay}")
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

    def with_method(self, method: str) -> SPARCConfig:
        """This config under another method: its own settings kept, the method's filled afresh."""
        return replace(self, method=method, topk=None, cross_coef=None if self.method == "no-cross" or method == "no-cross"
                       else self.cross_coef, matryoshka=())

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, what: str = "model config") -> SPARCConfig:
        """Read a config written by :meth:`to_dict` (the rule of :mod:`sparc.jsonio`)."""
        return from_json(cls, d, what=what)
