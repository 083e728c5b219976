"""Where training metrics go: a JSONL file always, TensorBoard and W&B on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparc.errors import SparcError


class MetricsLog:
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard / Weights & Biases when asked."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = False, wandb_project: str | None = None,
                 run_config: dict[str, Any] | None = None):
        self.path = run_dir / "metrics.jsonl"
        self._tb = self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SparcError("--tensorboard needs the tensorboard package: pip install 'sparc-sae[tensorboard]'") from None
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise SparcError("--wandb-project needs the wandb package: pip install 'sparc-sae[wandb]'") from None
            self._wandb = wandb.init(project=wandb_project, config=run_config, dir=str(run_dir))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a run resumes from)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        step = record.get("step", 0)
        prefix = "val/" if record.get("split") == "val" else "train/"
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(prefix + k, v, step)
        if self._wandb is not None:
            self._wandb.log({prefix + k: v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
