"""Training: the loop, its settings, the run workflow, the dead-latent policy and
metrics logging."""

from sparc.train.config import TrainConfig
from sparc.train.run import Run, RunSpec, finished_with, new_spec, open_run
from sparc.train.trainer import BatchSource, StepOutput, Trainer

__all__ = ["TrainConfig", "Trainer", "StepOutput", "BatchSource", "Run", "RunSpec", "finished_with", "new_spec",
           "open_run"]
