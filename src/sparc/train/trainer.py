"""The training loop: steps, validation, checkpoints and exact resume.

A run directory holds::

    RUN/config.json, RUN/model.safetensors     the final model (SPARC.load(RUN))
    RUN/train_config.json                      how the run was made (:mod:`sparc.train.run`)
    RUN/metrics.jsonl                          one JSON record per logged step / validation
    RUN/checkpoint/                            the latest resumable state: the model,
                                               trainer.pt (optimizer, RNG, data position)

Resuming restores the model (dead counters included), the Adam moments, the resampling
RNG and the position in the batch stream, so an interrupted run ends with the same
weights as an uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sparc.atomic import atomic_path
from sparc.errors import SparcError, TrainingDiverged
from sparc.model import SPARC, Losses
from sparc.pickles import load_weights_only
from sparc.train.config import TrainConfig
from sparc.train.dead import resample_dead_latents
from sparc.train.metrics import MetricsLog
from sparc.train.pre_bias import init_pre_bias_

CHECKPOINT_DIR = "checkpoint"
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
    """

    def __init__(self, model: SPARC, cfg: TrainConfig, train: BatchSource,
                 val: BatchSource | None = None, run_dir: str | Path | None = None,
                 extra_config: dict[str, Any] | None = None):
        self.model, self.cfg, self.train_data, self.val_data = model, cfg, train, val
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.lr, eps=cfg.adam_eps,
            fused=all(_fused_supported(p) for p in model.parameters()),
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step_count = 0
        self.validated = 0
        """Epochs whose validation has been logged (a resumed run catches up on the
        last one when the checkpoint came between the epoch's end and its validation)."""
        self.checkpoint_step: int | None = None
        """Step of the last checkpoint written or resumed from."""
        self.extra_config = extra_config or {}
        self._stop_requested = False

    @property
    def epoch(self) -> int:
        """The epoch the next training batch belongs to (the data source keeps it)."""
        return self.train_data.epoch

    # ------------------------------------------------------------------ one step

    def step(self, batch: dict[str, Tensor]) -> StepOutput:
        """One optimisation step on ``batch``."""
        model = self.model
        model.train()
        out = model(batch)
        loss = out.losses.total.item()
        if not math.isfinite(loss):
            raise self._diverged(self.step_count + 1, f"the loss is {loss}")
        out.losses.total.backward()
        model.remove_parallel_grad_()
        self.optimizer.step()
        model.normalize_decoder_()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        if (self.cfg.resample_after_samples is not None
                and self.step_count % self.cfg.resample_every == 0):
            resample_dead_latents(model, self.optimizer, after_samples=self.cfg.resample_after_samples,
                                  std=self.cfg.resample_std, generator=self.generator)
        dead = model.dead_mask().float().mean(1)
        return StepOutput(
            losses=Losses(out.losses.total.detach(), *(_detach(d) for d in out.losses[1:])),
            l0={s: c.l0().float().mean().item() for s, c in out.codes.items()},
            dead_fraction={s: dead[model.stream_index(s)].item() for s in out.codes},
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean losses and L0 over the validation batches (counters untouched)."""
        assert self.val_data is not None
        self.model.eval()
        sums: dict[str, float] = {}
        rows = 0
        for batch in self.val_data:
            batch = {s: x.to(self.cfg.device) for s, x in batch.items()}
            out = self.model(batch)
            n = next(iter(batch.values())).shape[0]
            named = out.losses.named()
            named.update({f"l0/{s}": c.l0().float().mean().item() for s, c in out.codes.items()})
            for k, v in named.items():
                sums[k] = sums.get(k, 0.0) + v * n
            rows += n
        self.model.train()
        return {k: v / rows for k, v in sums.items()} if rows else {}

    # ------------------------------------------------------------------ the loop

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
        t0 = time.perf_counter()
        try:
            while self.epoch < cfg.epochs and self.step_count < total and not self._stop_requested:
                epoch = self.epoch
                for batch in self.train_data:
                    batch = {s: x.to(cfg.device, non_blocking=True) for s, x in batch.items()}
                    if self.step_count == 0:
                        init_pre_bias_(self.model, batch, cfg.pre_bias_init)
                    out = self.step(batch)
                    bar.update(1)
                    if self.step_count % cfg.log_every == 0 or self.step_count == total:
                        named = out.named()
                        bar.set_postfix_str(_postfix(named), refresh=False)
                        if log:
                            log.write({"step": self.step_count, "epoch": epoch,
                                       "samples": self.step_count * cfg.batch_size,
                                       "time": round(time.perf_counter() - t0, 3), **named})
                    if self.run_dir and cfg.checkpoint_every and self.step_count % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.step_count >= total or self._stop_requested:
                        break
                if self.epoch != epoch and cfg.validate and self.val_data is not None:
                    # The epoch ran to its end (the data source has moved to the next).
                    self._validate_epoch(epoch, log, bar.write)
        finally:
            signal.signal(signal.SIGINT, previous)
            bar.close()
        if self.run_dir:
            self.save_checkpoint()
            if not self._stop_requested:
                self.model.save(self.run_dir)
        if log:
            log.close()
        if self._stop_requested:
            raise KeyboardInterrupt

    def _validate_epoch(self, epoch: int, log: MetricsLog | None, say) -> None:
        val = self.validate()
        if log:
            log.write({"step": self.step_count, "epoch": epoch, "split": "val", **val})
        say(f"epoch {epoch + 1}/{self.cfg.epochs} val: {_postfix(val)}")
        self.validated = epoch + 1

    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        saved = (f"the checkpoint of step {self.checkpoint_step} is kept" if self.checkpoint_step is not None
                 else "no checkpoint was written")
        return TrainingDiverged(f"training diverged at step {step}: {what}; {saved}",
                                step=step, checkpoint_step=self.checkpoint_step)

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_requested = True

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
        target = self.run_dir / CHECKPOINT_DIR
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
        state = load_weights_only(path / TRAINER_STATE, "trainer state")
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr  # the run's settings decide (a resume may lower it)
        self.train_data.load_state_dict(state["data"])
        self.generator.set_state(state["generator"])
        self.step_count = int(state["step"])
        self.validated = int(state.get("validated", self.epoch))
        self.checkpoint_step = self.step_count


def _fused_supported(p: Tensor) -> bool:
    # Fused Adam exists for CPU and CUDA floating tensors in torch >= 2.4.
    return p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _detach(d: dict) -> dict:
    return {k: v.detach() for k, v in d.items()}


def _postfix(named: dict[str, float]) -> str:
    keep = [k for k in named if k == "loss" or k.startswith(("nmse/", "l0/", "dead/"))]
    parts = []
    for k in keep:
        v = named[k]
        parts.append(f"{k}={v:.3g}" if not k.startswith("dead/") else f"{k}={100 * v:.1f}%")
    return " ".join(parts) if not any(math.isnan(named[k]) for k in keep) else "loss=nan"
