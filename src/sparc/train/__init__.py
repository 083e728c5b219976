"""Training: the loop, its settings, the run workflow, the run directory's layout, the
dead-latent policy and metrics logging."""

from sparc.lazy import lazy_exports
from sparc.train.config import TrainConfig

# The rest loads PyTorch: imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {
    "sparc.train.run": ["Run", "RunSpec", "finished_with", "new_spec", "open_run"],
    "sparc.train.rundir": ["RunDir", "load_model"],
    "sparc.train.trainer": ["BatchSource", "StepOutput", "Trainer"],
})

__all__ = ["TrainConfig", "Trainer", "StepOutput", "BatchSource", "Run", "RunSpec", "RunDir", "finished_with",
           "load_model", "new_spec", "open_run"]
