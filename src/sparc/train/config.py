"""Training settings. Defaults are the paper's (docs/method.md §3)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from sparc.errors import SparcError
from sparc.jsonio import from_json
from sparc.model.config import SPARCConfig

PreBiasInit = Literal["zero", "mean", "median"]


def check_pre_bias_init(method: str) -> None:
    """SparcError unless ``method`` is one of :data:`PreBiasInit`."""
    if method not in get_args(PreBiasInit):
        raise SparcError(f"pre_bias_init must be 'zero', 'mean' or 'median', got {method!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a SPARC model."""

    batch_size: int = 256
    """Rows per training step."""

    lr: float = 1e-4
    """Adam learning rate (no schedule, no weight decay, as the paper)."""

    adam_eps: float = 1e-8
    """Adam epsilon."""

    epochs: int = 50
    """Passes over the training split."""

    max_steps: int | None = None
    """Stop after this many steps in all (overrides epochs when reached first)."""

    seed: int = 42
    """Seed of the initialisation, the batch order and dead-latent resampling."""

    device: str = "cpu"
    """Torch device to train on: cpu, cuda, cuda:1, ..."""

    autocast: bool = False
    """Run each training forward under bfloat16 autocast: the dense encoder products in bf16; weights, Adam state, sparse kernels and losses stay float32. The chosen latents and their code values come from bf16 logits (the gradients are the float32 product's); off, the certified selection gets the bf16 speed with float32's choice and values (docs/method.md §4.3)."""

    checkpoint_every: int = 1000
    """Write a resumable checkpoint every this many steps (0: only at the end)."""

    log_every: int = 10
    """Append training metrics to metrics.jsonl every this many steps."""

    validate: bool = True
    """Measure the losses on the validation split after every epoch."""

    pre_bias_init: PreBiasInit = "mean"
    """Start each stream's pre-bias at the 'mean' (the default) or geometric 'median' of the first training batch, or at 'zero' (the original's; --preset original). On features with a large common direction (E5, CNN pools) the zero start leaves most latents unselectable (docs/method.md §3.2)."""

    resample_after_samples: int | None = 2_560_000
    """Re-initialise a latent of a stream once it has been dead there for this many samples (10× the AuxK threshold, so AuxK gets its chance first). None: never."""

    resample_every: int = 100
    """Check for latents to re-initialise every this many steps."""

    resample_std: float = 0.01
    """Standard deviation of the re-initialised encoder rows (the original's)."""

    tensorboard: bool = False
    """Also log to TensorBoard (RUN/tensorboard; needs the tensorboard package)."""

    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs the wandb package)."""

    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SparcError(f"batch_size must be at least 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SparcError(f"lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise SparcError(f"adam_eps must be a positive number, got {self.adam_eps}")
        if not (math.isfinite(self.resample_std) and self.resample_std > 0):
            raise SparcError(f"resample_std must be a positive number, got {self.resample_std}")
        if self.resample_after_samples is not None and self.resample_after_samples < 1:
            raise SparcError(f"resample_after_samples must be at least 1 (or None), got {self.resample_after_samples}")
        if self.epochs < 1:
            raise SparcError(f"epochs must be at least 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise SparcError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.checkpoint_every < 0 or self.log_every < 1 or self.resample_every < 1:
            raise SparcError("checkpoint_every must be >= 0, log_every and resample_every >= 1")
        check_pre_bias_init(self.pre_bias_init)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS = ("original",)
"""``sparc train --preset``: named sets of settings."""

ORIGINAL_DEAD_STEPS = 1000
"""The authors' code: a latent is dead (feeds AuxK, and is re-initialised) after 1,000 steps without firing."""


def apply_preset(name: str, model: SPARCConfig, train: TrainConfig) -> tuple[SPARCConfig, TrainConfig]:
    """The settings of ``model`` and ``train`` under preset ``name``; a one-line error
    where a setting given contradicts it.

    ``original``: every setting of the authors' code — the pre-bias starts at zero, a
    latent is dead after 1,000 steps (``dead_after_samples`` = 1,000 × batch size) and is
    re-initialised at that same threshold; the methods are the paper's (sparc, local,
    no-cross). What no setting expresses is listed in docs/method.md, "Departures from
    the original"."""
    if name not in PRESETS:
        raise SparcError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if model.method not in ("sparc", "local", "no-cross"):
        raise SparcError(f"--preset original is the authors' code, which trains the methods sparc, local and no-cross, "
                         f"not {model.method!r}")
    dead = ORIGINAL_DEAD_STEPS * train.batch_size
    defaults_m, defaults_t = SPARCConfig(), TrainConfig()
    if train.pre_bias_init not in ("zero", defaults_t.pre_bias_init):
        raise SparcError(f"--preset original starts the pre-bias at zero; drop --pre-bias-init {train.pre_bias_init}")
    if model.dead_after_samples not in (dead, defaults_m.dead_after_samples):
        raise SparcError(f"--preset original counts a latent dead after 1,000 steps ({dead:,} samples at batch "
                         f"{train.batch_size}); drop --dead-after-samples")
    if train.resample_after_samples not in (dead, defaults_t.resample_after_samples):
        raise SparcError("--preset original re-initialises latents at the dead threshold; drop --resample-after-samples")
    return (replace(model, dead_after_samples=dead),
            replace(train, pre_bias_init="zero", resample_after_samples=dead))

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, what: str = "training config") -> TrainConfig:
        """Read a config written by :meth:`to_dict` (the rule of :mod:`sparc.jsonio`)."""
        return from_json(cls, d, what=what)
