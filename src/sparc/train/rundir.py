"""The run directory's layout, in one place (docs/formats.md, "A run directory")::

    RUN/config.json, RUN/model.safetensors   the final model: a model folder (SPARC.save)
    RUN/train_config.json                    the RunSpec (:mod:`sparc.train.run`)
    RUN/metrics.jsonl                        one JSON record per logged step / validation
    RUN/checkpoint/                          the latest resumable state (:mod:`sparc.train.trainer`)
    RUN/tensorboard/, RUN/wandb/             the optional loggers' folders
    RUN/eval-<split>/                        ``sparc eval``'s output
    RUN/explore-<split>/                     latent statistics and names (:mod:`sparc.explore`)
    RUN/heatmaps/                            the report's heatmaps (``sparc heatmap --for-report``)
    RUN/localisation-<protocol>[-<encoding>]/  ``sparc localize``'s tables for this run

Every reader and writer of a run asks :class:`RunDir` for these paths; :func:`load_model`
loads what a run (or a plain model folder) holds — the final model, or while the run is
unfinished its current checkpoint.

Why in :mod:`sparc.train`: a run directory is what training makes, and reading its spec
needs :class:`~sparc.train.run.RunSpec`, so the layout sits in the package that defines
it (a module above ``sparc.train`` would be imported by it and import it: a circle).
For the same reason the model does not know runs — :meth:`SPARC.load
<sparc.model.SPARC.load>` reads a model folder — and :mod:`sparc.workspace` does not
know the run's file names: the run's folder kinds (:data:`RUN`, :data:`STARTED_RUN`)
are defined here, from these names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparc.atomic import current_dir, old_of, write_json
from sparc.errors import SparcError
from sparc.model.files import CONFIG_FILE, WEIGHTS_FILE, check_folder
from sparc.workspace import TEMPORARY, FolderKind

if TYPE_CHECKING:
    from sparc.model import SPARC
    from sparc.train.run import RunSpec

SPEC_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
"""Made by the wandb package itself, inside the folder it is given (the run)."""
EVAL_PREFIX = "eval-"
EXPLORE_PREFIX = "explore-"
HEATMAPS_DIR = "heatmaps"
LOCALISATION_PREFIX = "localisation-"

RUN = FolderKind("run directory", "run",
                 (CONFIG_FILE, WEIGHTS_FILE, SPEC_FILE, METRICS_FILE, CHECKPOINT_DIR, f"{EVAL_PREFIX}*",
                  f"{EXPLORE_PREFIX}*", HEATMAPS_DIR, f"{LOCALISATION_PREFIX}*", TENSORBOARD_DIR, WANDB_DIR, *TEMPORARY))
"""Everything sparc writes in a run directory (the explore, heatmap and localisation
folders are written by :mod:`sparc.explore` and :mod:`sparc.localize`)."""
STARTED_RUN = FolderKind("run directory", "run", (SPEC_FILE, METRICS_FILE, TENSORBOARD_DIR, WANDB_DIR, *TEMPORARY))
"""What a run holds before its first checkpoint: nothing a restart could lose."""


class RunDir:
    """A run directory (which need not exist yet): where each of its parts lives."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / CONFIG_FILE
        """The final model's config.json."""
        self.weights_file = self.path / WEIGHTS_FILE
        """The final model's weights; present only once training finished."""
        self.model_files = (self.config_file, self.weights_file)
        """What a model folder (and a Hub repository) holds."""
        self.spec_file = self.path / SPEC_FILE
        self.metrics_file = self.path / METRICS_FILE
        self.checkpoint = self.path / CHECKPOINT_DIR
        """The checkpoint folder a training writes (swapped in whole each time)."""
        self.tensorboard = self.path / TENSORBOARD_DIR

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ------------------------------------------------------------------------------

    def eval_dir(self, split: str) -> Path:
        """Where ``sparc eval`` writes the evaluation of ``split`` by default."""
        return self.path / f"{EVAL_PREFIX}{split}"

    def explore_dir(self, split: str) -> Path:
        """Where the latent statistics (and names) of ``split`` live."""
        from sparc.data.splits import Split

        return self.path / f"{EXPLORE_PREFIX}{Split.parse(split)}"

    @property
    def heatmaps(self) -> Path:
        """The report's heatmaps (``sparc heatmap --for-report``)."""
        return self.path / HEATMAPS_DIR

    def localisation_dir(self, protocol: str, encoding: str = "joint") -> Path:
        """Where ``sparc localize`` copies a protocol's tables for this run (``-<encoding>``
        unless joint)."""
        suffix = "" if encoding == "joint" else f"-{encoding}"
        return self.path / f"{LOCALISATION_PREFIX}{protocol}{suffix}"

    def localisation_dirs(self) -> list[Path]:
        """The run's localisation folders, sorted."""
        return sorted(self.path.glob(f"{LOCALISATION_PREFIX}*"))

    def eval_dirs(self) -> list[Path]:
        """The run's evaluation folders (whatever they hold), sorted."""
        return sorted(self.path.glob(f"{EVAL_PREFIX}*"))

    @staticmethod
    def eval_split(eval_dir: Path) -> str:
        """The split an evaluation folder of a run is named after."""
        return eval_dir.name[len(EVAL_PREFIX):]

    # -- state ------------------------------------------------------------------------------

    def is_finished(self) -> bool:
        """Whether the final model's weights are there."""
        return self.weights_file.exists()

    def holds_run(self) -> bool:
        """Whether the folder holds a run or a model (finished or not)."""
        return self.checkpoint.is_dir() or self.config_file.exists() or old_of(self.checkpoint).is_dir()

    def model_folder(self) -> Path:
        """The model folder to load: the final model, else the current checkpoint (a run
        still training, or cut between the renames of a checkpoint swap), else the
        folder itself (a model folder, or nothing: loading it says what is missing)."""
        if self.path.is_dir() and not self.is_finished() and current_dir(self.checkpoint).is_dir():
            return current_dir(self.checkpoint)
        return self.path

    # -- contents ---------------------------------------------------------------------------

    def spec(self) -> RunSpec:
        """How the run was made (its train_config.json), read by the reading rule."""
        from sparc.jsonio import read_json
        from sparc.train.run import RunSpec

        return read_json(self.spec_file, RunSpec, what=str(self.spec_file))

    def write_spec(self, spec: RunSpec) -> None:
        from sparc.jsonio import to_json

        write_json(self.spec_file, to_json(spec))

    def trained_store(self) -> Path:
        """The store recorded in the run's spec."""
        if not self.spec_file.exists():
            raise SparcError(f"{self.path} does not record the store it was trained on; pass --store")
        return Path(self.spec().store)

    def metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl ([] when there is none)."""
        from sparc.train.metrics import read_metrics

        return read_metrics(self.metrics_file) if self.metrics_file.exists() else []


def load_model(path: str | Path, *, device: str = "cpu") -> SPARC:
    """The model a run directory holds (final, else its current checkpoint), or the
    model of a plain model folder."""
    folder = check_folder(RunDir(path).model_folder())  # before PyTorch loads: a wrong path said at once
    from sparc.model import SPARC

    return SPARC.load(folder, device=device)
