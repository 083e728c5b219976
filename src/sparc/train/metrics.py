"""Where training metrics go: a JSONL file always, TensorBoard and W&B on request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sparc.atomic import write_error, write_text
from sparc.errors import SparcError
from sparc.train.rundir import RunDir


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``. A cut-off last line (a process killed while
    writing it) is dropped with a warning; damage anywhere else is an error."""
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == len(lines):
                print(f"warning: {path}: dropping its cut-off last line", file=sys.stderr)
                continue
            raise SparcError(f"{path} line {i} is not a JSON record; remove that line to continue") from None
        records.append(record)
    return records


class MetricsLog:
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard / Weights & Biases when asked."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = False, wandb_project: str | None = None,
                 run_config: dict[str, Any] | None = None):
        rd = RunDir(run_dir)
        self.path = rd.metrics_file
        self._tb = self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SparcError("--tensorboard needs the tensorboard package: pip install 'sparc-sae[tensorboard]'") from None
            self._tb = SummaryWriter(str(rd.tensorboard))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise SparcError("--wandb-project needs the wandb package: pip install 'sparc-sae[wandb]'") from None
            self._wandb = wandb.init(project=wandb_project, config=run_config, dir=str(run_dir))

    def truncate_after(self, step: int, *, val_epochs: int | None = None) -> None:
        """Drop the records written after the checkpoint a run resumes from: training
        records past ``step``, and validation records of epochs ``>= val_epochs`` (whose
        validation the resumed run repeats)."""
        if not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path)
                if r.get("step", 0) <= step
                and not (r.get("split") == "val" and val_epochs is not None and r.get("epoch", 0) >= val_epochs)]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def write(self, record: dict[str, Any]) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise write_error(self.path, e) from None
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
