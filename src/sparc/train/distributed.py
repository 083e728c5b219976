"""Data-parallel training on ``torch.distributed`` (launched by ``torchrun``).

``sparc train`` run under ``torchrun`` finds torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins the process
group: ``gloo`` for CPU tensors and, where CUDA and NCCL are available, ``nccl`` for CUDA
tensors; a run on ``cuda`` puts each rank on ``cuda:LOCAL_RANK``. What each part of a
step does across ranks (README.md, "Scaling out", shows the commands):

- **data** — ``--batch-size`` stays the rows of one optimizer step, over all ranks;
  every rank reads only its slice of each batch from the store
  (:class:`sparc.data.BatchLoader` with ``rank`` / ``world_size``), so the ranks read
  disjoint parts of every epoch, and the loader's position (epoch, batch) means the
  same whatever the number of ranks: a run resumes on any number of them.
- **gradients** — each rank back-propagates its loss scaled by its share of the rows;
  the gradients are summed over the ranks (``all_reduce``), which gives the gradient of
  the loss of the whole batch, as DDP does (DDP averages over ranks, which equals it only
  when every rank has as many rows; the summed form is exact for the short last batch).
- **dead-latent counters** — reduced inside the model's forward, before AuxK picks its
  latents (the ``reduce_firing`` of :class:`sparc.model.engine.StepEngine`).
- **the decoder constraint and the optimizer step** — every rank applies them to the
  same summed gradient, so the weights stay identical (bitwise) on every rank; the
  resampling RNG is seeded alike and sees the same counters.
- **metrics and validation** — sums over rows reduced over ranks; rank 0 logs.
- **checkpoints** — written by rank 0 only (atomically, holding the run's lock); the
  others receive the run's settings, weights and state from rank 0, so they need no
  access to the run directory.
- **failures** — every collective waits at most ``--dist-timeout`` seconds; a rank
  that fails closes its connections, and the others stop with :class:`RankFailed`
  instead of hanging.

Why not ``DistributedDataParallel`` itself: it averages gradients over ranks (not exact
for uneven shards), broadcasts buffers from rank 0 at every forward (which would undo
the counters' reduction), and needs every rank to run forward and backward even with no
rows. The model has four parameter tensors, so summing their gradients with one
asynchronous ``all_reduce`` each is all the machinery DDP's buckets would provide.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from sparc.errors import SparcError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 600.0


class RankFailed(SparcError):
    """Another rank of a distributed run failed or stopped; its own message says why."""

    exit_code = 3


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or anything that sets its
    environment variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@dataclass
class Distributed:
    """This process's place in a data-parallel run, and the collectives sparc uses.

    Every collective raises :class:`RankFailed` (one line) when another rank is gone or
    does not answer within ``timeout_s``.
    """

    rank: int
    world_size: int
    local_rank: int
    timeout_s: float = DEFAULT_TIMEOUT_S
    device: str = "cpu"
    """The torch device this rank trains on (:meth:`use_device`)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    # ------------------------------------------------------------------ set-up

    @classmethod
    def from_env(cls, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
        """Join the process group that torchrun's environment describes."""
        missing = [k for k in ENV if k not in os.environ]
        if missing:
            raise SparcError(f"distributed training needs torchrun's environment; {', '.join(missing)} "
                             "unset: launch with torchrun (README.md, 'Scaling out')")
        try:
            rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        except ValueError:
            raise SparcError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
        if not (0 <= rank < world):
            raise SparcError(f"RANK {rank} is not in [0, WORLD_SIZE={world})")
        if not timeout_s > 0:
            raise SparcError(f"--dist-timeout must be a positive number of seconds, got {timeout_s}")
        # The device comes with the run's settings (rank 0 reads them), after joining:
        # so the group serves CPU tensors and, where possible, CUDA ones.
        cuda = torch.cuda.is_available() and dist.is_nccl_available() and local < torch.cuda.device_count()
        if cuda:
            torch.cuda.set_device(local)
        try:
            if not dist.is_initialized():
                dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo",
                                        timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise RankFailed(f"rank {rank} could not join the other {world - 1} ranks at "
                             f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({_first_line(e)})") from None
        return cls(rank, world, local, timeout_s)

    def use_device(self, device: str) -> str:
        """Train on ``device``'s type: ``cuda`` → ``cuda:LOCAL_RANK``; returns it."""
        kind = torch.device(device).type
        if kind == "cuda":
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if self.local_rank >= n:
                raise SparcError(f"rank {self.rank} wants cuda:{self.local_rank} (LOCAL_RANK) but this machine has "
                                 f"{n} CUDA devices; start at most one process per GPU (torchrun --nproc-per-node)")
            if not dist.is_nccl_available():
                raise SparcError("this PyTorch has no NCCL, which distributed training on CUDA needs")
            self.device = f"cuda:{self.local_rank}"
        elif kind == "cpu":
            self.device = "cpu"
        else:
            raise SparcError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device!r}")
        return self.device

    def close(self) -> None:
        """Leave the process group (after a run that ended normally on every rank)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ collectives

    def _failed(self, e: BaseException) -> RankFailed:
        return RankFailed(f"rank {self.rank} of {self.world_size} lost the others ({_first_line(e)}); another "
                          "rank failed or stopped, and its own message says why; the run keeps its last checkpoint")

    def all_reduce_(self, *tensors: Tensor) -> None:
        """Sum each tensor in place over the ranks."""
        try:
            works = [dist.all_reduce(t, async_op=True) for t in tensors]
            for w in works:
                w.wait(datetime.timedelta(seconds=self.timeout_s))
        except RuntimeError as e:
            raise self._failed(e) from None

    def broadcast_(self, *tensors: Tensor) -> None:
        """Overwrite each tensor with rank 0's."""
        try:
            for t in tensors:
                dist.broadcast(t, src=0)
        except RuntimeError as e:
            raise self._failed(e) from None

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable) on every rank."""
        box = [obj if self.is_main else None]
        try:
            dist.broadcast_object_list(box, src=0)
        except RuntimeError as e:
            raise self._failed(e) from None
        return box[0]

    def gather_rows(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The whole batch whose slices the ranks hold, in rank order."""
        n = torch.tensor([next(iter(batch.values())).shape[0]], device=self.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        try:
            dist.all_gather(sizes, n)
            most = int(max(s.item() for s in sizes))
            out = {}
            for name, x in batch.items():
                padded = x.new_zeros(most, x.shape[1])
                padded[: x.shape[0]] = x
                parts = [torch.empty_like(padded) for _ in range(self.world_size)]
                dist.all_gather(parts, padded)
                out[name] = torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])
        except RuntimeError as e:
            raise self._failed(e) from None
        return out


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it moved to the CPU (for :meth:`broadcast_object`)."""
    if isinstance(obj, Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line.split(". ")[0][:300]
