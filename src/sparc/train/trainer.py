"""The training loop: steps, validation, checkpoints and exact resume.

The trainer writes into its run directory (:mod:`sparc.train.rundir`) the metrics, the
final model and the checkpoint: the latest resumable state, the model and trainer.pt
(optimizer, RNG, data position).

Resuming restores the model (dead counters included), the Adam moments, the resampling
RNG and the position in the batch stream, so an interrupted run ends with the same
weights as an uninterrupted one (bitwise on CPU).

With a :class:`~sparc.train.distributed.Distributed` context the trainer is one rank of
a data-parallel run (:mod:`sparc.train.distributed`): its data source yields this rank's
slice of every batch, gradients, counters, metrics and validation are reduced over the
ranks, and only rank 0 (the one given a ``run_dir``) writes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sparc.atomic import atomic_path
from sparc.data import BatchLoader
from sparc.errors import SparcError, TrainingDiverged
from sparc.model import SPARC, Losses
from sparc.model.engine import StepEngine
from sparc.pickles import load_weights_only
from sparc.train.backend import Backend
from sparc.train.config import TrainConfig
from sparc.train.dead import resample_dead_latents
from sparc.train.distributed import Distributed
from sparc.train.metrics import MetricsLog
from sparc.train.optim import SPARCAdam
from sparc.train.plan import TrainingPlan, plan_training
from sparc.train.pre_bias import init_pre_bias_
from sparc.train.rundir import RunDir

STOP_GRACE_S = 5.0
"""Distributed: a second stop signal within this many seconds of the first is the same
request (torchrun forwards the terminal's Ctrl-C to workers that received it)."""
TRAINER_STATE = "trainer.pt"


class BatchSource(Protocol):
    """What the trainer needs from data: batches of stream → [B, d] tensors, in an
    order fixed by (seed, epoch), and a resumable position."""

    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def __len__(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StepOutput(NamedTuple):
    """What one training step reports."""

    losses: Losses
    l0: dict[str, float]
    """Mean nonzero code entries per sample, per stream."""
    dead_fraction: dict[str, float]
    """Fraction of latents dead in each stream after the step."""

    def named(self) -> dict[str, float]:
        out = self.losses.named()
        out.update({f"l0/{s}": v for s, v in self.l0.items()})
        out.update({f"dead/{s}": v for s, v in self.dead_fraction.items()})
        return out


class Trainer:
    """Trains a :class:`SPARC` model on batches from a :class:`BatchSource`.

    Parameters
    ----------
    model
        The model, on ``cfg.device``.
    cfg
        Training settings.
    train, val
        Training batches and (optionally) validation batches.
    run_dir
        Where metrics and checkpoints go (created if missing).
    dist
        This process's rank in a data-parallel run (None: a single process). Every rank
        gets a trainer; ``train`` and ``val`` yield the rank's slices of the batches, and
        only rank 0 has a ``run_dir``.
    backend
        The kernel path and encoder selection to compute with (:mod:`sparc.train.backend`),
        given to the model and to the training engine this trainer builds; ``auto`` choices
        are decided for the model's device (``SPARC_KERNELS`` / ``SPARC_BF16_SELECT``, else
        the hardware). Default: the model's own kernel choice, the selection ``auto``.
    """

    def __init__(self, model: SPARC, cfg: TrainConfig, train: BatchSource,
                 val: BatchSource | None = None, run_dir: str | Path | None = None,
                 extra_config: dict[str, Any] | None = None, dist: Distributed | None = None,
                 backend: Backend | None = None):
        self.model, self.cfg, self.train_data, self.val_data = model, cfg, train, val
        self.dist = dist
        backend = backend or Backend(model.kernel_choice)  # without a run's record: the model's own choice
        self.backend = backend if backend.is_resolved else backend.resolved(str(model.W_enc.device))
        """The resolved backend this trainer computes with."""
        model.use_kernels(self.backend.kernels)
        # Each step runs backward, the optimizer step and zero_grad(set_to_none=True): the
        # two [L, D] gradients can live in buffers kept across steps; in a data-parallel
        # run the firing counters count every rank's rows.
        self.engine = StepEngine(model, bf16_select=self.backend.bf16_select, gradient_buffers=True,
                                 reduce_firing=dist.all_reduce_ if dist is not None else None)
        """The training step's state (sparc.model.engine), owned here, not by the model."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # Adam with the decoder constraint in its step (fused with it on the CPU kernels);
        # one process: the two tables are stepped in backward, as their gradients form
        # (data parallel: their gradients are summed over the ranks first).
        self.optimizer = SPARCAdam(model, lr=cfg.lr, eps=cfg.adam_eps, engine=self.engine, in_backward=dist is None)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step_count = 0
        self.validated = 0
        """Epochs whose validation has been logged (a resumed run catches up on the
        last one when the checkpoint came between the epoch's end and its validation)."""
        self.checkpoint_step: int | None = None
        """Step of the last checkpoint written or resumed from."""
        self.extra_config = extra_config or {}
        self._stop_requested = False
        self._batch_rows: np.ndarray | None = None
        """Store rows of the batch being trained on, when the data source tells them."""
        self._stop_time = 0.0
        self._stop_agreed = False
        """Distributed: whether some rank asked to stop by the last step (all ranks stop
        after the same step; a signal itself reaches each rank at its own time)."""

    @property
    def _stopping(self) -> bool:
        return self._stop_agreed if self.dist is not None else self._stop_requested

    @property
    def epoch(self) -> int:
        """The epoch the next training batch belongs to (the data source keeps it)."""
        return self.train_data.epoch

    # ------------------------------------------------------------------ one step

    def step(self, batch: dict[str, Tensor]) -> StepOutput:
        """One optimisation step on ``batch`` (in a distributed run: this rank's slice)."""
        model = self.model
        model.train()
        device_type = next(model.parameters()).device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.cfg.autocast):
            out = model(batch, engine=self.engine)
        if self.dist is not None:
            return self._finish_step(out, self._reduce_step(out, batch))
        loss = out.losses.total.item()
        if not math.isfinite(loss):
            self._check_features(batch)
            raise self._diverged(self.step_count + 1, f"the loss is {loss}")
        out.losses.total.backward()
        return self._finish_step(out, None)

    def _finish_step(self, out, reduced: dict[str, float] | None) -> StepOutput:
        """The decoder constraint, the optimizer step and resampling, after backward."""
        model = self.model
        self.optimizer.step()  # with the decoder constraint (sparc.train.optim)
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        if (self.cfg.resample_after_samples is not None
                and self.step_count % self.cfg.resample_every == 0):
            resample_dead_latents(model, self.optimizer, after_samples=self.cfg.resample_after_samples,
                                  std=self.cfg.resample_std, generator=self.generator)
        dead = model.dead_mask().float().mean(1)
        dead_fraction = {s: dead[model.stream_index(s)].item() for s in out.codes}
        if reduced is not None:
            return _step_output(out, reduced, dead_fraction)
        return StepOutput(
            losses=Losses(out.losses.total.detach(), *(_detach(d) for d in out.losses[1:])),
            l0={s: c.l0().float().mean().item() for s, c in out.codes.items()},
            dead_fraction=dead_fraction,
        )

    def _reduce_step(self, out, batch: dict[str, Tensor]) -> dict[str, float]:
        """Distributed: back-propagate this rank's share of the batch's loss, sum the
        gradients over the ranks, and return the batch's metrics (means over all its
        rows) and whether any rank asked to stop."""
        assert self.dist is not None
        model, B = self.model, self.cfg.batch_size
        rows = next(iter(batch.values())).shape[0]
        if rows:
            # Scaled by this rank's share of a full batch; corrected below when the
            # batch is short (the last of an epoch), once its size is known.
            (out.losses.total * (rows / B)).backward()
        grads = []
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        names, values = _flat_metrics(out)
        stats = torch.stack(values).detach().to(torch.float64) * rows if rows else torch.zeros(
            len(values), dtype=torch.float64, device=grads[0].device)
        stats = torch.cat([stats, stats.new_tensor([rows, float(self._stop_requested)])])
        self.dist.all_reduce_(*grads, stats)
        total = int(stats[-2].item())
        if total != B:
            for g in grads:
                g.mul_(B / total)
        self._stop_agreed = bool(stats[-1].item())
        reduced = dict(zip(names, (stats[: len(names)] / total).tolist()))
        if not math.isfinite(reduced["loss"]):
            self.optimizer.zero_grad(set_to_none=True)
            self._check_features(batch)
            raise self._diverged(self.step_count + 1, f"the loss is {reduced['loss']}")
        return reduced

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean losses and L0 over the validation batches (counters untouched)."""
        assert self.val_data is not None
        self.model.eval()
        sums: dict[str, float] = {}
        rows = 0
        for batch in self.val_data:
            batch = {s: x.to(self.cfg.device) for s, x in batch.items()}
            out = self.model(batch, engine=self.engine)  # the training step's selection
            n = next(iter(batch.values())).shape[0]
            names, values = _flat_metrics(out)
            for k, v in zip(names, torch.stack(values).tolist()):
                sums[k] = sums.get(k, 0.0) + (v * n if n else 0.0)
            rows += n
        self.model.train()
        if self.dist is not None:  # sums over every rank's slices (the same keys on all)
            names = list(sums)
            total = torch.tensor([sums[k] for k in names] + [rows], dtype=torch.float64, device=self.cfg.device)
            self.dist.all_reduce_(total)
            sums, rows = dict(zip(names, total[:-1].tolist())), int(total[-1].item())
        return {k: v / rows for k, v in sums.items()} if rows else {}

    # ------------------------------------------------------------------ the loop

    def plan(self) -> TrainingPlan:
        """The run's size (rows, steps per epoch, total) and warnings for small data
        (:mod:`sparc.train.plan`)."""
        ranks = self.dist.world_size if self.dist is not None else 1
        rows = len(self.train_data.rows_n) if isinstance(self.train_data, BatchLoader) else \
            len(self.train_data) * self.cfg.batch_size * ranks
        return plan_training(rows, len(self.train_data), self.cfg, ranks=ranks)

    def total_steps(self) -> int:
        steps = self.cfg.epochs * len(self.train_data)
        return min(steps, self.cfg.max_steps) if self.cfg.max_steps else steps

    def fit(self) -> None:
        """Train until ``epochs`` or ``max_steps``; checkpoint; write the final model.

        Ctrl-C stops after the current step and writes a checkpoint to resume from.
        """
        cfg = self.cfg
        log = MetricsLog(self.run_dir, tensorboard=cfg.tensorboard, wandb_project=cfg.wandb_project,
                         run_config=self.extra_config) if self.run_dir else None
        if log:
            log.truncate_after(self.step_count, val_epochs=self.validated)
        total = self.total_steps()
        if cfg.validate and self.val_data is not None and self.validated < self.epoch:
            self._validate_epoch(self.epoch - 1, log, print)
        bar = tqdm(total=total, initial=min(self.step_count, total), disable=not cfg.progress,
                   desc="train", unit="step", dynamic_ncols=True)
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._request_stop)
        # SIGTERM (a scheduler; torchrun stopping its workers) stops like Ctrl-C: after
        # the step (in a distributed run, one all ranks agree on), with a checkpoint.
        previous_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._request_stop)
        t0 = time.perf_counter()
        try:
            while self.epoch < cfg.epochs and self.step_count < total and not self._stopping:
                epoch = self.epoch
                for batch, self._batch_rows in self._batches():
                    batch = {s: x.to(cfg.device, non_blocking=True) for s, x in batch.items()}
                    if self.step_count == 0 and cfg.pre_bias_init != "zero":
                        whole = self.dist.gather_rows(batch) if self.dist is not None else batch
                        init_pre_bias_(self.model, whole, cfg.pre_bias_init)
                    out = self.step(batch)
                    bar.update(1)
                    if self.step_count % cfg.log_every == 0 or self.step_count == total:
                        named = out.named()
                        bar.set_postfix_str(_postfix(named), refresh=False)
                        if log:
                            log.write({"step": self.step_count, "epoch": epoch,
                                       "samples": self.step_count * cfg.batch_size,
                                       "time": round(time.perf_counter() - t0, 3), **named})
                    if cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0:
                        if self.run_dir:
                            self.save_checkpoint()
                        elif self.dist is not None:
                            self.check_finite()  # the same weights, so every rank stops alike
                    if self.step_count >= total or self._stopping:
                        break
                if self.epoch != epoch and cfg.validate and self.val_data is not None:
                    # The epoch ran to its end (the data source has moved to the next).
                    self._validate_epoch(epoch, log, bar.write)
        finally:
            # Distributed and stopping: keep absorbing the signal's echoes until the exit.
            if self.dist is None or not self._stop_requested:
                signal.signal(signal.SIGINT, previous)
                signal.signal(signal.SIGTERM, previous_term)
            bar.close()
        if self.run_dir:
            self.save_checkpoint()
            if not self._stopping:
                self.model.save(self.run_dir)
        elif self.dist is not None:
            self.check_finite()
        if log:
            log.close()
        if self._stopping:
            if self.dist is not None and self._stop_requested:
                # The process exits now; Python's shutdown resets function handlers to the
                # default, which an echo of the stop signal arriving then would turn into
                # a kill. Ignored signals stay ignored through the shutdown.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise KeyboardInterrupt

    def _validate_epoch(self, epoch: int, log: MetricsLog | None, say) -> None:
        val = self.validate()
        if log:
            log.write({"step": self.step_count, "epoch": epoch, "split": "val", **val})
        if self.dist is None or self.dist.is_main:
            say(f"epoch {epoch + 1}/{self.cfg.epochs} val: {_postfix(val)}")
        self.validated = epoch + 1

    def _batches(self) -> Iterator[tuple[dict[str, Tensor], np.ndarray | None]]:
        """The rest of the epoch's batches, each with the store rows it came from when
        the data source tells them (a :class:`~sparc.data.BatchLoader` does)."""
        if isinstance(self.train_data, BatchLoader):
            for b in self.train_data.iter_batches():
                yield b.features, b.rows
        else:
            for features in self.train_data:
                yield features, None

    def _check_features(self, batch: dict[str, Tensor]) -> None:
        """A non-finite loss from non-finite features is the store's fault, not the
        learning rate's: name the streams and store rows (one line, exit 2)."""
        bad = {s: (~torch.isfinite(x).all(1)).nonzero().squeeze(1).tolist() for s, x in batch.items()}
        bad = {s: i for s, i in bad.items() if i}
        if not bad:
            return
        rows = self._batch_rows

        def which(i: list[int]) -> str:
            if rows is None:
                return f"{len(i)} row(s) of the batch"
            shown = ", ".join(str(int(rows[j])) for j in i[:5])
            return f"{len(i)} row(s): store rows {shown}{', ...' if len(i) > 5 else ''}"

        streams = "; ".join(f"stream {s}, {which(i)}" for s, i in bad.items())
        raise SparcError(f"the training features hold NaN or Inf at step {self.step_count + 1} ({streams}); "
                         "the store is damaged, not the learning rate: re-create it (sparc import-h5 "
                         "--drop-nonfinite drops such rows)")

    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        saved = (f"the checkpoint of step {self.checkpoint_step} is kept" if self.checkpoint_step is not None
                 else "no checkpoint was written")
        return TrainingDiverged(f"training diverged at step {step}: {what}; {saved}",
                                step=step, checkpoint_step=self.checkpoint_step)

    def _request_stop(self, signum, frame) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Stop after the current step with a checkpoint, as a first Ctrl-C does; a second
        request stops at once (KeyboardInterrupt)."""
        if self._stop_requested:  # a second Ctrl-C stops at once
            # ...except the echo under torchrun, which passes the terminal's Ctrl-C on to
            # workers that got it already: all ranks must stop at the agreed step.
            if self.dist is None or time.monotonic() - self._stop_time > STOP_GRACE_S:
                raise KeyboardInterrupt
            return
        self._stop_requested = True
        self._stop_time = time.monotonic()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "data": self.train_data.state_dict(),
            "generator": self.generator.get_state(),
            "train_config": self.cfg.to_dict(),
            "validated": self.validated,
        }

    def save_checkpoint(self) -> Path:
        """Write RUN/checkpoint atomically (model + trainer state)."""
        assert self.run_dir is not None
        self.check_finite()
        target = RunDir(self.run_dir).checkpoint
        with atomic_path(target, is_dir=True) as tmp:
            self.model.save(tmp)
            torch.save(self.state_dict(), tmp / TRAINER_STATE)
        self.checkpoint_step = self.step_count
        return target

    @torch.no_grad()
    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if a weight is not finite (before any save)."""
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise self._diverged(self.step_count, f"the weights {name} are not finite")

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (the model must already hold
        the checkpoint's weights; see :func:`resume`)."""
        path = Path(path)
        if not (path / TRAINER_STATE).exists():
            raise SparcError(f"{path} has no {TRAINER_STATE}; the run cannot be resumed")
        self.load_state_dict(load_weights_only(path / TRAINER_STATE, "trainer state"))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the model's weights aside)."""
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr  # the run's settings decide (a resume may lower it)
        self.train_data.load_state_dict(state["data"])
        self.generator.set_state(state["generator"])
        self.step_count = int(state["step"])
        self.validated = int(state.get("validated", self.epoch))
        self.checkpoint_step = self.step_count


def _detach(d: dict) -> dict:
    return {k: v.detach() for k, v in d.items()}


def _flat_metrics(out) -> tuple[list[str], list[Tensor]]:
    """Names and 0-d tensors of a forward pass's losses and L0s, in a fixed order."""
    losses = out.losses
    names = ["loss", *(f"nmse/{s}" for s in losses.self_nmse), *(f"cross_nmse/{t}<-{s}" for t, s in losses.cross_nmse),
             *(f"auxk/{s}" for s in losses.auxk), *(f"l0/{s}" for s in out.codes)]
    values = [losses.total, *losses.self_nmse.values(), *losses.cross_nmse.values(), *losses.auxk.values(),
              *(c.l0().float().mean() for c in out.codes.values())]
    return names, [v.detach().float().reshape(()) for v in values]


def _step_output(out, reduced: dict[str, float], dead_fraction: dict[str, float]) -> StepOutput:
    """A :class:`StepOutput` of the whole batch from its reduced metrics."""
    def t(name: str) -> Tensor:
        return torch.tensor(reduced[name])

    losses = out.losses
    return StepOutput(
        losses=Losses(t("loss"), {s: t(f"nmse/{s}") for s in losses.self_nmse},
                      {(a, b): t(f"cross_nmse/{a}<-{b}") for a, b in losses.cross_nmse},
                      {s: t(f"auxk/{s}") for s in losses.auxk}),
        l0={s: reduced[f"l0/{s}"] for s in out.codes},
        dead_fraction=dead_fraction,
    )


def _postfix(named: dict[str, float]) -> str:
    keep = [k for k in named if k == "loss" or k.startswith(("nmse/", "l0/", "dead/"))]
    parts = []
    for k in keep:
        v = named[k]
        parts.append(f"{k}={v:.3g}" if not k.startswith("dead/") else f"{k}={100 * v:.1f}%")
    return " ".join(parts) if not any(math.isnan(named[k]) for k in keep) else "loss=nan"
