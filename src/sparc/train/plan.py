"""What a training run is about to do, said before it starts, with a warning when the
data is too small for the settings.

The defaults are the paper's (batch 256, lr 1e-4, 50 epochs), chosen for 100k+ rows. On
a few hundred rows they give a few dozen steps: most latents never fire, and the run
ends looking fine ("trained 30 steps") while its reconstructions are poor. A run that
will take fewer than :data:`FEW_STEPS` steps, or whose batch is larger than its training
rows, gets a warning with settings that give it enough steps (README, "Training on
little data").
"""

from __future__ import annotations

from typing import NamedTuple

from sparc.train.config import TrainConfig

FEW_STEPS = 300
"""Fewer optimizer steps than this leave most latents untrained at any learning rate tried."""
TARGET_STEPS = 1000
"""What the suggested batch aims for."""
SMALL_DATA_LR = 1e-3
"""The learning rate that trains small stores well (the demo's and the planted benchmark's)."""


class TrainingPlan(NamedTuple):
    """The run's size, as the trainer will step it."""

    train_rows: int
    """Rows of the training split (all ranks together)."""
    steps_per_epoch: int
    """Optimizer steps in one pass over them."""
    total_steps: int
    """Steps the run takes (epochs × steps per epoch, or --max-steps when smaller)."""
    warnings: tuple[str, ...]
    """What looks wrong for this data, each with a suggestion."""

    def describe(self, cfg: TrainConfig) -> str:
        """One line: rows, batch, steps per epoch, epochs, total."""
        cap = f" (capped by --max-steps {cfg.max_steps:,})" if cfg.max_steps and cfg.max_steps < \
            cfg.epochs * self.steps_per_epoch else ""
        return (f"training on {self.train_rows:,} rows, batch {cfg.batch_size:,}: {self.steps_per_epoch:,} steps per "
                f"epoch × {cfg.epochs} epochs = {self.total_steps:,} steps{cap}, lr {cfg.lr:g}")


def suggested_batch(train_rows: int, epochs: int, batch_size: int) -> int:
    """The largest power of two, at most ``batch_size`` and at least 8, that gives about
    :data:`TARGET_STEPS` steps over ``epochs`` epochs of ``train_rows`` rows."""
    b = 8
    while b * 2 <= batch_size and train_rows * epochs / (b * 2) >= TARGET_STEPS:
        b *= 2
    return min(b, batch_size)


def plan_training(train_rows: int, steps_per_epoch: int, cfg: TrainConfig, *, ranks: int = 1) -> TrainingPlan:
    """The plan of a run on ``train_rows`` rows whose loader gives ``steps_per_epoch``
    steps an epoch (per rank), and its warnings."""
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warnings = []
    batch = cfg.batch_size * ranks
    if batch > train_rows:
        warnings.append(f"the batch ({batch:,} rows) is larger than the training split ({train_rows:,} rows): every "
                        "step sees every row and an epoch is one step")
    if total < FEW_STEPS and not cfg.max_steps:
        b = suggested_batch(train_rows, cfg.epochs, cfg.batch_size)
        steps = cfg.epochs * -(-train_rows // (b * ranks))
        lr = f" --lr {SMALL_DATA_LR:g}" if cfg.lr < SMALL_DATA_LR else ""
        if b < cfg.batch_size:
            how = f"--batch-size {b}{lr} gives {steps:,} steps"
        else:
            epochs = -(-TARGET_STEPS // max(steps_per_epoch, 1))
            how = f"--epochs {epochs}{lr} gives about {epochs * steps_per_epoch:,} steps"
        warnings.append(f"only {total:,} steps: too few for most latents to learn (fewer than {FEW_STEPS}); {how}")
    return TrainingPlan(train_rows, steps_per_epoch, total, tuple(warnings))
