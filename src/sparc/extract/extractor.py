"""Extraction: a dataset and named backbones → a feature store, resumable.

Samples are processed in fixed *shards* of consecutive samples. Each finished shard is
saved atomically in a work directory beside the output (``.<out>.partial``); a rerun
of the same extraction skips the shards already there, so an interrupted extraction
continues where it stopped and never duplicates or loses rows. When every shard is
done the store is assembled and published atomically, and the work directory removed.

A sample is kept only if every stream can use it: an unreadable image (for image
streams) or an empty caption (for text streams) drops the row from all streams, so
rows stay aligned. Dropped rows are counted, reported and listed in the manifest.

``shard=(i, n)`` extracts only the i-th of n contiguous ranges of the samples (after
``limit``), so n machines or GPUs can share an extraction; the manifest records the
shard, and :func:`sparc.data.join.merge_stores` (``sparc store merge``) joins the n
stores into the one a single extraction writes (same rows, order, metadata and splits).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sparc.atomic import atomic_path, write_json
from sparc.data.rows import RowMeta
from sparc.data.store import FeatureStore
from sparc.data.writer import StoreWriter, check_target
from sparc.errors import SparcError
from sparc.extract.backbones.base import Backbone
from sparc.extract.datasets.base import Dataset, Sample
from sparc.workspace import EXTRACTION_WORK, clean_stale, exclusive_lock, mark

PLAN = "plan.json"


@dataclass(frozen=True)
class Skipped:
    """A sample left out of the store, and why."""

    row_id: str
    reason: str


def work_dir_of(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def extract(
    dataset: Dataset,
    streams: Mapping[str, Backbone],
    out: str | Path,
    *,
    batch_size: int = 64,
    shard_size: int = 2048,
    dtype: str = "float32",
    normalize: bool = True,
    overwrite: bool = False,
    limit: int | None = None,
    workers: int = 4,
    progress: bool = True,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    dataset_info: Mapping[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
) -> FeatureStore:
    """Encode every sample of ``dataset`` with every stream's backbone into a store.

    Parameters
    ----------
    dataset
        The samples, in the store's row order.
    streams
        Stream name → backbone (its modality picks the image or the caption).
    out
        Store directory to create.
    batch_size
        Samples per backbone call.
    shard_size
        Samples per resumable unit of work.
    limit
        Use only the first ``limit`` samples.
    workers
        Threads loading images.
    dataset_info
        Description of the dataset recorded in the manifest (name, options).
    shard
        ``(i, n)``: extract only samples ``[i·N // n, (i + 1)·N // n)`` of the N samples.
    """
    out = Path(out)
    if not streams:
        raise SparcError("no stream given; pass at least one --stream NAME=BACKBONE")
    if batch_size < 1 or shard_size < 1:
        raise SparcError("batch_size and shard_size must be at least 1")
    if shard is not None and not (isinstance(shard[0], int) and isinstance(shard[1], int)
                                  and 0 <= shard[0] < shard[1]):
        raise SparcError(f"shard must be i/n with 0 <= i < n, got {shard[0]}/{shard[1]}")
    # One writer per store; what killed writers left is removed (docs/formats.md).
    with exclusive_lock(out, "sparc extract"):
        clean_stale(out)
        clean_stale(work_dir_of(out), beside=False)
        check_target(out, overwrite)
        samples = list(dataset)
        if limit is not None:
            samples = samples[:limit]
        if not samples:
            raise SparcError(f"dataset {dataset.name or type(dataset).__name__} has no samples")
        part = None
        if shard is not None:
            i, n = shard
            first, stop = i * len(samples) // n, (i + 1) * len(samples) // n
            if first == stop:
                raise SparcError(f"shard {i}/{n} of {len(samples)} samples is empty; use fewer shards")
            part = {"index": i, "count": n, "first_sample": first, "n_samples": stop - first,
                    "of_samples": len(samples)}
            samples = samples[first:stop]
        work = work_dir_of(out)
        plan = {
            "dataset": dict(dataset_info or {"name": dataset.name}),
            "n_samples": len(samples),
            "shard_size": shard_size,
            "streams": {name: bb.fingerprint() for name, bb in streams.items()},
            **({"shard": part} if part else {}),
        }
        _prepare_work_dir(work, plan)

        n_shards = -(-len(samples) // shard_size)
        todo = [i for i in range(n_shards) if not (work / _shard_name(i)).exists()]
        remaining = sum(len(samples[i * shard_size : (i + 1) * shard_size]) for i in todo)
        bar = tqdm(total=len(samples), initial=len(samples) - remaining, disable=not progress,
                   desc="extract", unit="row", dynamic_ncols=True)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i in todo:
                shard = samples[i * shard_size : (i + 1) * shard_size]
                feats, kept, skipped = _encode_shard(dataset, streams, shard, batch_size, pool, bar)
                with atomic_path(work / _shard_name(i)) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, kept=np.asarray(kept, dtype=np.int64),
                                 skipped=np.asarray(json.dumps([s.__dict__ for s in skipped])),
                                 **{f"x_{name}": x for name, x in feats.items()})
        bar.close()
        return _assemble(dataset, streams, samples, work, out, n_shards, shard_size, dtype=dtype,
                         normalize=normalize, overwrite=overwrite, split_fractions=split_fractions,
                         split_seed=split_seed, dataset_info=plan["dataset"], shard=part)


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.npz"


def _prepare_work_dir(work: Path, plan: dict[str, Any]) -> None:
    """Create the work directory, or check that the one there is for this extraction."""
    if (work / PLAN).exists():
        old = json.loads((work / PLAN).read_text())
        if old != json.loads(json.dumps(plan)):
            raise SparcError(
                f"{work} holds an interrupted extraction with other settings; "
                "rerun it with the same dataset, streams and shard size, or delete that directory"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    mark(work, EXTRACTION_WORK, "sparc extract")  # so the next run may clean inside it
    write_json(work / PLAN, plan)


def _encode_shard(dataset: Dataset, streams: Mapping[str, Backbone], shard: list[Sample],
                  batch_size: int, pool: ThreadPoolExecutor, bar) -> tuple[dict[str, np.ndarray], list[int], list[Skipped]]:
    needs_image = any(bb.modality == "image" for bb in streams.values())
    needs_text = any(bb.modality == "text" for bb in streams.values())
    feats: dict[str, list[np.ndarray]] = {name: [] for name in streams}
    kept: list[int] = []
    skipped: list[Skipped] = []
    for start in range(0, len(shard), batch_size):
        batch = shard[start : start + batch_size]
        images = list(pool.map(lambda s: _try_image(dataset, s), batch)) if needs_image else [None] * len(batch)
        ok = []
        for j, (sample, image) in enumerate(zip(batch, images)):
            if needs_image and isinstance(image, Skipped):
                skipped.append(image)
            elif needs_text and not (sample.caption or "").strip():
                skipped.append(Skipped(sample.row_id, "empty caption"))
            else:
                ok.append(j)
        if ok:
            for name, bb in streams.items():
                items = [images[j] for j in ok] if bb.modality == "image" else [batch[j].caption for j in ok]
                x = bb.encode(items).numpy()
                if x.shape != (len(ok), bb.dim):
                    raise RuntimeError(f"backbone of stream {name!r} returned shape {x.shape}, expected {(len(ok), bb.dim)}")
                feats[name].append(x)
            kept.extend(start + j for j in ok)
        bar.update(len(batch))
    return ({name: np.concatenate(xs) if xs else np.zeros((0, streams[name].dim), np.float32)
             for name, xs in feats.items()}, kept, skipped)


def _try_image(dataset: Dataset, sample: Sample):
    try:
        return dataset.load_image(sample)
    except Exception as e:  # any decoding failure: the row is skipped in every stream
        return Skipped(sample.row_id, f"unreadable image {sample.image}: {type(e).__name__}: {e}")


def _assemble(dataset, streams, samples, work, out, n_shards, shard_size, *, dtype, normalize,
              overwrite, split_fractions, split_seed, dataset_info, shard=None) -> FeatureStore:
    skipped: list[dict[str, str]] = []
    info = dict(dataset_info)
    credits = dataset.credits()
    if credits:
        info["credits"] = credits
    with StoreWriter(out, {name: bb.dim for name, bb in streams.items()}, dtype=dtype, normalize=normalize,
                     overwrite=overwrite, split_fractions=split_fractions, split_seed=split_seed,
                     sources={name: bb.fingerprint() for name, bb in streams.items()},
                     dataset=info, label_hierarchy=dataset.label_hierarchy()) as w:
        for i in range(n_shards):
            with np.load(work / _shard_name(i)) as z:
                kept = z["kept"]
                skipped.extend(json.loads(str(z["skipped"])))
                if len(kept):
                    base = i * shard_size
                    meta = [_row_meta(samples[base + j]) for j in kept]
                    w.append({name: z[f"x_{name}"] for name in streams}, meta)
        w.extra["skipped_rows"] = skipped
        if shard is not None:
            w.extra["shard"] = shard
    shutil.rmtree(work, ignore_errors=True)
    if skipped:
        print(f"skipped {len(skipped)} of {len(samples)} samples (listed in {out}/manifest.json), e.g. "
              f"{skipped[0]['row_id']}: {skipped[0]['reason']}")
    return FeatureStore.open(out)


def _row_meta(s: Sample) -> RowMeta:
    return RowMeta(row_id=s.row_id, group_id=s.group_id, image=s.image, caption=s.caption, labels=tuple(s.labels))
