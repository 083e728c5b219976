"""Training: the loop, its settings, the dead-latent policy and metrics logging."""

from sparc.train.config import TrainConfig
from sparc.train.trainer import BatchSource, StepOutput, Trainer

__all__ = ["TrainConfig", "Trainer", "StepOutput", "BatchSource"]
