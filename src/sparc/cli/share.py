"""``sparc push``: publishing a run on the Hugging Face Hub (sparc.publish)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro


@dataclass
class Push:
    """Upload a finished run's model to the Hugging Face Hub (config.json, model.safetensors, a model card from its settings and evaluations)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory of a finished training (sparc train)."""

    repo: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ORG/NAME")]
    """Hub repository to upload to (created if missing)."""

    private: bool = False
    """Create the repository as private."""

    revision: str | None = None
    """Branch to commit to (default: main)."""

    message: str | None = None
    """Commit message."""

    def run(self) -> None:
        from sparc.publish import push

        url = push(self.run_dir, self.repo, private=self.private, revision=self.revision, message=self.message)
        print(f"pushed {self.run_dir} to {self.repo}: {url}")
