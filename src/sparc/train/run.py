"""The one run workflow: a run directory, its recorded settings, model, loaders and
trainer — shared by ``sparc train``, ``sparc demo`` and the experiments.

A run directory's layout is :mod:`sparc.train.rundir`'s; its ``train_config.json`` holds
the :class:`RunSpec`: store, streams, model and training settings.

:func:`open_run` starts a fresh run or resumes one and returns a :class:`Run` whose
trainer only needs ``fit()``; :func:`finished_with` tells whether a directory already
holds a finished run of exactly the same settings (the demo reuses those).

In a data-parallel run (``dist``, :mod:`sparc.train.distributed`) rank 0 does all of
this, holding the lock, and sends the settings, the weights and the trainer's state to
the other ranks, which only need the store (at the same path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sparc.data import BatchLoader, FeatureStore
from sparc.device import check_device
from sparc.errors import SparcError
from sparc.jsonio import from_json, to_json
from sparc.model import SPARC, SPARCConfig
from sparc.train.backend import Backend
from sparc.train.config import TrainConfig
from sparc.train.distributed import Distributed, to_cpu
from sparc.train.rundir import RUN, STARTED_RUN, RunDir
from sparc.train.trainer import Trainer
from sparc.workspace import check_not_input, clean_stale, exclusive_lock, foreign_entry, mark, remove_owned

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
    backend: Backend | None = None
    """The kernel path and encoder selection the run computes with, resolved (absent from
    runs recorded before it was written here: a resume records what it decides)."""

    def same_run(self, other: RunSpec) -> bool:
        """Equal up to settings that do not change the result (the progress bar), and
        up to the backend when either side has none recorded (runs from before it was)."""
        def key(spec: RunSpec) -> RunSpec:
            backend = spec.backend if self.backend is not None and other.backend is not None else None
            return dataclasses.replace(spec, train=dataclasses.replace(spec.train, progress=False), backend=backend)

        return key(self) == key(other)


@dataclass
class Run:
    """A run ready to train, holding its directory's writer lock until closed::

        with open_run(out, spec) as run:
            run.trainer.fit()
    """

    spec: RunSpec
    """The settings, as recorded in the run directory."""
    trainer: Trainer
    """The trainer, holding the model, the loaders and (when resumed) the checkpoint's state."""
    resumed: bool
    """Whether the run continues from its checkpoint."""
    _lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def close(self) -> None:
        """Release the run directory's lock."""
        self._lock.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> bool:
    """Make ``run_dir`` ready for a fresh run, or check that it holds one to resume;
    whether to load its checkpoint. A run that sparc started but that stopped before
    its first checkpoint has nothing to lose: it starts again, with ``--resume`` (from
    its recorded settings) or without. Refuses to write over anything else unless
    ``overwrite`` and sparc made it; never deletes anything else (:mod:`sparc.workspace`).
    Call with the run directory's lock held."""
    if run_dir.is_dir():
        clean_stale(run_dir)
    if RunDir(run_dir).holds_run():
        if resume:
            return True
        if not overwrite:
            raise SparcError(f"{run_dir} already holds a run; pass --resume to continue it "
                             "or --overwrite to replace it")
        remove_owned(run_dir, RUN)
    elif started_only(run_dir):
        if resume and not RunDir(run_dir).spec_file.is_file():
            raise SparcError(f"{run_dir} holds no run to resume (it stopped before recording its settings); "
                             "drop --resume to start one")
        print(f"sparc: {run_dir} stopped before its first checkpoint; starting it again from step 0", file=sys.stderr)
        if resume:
            return False  # the caller replaces it once the recorded settings pass their checks
        remove_owned(run_dir, STARTED_RUN)
    elif resume:
        raise SparcError(f"{run_dir} holds no run to resume; drop --resume to start one")
    elif run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        if not overwrite:
            raise SparcError(f"{run_dir} is not empty; choose a new --out or pass --overwrite")
        remove_owned(run_dir, RUN)
    run_dir.mkdir(parents=True, exist_ok=True)
    mark(run_dir, RUN, "sparc train")
    return False


def started_only(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a run sparc started that stopped before its first
    checkpoint: marked, and holding nothing but its settings and metrics (no weights,
    no evaluation: nothing a restart could lose)."""
    return run_dir.is_dir() and not run_dir.is_symlink() and foreign_entry(run_dir, STARTED_RUN) is None


def new_spec(store: FeatureStore, model: SPARCConfig, train: TrainConfig,
             streams: list[str] | tuple[str, ...] | None = None, backend: Backend = Backend()) -> RunSpec:
    """The spec of a fresh run on ``store`` (all its streams unless ``streams``), its
    ``backend``'s ``auto`` choices decided for the training device."""
    from sparc.model.exclusive import check_streams

    names = tuple(store.select_streams(streams))
    check_streams(model.exclusive, model.n_latents, names)  # an unknown stream, before any work
    return RunSpec(store=str(store.path.resolve()), streams=names,
                   train=train, model=model, store_created=store.manifest.created,
                   backend=backend.resolved(train.device))


def finished_with(run_dir: Path, spec: RunSpec) -> bool:
    """Whether ``run_dir`` holds a finished model trained with exactly ``spec``."""
    rd = RunDir(run_dir)
    if not rd.is_finished() or not rd.spec_file.exists():
        return False
    try:
        return rd.spec().same_run(spec)
    except SparcError:  # written by another version: not the same run
        return False


def open_run(run_dir: str | Path, spec: RunSpec | None = None, *, resume: bool = False,
             overwrite: bool = False, store: str | Path | None = None, lr: float | None = None,
             other_store: bool = False, backend: Backend = Backend(), dist: Distributed | None = None) -> Run:
    """Start the run ``spec`` in ``run_dir``, or resume the run there.

    Holds the run directory's writer lock until the returned :class:`Run` is closed.

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
        Replace the run ``run_dir`` holds (only a folder sparc wrote as a run).
    store
        When resuming: the store the caller names, which must be the one the run was
        trained on (same creation stamp) unless ``other_store``.
    lr
        When resuming: continue with this learning rate (e.g. lower, after a divergence);
        the run's recorded settings are updated.
    other_store
        When resuming: accept a ``store`` other than the one the run was trained on.
    backend
        When resuming: a kernel path or encoder selection other than the recorded ones
        (each ``auto`` keeps the recorded one); the recorded settings are updated. The
        run's model and trainer compute with the run's backend (:mod:`sparc.train.backend`).
    dist
        This process's rank in a data-parallel run. Rank 0 opens the run as above and
        sends it to the others; on the other ranks every other argument is ignored.
    """
    run_dir = Path(run_dir)
    if dist is not None and not dist.is_main:
        return _join_run(dist)
    if not resume and spec is None:
        raise ValueError("a fresh run needs its spec")
    lock = contextlib.ExitStack()
    try:
        if spec is not None and not resume:
            check_device(spec.train.device)
            check_not_input(run_dir, [spec.store])
            check_parallel(spec.model, dist)
        lock.enter_context(exclusive_lock(run_dir, "sparc train"))
        run = _open_locked(run_dir, spec, lock, resume=resume, overwrite=overwrite, store=store, lr=lr,
                           other_store=other_store, backend=backend, dist=dist)
        check_parallel(run.spec.model, dist)
    except BaseException as e:
        lock.close()
        if dist is not None:  # the other ranks wait for the run: tell them why there is none
            dist.broadcast_object({"error": str(e) if isinstance(e, SparcError) else type(e).__name__})
        raise
    if dist is not None:
        _send_run(run, dist)
    return run


def check_parallel(model: SPARCConfig | None, dist: Distributed | None) -> None:
    """A one-line error for a method whose choice needs the whole batch in one process."""
    from sparc.model.selection import selection_rule

    if dist is not None and model is not None and selection_rule(model.topk).batch_wide:
        raise SparcError(f"method {model.method!r} chooses latents from the whole batch, which the ranks of a "
                         "data-parallel run hold in parts; train it in one process (without torchrun)")


def _send_run(run: Run, dist: Distributed) -> None:
    """Rank 0: the run's settings, weights and trainer state, to every other rank."""
    trainer = run.trainer
    dist.broadcast_object({"spec": to_json(run.spec), "resumed": run.resumed,
                           "state": to_cpu(trainer.state_dict()) if run.resumed else None})
    dist.broadcast_(*trainer.model.state_dict().values())


def _join_run(dist: Distributed) -> Run:
    """Ranks other than 0: the run rank 0 opened, on this rank's device and data."""
    got = dist.broadcast_object(None)
    if "error" in got:
        raise SparcError(f"rank {dist.rank}: rank 0 could not open the run ({got['error']})")
    spec = from_json(RunSpec, got["spec"], what="the run sent by rank 0")
    assert spec.backend is not None
    spec.backend.check(dist.device, run=f"rank {dist.rank}: the run")
    store = FeatureStore.open(spec.store)
    if spec.store_created and store.manifest.created != spec.store_created:
        raise SparcError(f"rank {dist.rank}: {spec.store} on this machine is not the store rank 0 trains on "
                         f"(created {store.manifest.created}, not {spec.store_created}); give every machine the same store")
    assert spec.model is not None
    # Built on the run's kernel path: the decoder's first normalisation rounds as the run does.
    model = SPARC({s: store.streams[s] for s in spec.streams}, spec.model, device=dist.use_device(spec.train.device),
                  kernels=spec.backend.kernels)
    dist.broadcast_(*model.state_dict().values())
    trainer = _trainer(spec, store, model, None, dist)
    if got["resumed"]:
        trainer.load_state_dict(got["state"])
    return Run(spec, trainer, got["resumed"])


def _open_locked(run_dir: Path, spec: RunSpec | None, lock: contextlib.ExitStack, *, resume: bool,
                 overwrite: bool, store: str | Path | None, lr: float | None, other_store: bool,
                 backend: Backend, dist: Distributed | None) -> Run:
    rd = RunDir(run_dir)
    from_checkpoint = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    restart = resume and not from_checkpoint
    if restart:
        # Stopped before its first checkpoint: the recorded settings, from step 0 (the
        # folder is replaced below, once they have passed their checks).
        recorded = rd.spec()
        data = _resume_store(run_dir, recorded, store, other_store)
        train = recorded.train if lr is None else dataclasses.replace(recorded.train, lr=lr)
        resume, spec = False, dataclasses.replace(
            recorded, train=train, backend=backend.over(_recorded_backend(recorded, backend)),
            store=str(data.path.resolve()), store_created=data.manifest.created)
    if resume:
        recorded = rd.spec()
        data = _resume_store(run_dir, recorded, store, other_store)
        spec = dataclasses.replace(recorded, store=str(data.path.resolve()), store_created=data.manifest.created)
        if lr is not None:
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, lr=lr))
        was = _recorded_backend(recorded, backend)
        spec = dataclasses.replace(spec, backend=backend.over(was))
        spec.backend.check(spec.train.device, run=str(run_dir))
        if (change := spec.backend.describe_change(was)) is not None:
            print(f"sparc: {change}", file=sys.stderr)
        if spec != recorded:
            rd.write_spec(spec)
        model = SPARC.load(rd.checkpoint, device=dist.use_device(spec.train.device)
                           if dist is not None else check_device(spec.train.device))
        store = data
    else:
        assert spec is not None
        if spec.model is None:
            raise ValueError("a fresh run needs its model settings")
        if spec.backend is None or not spec.backend.is_resolved:
            spec = dataclasses.replace(spec, backend=(spec.backend or Backend()).resolved(spec.train.device))
        spec.backend.check(spec.train.device, run=str(run_dir))
        store = FeatureStore.open(spec.store)
        if spec.store_created and store.manifest.created != spec.store_created:
            raise SparcError(f"{spec.store} changed since this run's settings were made; make them again")
        if restart:
            remove_owned(run_dir, STARTED_RUN)
            run_dir.mkdir(parents=True)
            mark(run_dir, RUN, "sparc train")
        torch.manual_seed(spec.train.seed)
        model = SPARC({s: store.streams[s] for s in spec.streams}, spec.model, kernels=spec.backend.kernels,
                      device=dist.use_device(spec.train.device) if dist is not None else spec.train.device)
        rd.write_spec(spec)
    trainer = _trainer(spec, store, model, run_dir, dist)
    if resume:
        trainer.load_checkpoint(rd.checkpoint)
    return Run(spec, trainer, resume, lock)


def _recorded_backend(recorded: RunSpec, request: Backend) -> Backend:
    """The backend ``recorded`` holds; decided now (as ``request`` would be for a fresh
    run) when the run was recorded without one or a hand edit left ``auto`` in it."""
    b = recorded.backend
    return b if b is not None and b.is_resolved else (b or request).resolved(recorded.train.device)


def _trainer(spec: RunSpec, store: FeatureStore, model: SPARC, run_dir: Path | None,
             dist: Distributed | None) -> Trainer:
    """The trainer of ``spec`` with its loaders (this rank's slices in a distributed run)."""
    cfg, streams = spec.train, list(spec.streams)
    shard = {"rank": dist.rank, "world_size": dist.world_size} if dist is not None else {}
    if dist is not None:  # this rank's device; only rank 0 shows progress
        cfg = dataclasses.replace(cfg, device=dist.device, progress=cfg.progress and dist.is_main)
    train = BatchLoader(store, "train", batch_size=cfg.batch_size, streams=streams, seed=cfg.seed, **shard)
    val = None
    if cfg.validate and len(store.split_rows("val")):
        val = BatchLoader(store, "val", batch_size=max(cfg.batch_size, MIN_VAL_BATCH), streams=streams,
                          shuffle=False, **shard)
    return Trainer(model, cfg, train, val, run_dir=run_dir,
                   extra_config={**to_json(spec), "stream_dims": dict(model.streams)}, dist=dist, backend=spec.backend)


def _resume_store(run_dir: Path, spec: RunSpec, store: str | Path | None, other_store: bool) -> FeatureStore:
    """The store a resumed run continues on: the one it was trained on (by creation
    stamp, wherever it now lies), or any other when ``other_store``."""
    data = FeatureStore.open(store if store is not None else spec.store)
    if other_store:
        return data
    moved = Path(data.path).resolve() != Path(spec.store)
    if (spec.store_created and data.manifest.created != spec.store_created) or (not spec.store_created and moved):
        raise SparcError(f"{data.path} is not the store {run_dir} was trained on ({spec.store}, created "
                         f"{spec.store_created or 'unknown'}); name that store, or pass --other-store to continue on this one")
    return data
