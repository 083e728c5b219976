"""Training: the loop, its settings, the run workflow, the run directory's layout, the
dead-latent policy and metrics logging."""

from sparc.train.config import TrainConfig
from sparc.train.run import Run, RunSpec, finished_with, new_spec, open_run
from sparc.train.rundir import RunDir, load_model
from sparc.train.trainer import BatchSource, StepOutput, Trainer

__all__ = ["TrainConfig", "Trainer", "StepOutput", "BatchSource", "Run", "RunSpec", "RunDir", "finished_with",
           "load_model", "new_spec", "open_run"]
