"""The one run workflow: a run directory, its recorded settings, model, loaders and
trainer — shared by ``sparc train``, ``sparc demo`` and the experiments.

A run directory holds (see :mod:`sparc.train.trainer` for the rest)::

    RUN/train_config.json    the RunSpec: store, streams, model and training settings

:func:`open_run` starts a fresh run or resumes one and returns a :class:`Run` whose
trainer only needs ``fit()``; :func:`finished_with` tells whether a directory already
holds a finished run of exactly the same settings (the demo reuses those).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from sparc.atomic import write_json
from sparc.data import BatchLoader, FeatureStore
from sparc.errors import SparcError
from sparc.jsonio import read_json, to_json
from sparc.model import SPARC, SPARCConfig
from sparc.model.sparc import CONFIG_FILE, WEIGHTS_FILE
from sparc.train.config import TrainConfig
from sparc.train.trainer import CHECKPOINT_DIR, Trainer

RUN_SPEC = "train_config.json"
MIN_VAL_BATCH = 1024
"""Validation batches hold at least this many rows: no gradients, so larger batches only
save time."""


@dataclass(frozen=True)
class RunSpec:
    """How a run was made: where its data came from and every setting."""

    store: str
    """Absolute path of the feature store trained on."""
    streams: tuple[str, ...]
    """The streams trained on, in the model's order."""
    train: TrainConfig = TrainConfig()
    """Training settings."""
    model: SPARCConfig | None = None
    """Model settings (absent from runs recorded before they were written here; the
    model's own config.json always has them)."""
    store_created: str = ""
    """Creation stamp of the store, so a finished run is reused only on the same data."""

    @classmethod
    def read(cls, run_dir: Path) -> RunSpec:
        return read_json(run_dir / RUN_SPEC, cls, what=str(run_dir / RUN_SPEC))

    def same_run(self, other: RunSpec) -> bool:
        """Equal up to settings that do not change the result (the progress bar)."""
        quiet = dataclasses.replace(self.train, progress=False)
        return dataclasses.replace(self, train=quiet) == dataclasses.replace(
            other, train=dataclasses.replace(other.train, progress=False))


class Run(NamedTuple):
    """A run ready to train: ``run.trainer.fit()``."""

    spec: RunSpec
    """The settings, as recorded in the run directory."""
    trainer: Trainer
    """The trainer, holding the model, the loaders and (when resumed) the checkpoint's state."""
    resumed: bool
    """Whether the run continues from its checkpoint."""


def run_exists(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run or a model (finished or not)."""
    return (run_dir / CHECKPOINT_DIR).is_dir() or (run_dir / CONFIG_FILE).exists()


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to write over an existing run unless resuming or overwriting."""
    if run_exists(run_dir):
        if resume:
            return
        if not overwrite:
            raise SparcError(f"{run_dir} already holds a run; pass --resume to continue it "
                             "or --overwrite to replace it")
        shutil.rmtree(run_dir)
    elif resume:
        raise SparcError(f"{run_dir} holds no run to resume; drop --resume to start one")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise SparcError(f"{run_dir} is not empty; choose a new --out or pass --overwrite")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def new_spec(store: FeatureStore, model: SPARCConfig, train: TrainConfig,
             streams: list[str] | tuple[str, ...] | None = None) -> RunSpec:
    """The spec of a fresh run on ``store`` (all its streams unless ``streams``)."""
    return RunSpec(store=str(store.path.resolve()), streams=tuple(store.select_streams(streams)),
                   train=train, model=model, store_created=store.manifest.created)


def finished_with(run_dir: Path, spec: RunSpec) -> bool:
    """Whether ``run_dir`` holds a finished model trained with exactly ``spec``."""
    if not (run_dir / WEIGHTS_FILE).exists() or not (run_dir / RUN_SPEC).exists():
        return False
    try:
        return RunSpec.read(run_dir).same_run(spec)
    except SparcError:  # written by another version: not the same run
        return False


def open_run(run_dir: str | Path, spec: RunSpec | None = None, *, resume: bool = False,
             overwrite: bool = False) -> Run:
    """Start the run ``spec`` in ``run_dir``, or resume the run there.

    Parameters
    ----------
    run_dir
        The run directory.
    spec
        Settings of a fresh run (:func:`new_spec`); ignored when resuming, where the
        run's recorded spec is used.
    resume
        Continue from ``run_dir``'s checkpoint.
    overwrite
        Replace what ``run_dir`` holds.
    """
    run_dir = Path(run_dir)
    if not resume and spec is None:
        raise ValueError("a fresh run needs its spec")
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume:
        spec = RunSpec.read(run_dir)
        store = FeatureStore.open(spec.store)
        model = SPARC.load(run_dir / CHECKPOINT_DIR, device=spec.train.device)
    else:
        assert spec is not None
        if spec.model is None:
            raise ValueError("a fresh run needs its model settings")
        store = FeatureStore.open(spec.store)
        torch.manual_seed(spec.train.seed)
        model = SPARC({s: store.streams[s] for s in spec.streams}, spec.model, device=spec.train.device)
        write_json(run_dir / RUN_SPEC, to_json(spec))
    cfg, streams = spec.train, list(spec.streams)
    train = BatchLoader(store, "train", batch_size=cfg.batch_size, streams=streams, seed=cfg.seed)
    val = None
    if cfg.validate and len(store.split_rows("val")):
        val = BatchLoader(store, "val", batch_size=max(cfg.batch_size, MIN_VAL_BATCH), streams=streams,
                          shuffle=False)
    trainer = Trainer(model, cfg, train, val, run_dir=run_dir,
                      extra_config={**to_json(spec), "stream_dims": dict(model.streams)})
    if resume:
        trainer.load_checkpoint(run_dir / CHECKPOINT_DIR)
    return Run(spec, trainer, resume)
