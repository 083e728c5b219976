"""BatchLoader: shuffled, resumable float32 batches from a memory-mapped store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from sparc.data.gather import read_rows, release_pages
from sparc.data.shuffle import EpochPlan, plan_epoch
from sparc.data.splits import Split
from sparc.data.store import FeatureStore
from sparc.errors import SparcError


class Batch(NamedTuple):
    """One batch with the store rows it came from.

    Attributes
    ----------
    features
        Stream name -> float32 tensor ``[B, d]``.
    rows
        Store row index of each batch row, int64 ``[B]``.
    """

    features: dict[str, torch.Tensor]
    rows: np.ndarray


def _positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SparcError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BatchLoader:
    """Iterate over one split of a store in batches, one epoch per ``for`` loop.

    ``for batch in loader:`` yields ``dict[str, Tensor]`` (float32 ``[B, d]`` per stream;
    ``Batch(features, rows)`` instead when ``return_rows=True``). Each loop runs the
    rest of the current epoch and then advances to the next one, so a training loop is
    ``for epoch in ...: for batch in loader: ...``.

    The order is a chunked shuffle (see :mod:`sparc.data.shuffle`) that depends only on
    ``(seed, epoch)``; :meth:`state_dict` / :meth:`load_state_dict` resume exactly: after
    loading, iteration yields the very batches an uninterrupted run would have.

    Parameters
    ----------
    store
        The feature store.
    split
        ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
    batch_size
        Rows per batch.
    streams
        Streams to load (default all, in store order).
    shuffle
        Chunked shuffle; if false rows come in store order.
    seed
        Seed of the shuffle.
    chunk_size
        Rows per contiguous chunk (the unit of the chunk-order permutation).
    buffer_chunks
        Chunks read and shuffled together; memory is about
        ``chunk_size * buffer_chunks * sum(dims) * itemsize`` bytes.
    drop_last
        Drop the last incomplete batch of each epoch.
    device
        Device of the yielded tensors.
    return_rows
        Yield :class:`Batch` (features and row indices) instead of the features dict.
    rank, world_size
        Data-parallel training: this process yields only its slice of every batch,
        rows ``[rank·n // world_size, (rank + 1)·n // world_size)`` of a batch of ``n``
        rows, and reads only those rows from the store. The slices of all ranks, in rank
        order, are the batch one process would get; the batch count, the state and
        ``batch_size`` (the rows of the whole batch) do not depend on ``world_size``, so a
        run resumes on any number of processes. A slice may be empty when a batch has
        fewer rows than there are ranks.
    """

    def __init__(
        self,
        store: FeatureStore,
        split: str | Split = "train",
        batch_size: int = 256,
        streams: Sequence[str] | None = None,
        shuffle: bool = True,
        seed: int = 42,
        chunk_size: int = 16384,
        buffer_chunks: int = 4,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        return_rows: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.store = store
        self.split = Split.parse(split)
        self.streams = store.select_streams(streams)
        self.batch_size = _positive("batch_size", batch_size)
        self.chunk_size = _positive("chunk_size", chunk_size)
        self.buffer_chunks = _positive("buffer_chunks", buffer_chunks)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SparcError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.return_rows = return_rows
        self.world_size = _positive("world_size", world_size)
        if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or not 0 <= rank < self.world_size:
            raise SparcError(f"rank must be an integer in [0, world_size={self.world_size}), got {rank!r}")
        self.rank = int(rank)
        self.rows_n = store.split_rows(self.split)
        if len(self.rows_n) == 0:
            raise SparcError(
                f"split '{self.split}' of store '{store.path}' has no rows; "
                "use another split or a store with more rows (or other split fractions)"
            )
        if len(self) == 0:
            raise SparcError(
                f"split '{self.split}' has {len(self.rows_n)} rows, fewer than one batch of "
                f"{self.batch_size} with drop_last; lower batch_size or disable drop_last"
            )
        self._x = {name: store.features(name) for name in self.streams}
        self._epoch = 0
        self._batch = 0

    # -- epochs and state ----------------------------------------------------------------

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.rows_n), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def n_rows(self) -> int:
        """Rows in the split."""
        return len(self.rows_n)

    @property
    def epoch(self) -> int:
        """Epoch the next batch belongs to."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch.

        Setting the epoch the loader is already in keeps its position, so a trainer may
        call ``set_epoch(e)`` at the top of every epoch without undoing a resume.
        """
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise SparcError(f"epoch must be an integer >= 0, got {epoch!r}")
        if epoch != self._epoch:
            self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """Position of the loader: ``{"epoch": e, "batch": b, "seed": s}``.

        ``batch`` counts the batches of epoch ``e`` already yielded; after the last batch
        of an epoch the state is already ``(e + 1, 0)``.
        """
        return {"epoch": self._epoch, "batch": self._batch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (the seed is taken from the state)."""
        try:
            epoch, batch, seed = (int(state[k]) for k in ("epoch", "batch", "seed"))
        except (KeyError, TypeError, ValueError):
            raise SparcError(
                f"invalid loader state {state!r}; expected {{'epoch': int, 'batch': int, 'seed': int}}"
            ) from None
        if epoch < 0 or seed < 0 or not 0 <= batch <= len(self):
            raise SparcError(
                f"loader state {state!r} does not fit this loader ({len(self)} batches per epoch); "
                "resume with the same store, split and batch size"
            )
        if batch == len(self):
            epoch, batch = epoch + 1, 0
        self._epoch, self._batch, self.seed = epoch, batch, seed

    def plan(self, epoch: int) -> EpochPlan:
        """Row order of ``epoch`` (deterministic)."""
        return plan_epoch(
            self.rows_n,
            chunk_size=self.chunk_size,
            buffer_chunks=self.buffer_chunks,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
        )

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        """Yield the remaining batches of the current epoch (dicts, or Batch if return_rows)."""
        for batch in self.iter_batches():
            yield batch if self.return_rows else batch.features

    def iter_batches(self) -> Iterator[Batch]:
        """Like iterating the loader, but always yields :class:`Batch`."""
        epoch, first = self._epoch, self._batch
        n_batches = len(self)
        index = first
        for rows_b, x in self._arrays(self.plan(epoch), first * self.batch_size):
            index += 1
            # Advance the state before yielding: a checkpoint taken after training on
            # this batch must resume with the next one.
            self._epoch, self._batch = (epoch + 1, 0) if index == n_batches else (epoch, index)
            feats = {
                name: torch.from_numpy(x_bd.astype(np.float32, copy=False)).to(self.device)
                for name, x_bd in x.items()
            }
            yield Batch(feats, rows_b)
        if index < n_batches:  # pragma: no cover - guards the plan arithmetic
            raise AssertionError(f"epoch ended after {index} of {n_batches} batches")

    def _arrays(self, plan: EpochPlan, start: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Numpy batches of ``plan`` from offset ``start`` (a multiple of the batch size):
        this rank's slice of each, read buffer by buffer (one per batch, in order)."""
        b = self.batch_size
        n = len(plan.order_n)
        end = (n // b) * b if self.drop_last else n
        first, n_batches = start // b, -(-(end - start) // b)

        def slice_of(j: int) -> tuple[int, int]:
            """This rank's positions [s, e) of batch j in the epoch's order."""
            rows = min(b, end - j * b)
            return j * b + self.rank * rows // self.world_size, j * b + (self.rank + 1) * rows // self.world_size

        pending: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
        next_j = first
        bounds = plan.bounds_b1.tolist()
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            lo, hi = max(lo, start), min(hi, end)
            if lo >= hi:
                continue
            pos = self._mine(lo, hi, b, end)
            want_r = plan.order_n[pos]
            # Read the buffer's rows in file order, then index them in shuffled order.
            sorted_r = np.sort(want_r)
            buf = {name: read_rows(self._x[name], sorted_r) for name in self.streams}
            local_r = np.searchsorted(sorted_r, want_r)
            # Cut at batch boundaries: a batch may span two buffers.
            cuts = np.flatnonzero(np.diff(pos // b)) + 1 if len(pos) else np.empty(0, dtype=np.int64)
            for a, z in zip([0, *cuts.tolist()], [*cuts.tolist(), len(pos)]) if len(pos) else ():
                idx = local_r[a:z]
                x = {name: np.take(buf[name], idx, axis=0) for name in self.streams}
                pending.setdefault(int(pos[a]) // b, []).append((want_r[a:z].copy(), x))  # a copy: don't pin the plan
            del buf  # free this buffer before the next one is read (peak = one buffer)
            for x_nd in self._x.values():
                release_pages(x_nd)  # RSS: what the loader holds, not the pages it read
            while next_j < first + n_batches and slice_of(next_j)[1] <= hi:
                pieces = pending.pop(next_j, [])
                if len(pieces) == 1:
                    yield pieces[0]
                elif pieces:
                    yield (np.concatenate([p[0] for p in pieces]),
                           {name: np.concatenate([p[1][name] for p in pieces]) for name in self.streams})
                else:  # an empty slice: more ranks than rows in this batch
                    yield (np.empty(0, dtype=np.int64),
                           {name: np.empty((0, self._x[name].shape[1]), self._x[name].dtype) for name in self.streams})
                next_j += 1

    def _mine(self, lo: int, hi: int, b: int, end: int) -> np.ndarray:
        """Positions in [lo, hi) of the epoch's order that belong to this rank."""
        pos = np.arange(lo, hi, dtype=np.int64)
        if self.world_size == 1:
            return pos
        j = pos // b
        rows = np.minimum(b, end - j * b)
        offset = pos - j * b
        return pos[(offset >= self.rank * rows // self.world_size) & (offset < (self.rank + 1) * rows // self.world_size)]

    def __repr__(self) -> str:
        return (
            f"BatchLoader(split={self.split.value}, rows={self.n_rows}, batch_size={self.batch_size}, "
            f"batches={len(self)}, streams={self.streams}, epoch={self._epoch}, batch={self._batch})"
        )
