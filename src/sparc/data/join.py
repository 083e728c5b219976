"""Stores made of parts: append a store's rows to another, or merge stores (the shards
of a sharded extraction) into one (DESIGN.md, "Parts").

Nothing is rewritten: each input part's files become a part of the result, hard-linked
when on the same file system (the files of a finished store never change), copied
otherwise. The result's manifest is written last, atomically, so a reader sees the store
before or after, never between; parts left by a killed append are removed by the next.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparc.atomic import atomic_path, write_error, write_json
from sparc.data.manifest import MANIFEST, PARTS_DIR, ROWS, SPLITS, Manifest, Part
from sparc.data.store import FeatureStore
from sparc.data.truth import TRUTH
from sparc.data.writer import check_target
from sparc.errors import SparcError
from sparc.workspace import STORE, check_not_input, clean_stale, exclusive_lock, mark


def check_compatible(first: FeatureStore, other: FeatureStore) -> None:
    """SparcError unless ``other``'s rows can follow ``first``'s in one store: the same
    streams (names, order, widths, dtypes), normalisation, split rule and labels."""
    a, b = first.manifest, other.manifest
    what = f"{other.path} cannot join {first.path}"
    if [(n, s.dim, s.dtype) for n, s in a.streams.items()] != [(n, s.dim, s.dtype) for n, s in b.streams.items()]:
        def streams(m: Manifest) -> str:
            return ", ".join(f"{n} {s.dim} {s.dtype}" for n, s in m.streams.items())
        raise SparcError(f"{what}: its streams ({streams(b)}) differ from ({streams(a)})")
    if a.normalized != b.normalized:
        raise SparcError(f"{what}: one is L2-normalised and the other not")
    if (a.split_seed, a.split_fractions) != (b.split_seed, b.split_fractions):
        raise SparcError(f"{what}: its splits come from seed {b.split_seed} and fractions {b.split_fractions}, "
                         f"not {a.split_seed} and {a.split_fractions}; write both with the same split settings")
    if a.extra.get("label_hierarchy") != b.extra.get("label_hierarchy"):
        raise SparcError(f"{what}: their label hierarchies differ")
    for name, s in a.streams.items():
        if (s.source or None) != (b.streams[name].source or None):
            raise SparcError(f"{what}: stream {name!r} comes from another backbone ({b.streams[name].source} "
                             f"vs {s.source})")


def append_store(store: str | os.PathLike, other: str | os.PathLike) -> FeatureStore:
    """Append the rows of store ``other`` after those of ``store``, as new parts.

    ``store`` then holds both (``other`` is left as it is); its ``created`` stamp is
    renewed, since its content changed (a run trained before resumes on it only with
    ``--other-store``).
    """
    store, other = Path(store), Path(other)
    check_not_input(store, [other], flag="STORE")
    with exclusive_lock(store, "sparc store append"):
        clean_stale(store)
        base, extra = FeatureStore.open(store), FeatureStore.open(other)
        if (store / TRUTH).exists():
            raise SparcError(f"{store} carries planted truth ({TRUTH}) for the rows it was made with and cannot "
                             "grow; make a larger one with 'sparc synth --rows N'")
        check_compatible(base, extra)
        _drop_unlisted_parts(store, base.manifest)
        parts = list(base.manifest.part_list())
        n = _next_part_number(store, parts)
        for k, part in enumerate(extra.manifest.part_list()):
            path = f"{PARTS_DIR}/{n + k:05d}"
            _link_part(other / part.path, store / path, extra)
            parts.append(Part(path, part.n_rows))
        manifest = _joined(base.manifest, [extra.manifest], parts)
        write_json(store / MANIFEST, manifest.to_json())
    return FeatureStore.open(store)


def merge_stores(out: str | os.PathLike, inputs: Sequence[str | os.PathLike], *,
                 overwrite: bool = False) -> FeatureStore:
    """One store at ``out`` holding the rows of ``inputs`` one after another.

    When the inputs are the shards of one extraction (``sparc extract --shard i/n``),
    every shard must be there once; they are joined in shard order whatever the order
    given, and the result equals the extraction done in one go.
    """
    out = Path(out)
    if not inputs:
        raise SparcError("merge needs at least one store")
    check_not_input(out, inputs)
    stores = [FeatureStore.open(p) for p in inputs]
    stores = _in_shard_order(stores)
    for s in stores[1:]:
        check_compatible(stores[0], s)
    with exclusive_lock(out, "sparc store merge"):
        clean_stale(out)
        check_target(out, overwrite)
        with atomic_path(out, is_dir=True) as tmp:
            parts = []
            for s in stores:
                for part in s.manifest.part_list():
                    path = f"{PARTS_DIR}/{len(parts):05d}"
                    _link_part(s.path / part.path, tmp / path, s)
                    parts.append(Part(path, part.n_rows))
            first = stores[0].manifest
            manifest = _joined(replace(first, parts=(), dropped_nonfinite=0, extra=_without_shard(first.extra),
                                       n_rows=0), [s.manifest for s in stores], parts, skipped_from_base=False)
            mark(tmp, STORE, "sparc store merge")
            write_json(tmp / MANIFEST, manifest.to_json())
    return FeatureStore.open(out)


def _in_shard_order(stores: list[FeatureStore]) -> list[FeatureStore]:
    shards = [s.manifest.extra.get("shard") for s in stores]
    if all(x is None for x in shards):
        return stores
    if any(x is None for x in shards):
        raise SparcError("merge either the shards of one extraction (sparc extract --shard) or whole stores, not both")
    counts = {x["count"] for x in shards}
    if len(counts) != 1:
        raise SparcError(f"these shards come from extractions cut into different numbers of shards ({sorted(counts)})")
    count = counts.pop()
    got = sorted(x["index"] for x in shards)
    if got != list(range(count)):
        missing = sorted(set(range(count)) - set(got))
        twice = sorted({i for i in got if got.count(i) > 1})
        raise SparcError(f"the shards of a {count}-shard extraction must each be given once; "
                         + (f"missing {', '.join(f'{i}/{count}' for i in missing)}" if missing else "")
                         + ("; " if missing and twice else "")
                         + (f"given twice: {', '.join(f'{i}/{count}' for i in twice)}" if twice else ""))
    datasets = {repr(s.manifest.extra.get("dataset")) for s in stores}
    if len(datasets) != 1:
        raise SparcError("these shards come from different datasets or dataset options")
    return [s for _, s in sorted(zip([x["index"] for x in shards], stores), key=lambda t: t[0])]


def _without_shard(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k != "shard"}


def _joined(base: Manifest, added: Sequence[Manifest], parts: list[Part], *,
            skipped_from_base: bool = True) -> Manifest:
    """The manifest of ``base`` with the rows of ``added`` after its own."""
    extra = dict(base.extra)
    skipped = list(base.extra.get("skipped_rows", [])) if skipped_from_base else []
    for m in added:
        skipped.extend(m.extra.get("skipped_rows", []))
    if "skipped_rows" in base.extra or any("skipped_rows" in m.extra for m in added):
        extra["skipped_rows"] = skipped
    return replace(base, n_rows=sum(p.n_rows for p in parts), parts=tuple(parts), extra=extra,
                   dropped_nonfinite=base.dropped_nonfinite + sum(m.dropped_nonfinite for m in added),
                   created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def _next_part_number(store: Path, parts: list[Part]) -> int:
    used = [int(Path(p.path).name) for p in parts if p.path.startswith(f"{PARTS_DIR}/") and Path(p.path).name.isdigit()]
    return max(used, default=0) + 1


def _drop_unlisted_parts(store: Path, manifest: Manifest) -> None:
    """Remove part folders a killed append left (not in the manifest; their writer is
    gone, since this one holds the lock)."""
    listed = {p.path for p in manifest.part_list()}
    folder = store / PARTS_DIR
    if folder.is_dir():
        for p in folder.iterdir():
            if f"{PARTS_DIR}/{p.name}" not in listed:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _link_part(src: Path, dst: Path, store: FeatureStore) -> None:
    """Make ``dst`` (a new folder) hold the files of the part at ``src``."""
    files = [ROWS, SPLITS, *(info.file for info in store.manifest.streams.values())]
    with atomic_path(dst, is_dir=True) as tmp:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                try:
                    os.link(src / name, tmp / name)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
                    shutil.copyfile(src / name, tmp / name)
            except OSError as e:
                raise write_error(tmp / name, e) from None
