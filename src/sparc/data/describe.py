"""A short human-readable summary of a store (``sparc info``)."""

from __future__ import annotations

from sparc.data.splits import STORED_SPLITS
from sparc.data.store import FeatureStore
from sparc.data.truth import TRUTH, PlantedTruth


def describe_store(store: FeatureStore) -> str:
    """Summarise ``store`` in a few lines: rows, streams, splits, groups and labels."""
    m = store.manifest
    rows = store.rows()
    n_groups = len({r.group_id for r in rows})
    n_labelled = sum(1 for r in rows if r.labels)
    f_train, f_val, f_test = m.split_fractions
    sizes = " · ".join(f"{s.value} {len(store.split_rows(s)):,}" for s in STORED_SPLITS)
    streams = " · ".join(
        f"{name} {info.dim}-d {info.dtype}" for name, info in m.streams.items()
    )
    dropped = f"; {m.dropped_nonfinite:,} non-finite rows dropped" if m.dropped_nonfinite else ""
    lines = [
        f"store       {store.path}" + (f"  (created {m.created})" if m.created else ""),
        f"rows        {store.n_rows:,} in {n_groups:,} groups"
        + (f", {store.n_parts} parts" if store.n_parts > 1 else ""),
        f"streams     {streams}",
        f"splits      {sizes}  (by group; fractions {f_train:g}/{f_val:g}/{f_test:g}, "
        f"seed {m.split_seed})",
        f"labels      {n_labelled:,} labelled rows, {len(store.labels_vocab()):,} distinct labels",
        f"normalized  {'yes (unit L2 per vector)' if m.normalized else 'no'}{dropped}",
    ]
    if (store.path / TRUTH).is_file():
        truth = PlantedTruth.load(store.path / TRUTH)
        kinds = ", ".join(f"{(truth.kind == k).sum()} {k}" for k in dict.fromkeys(truth.kind.tolist()))
        lines.append(f"truth       planted ({TRUTH}): {truth.n_concepts} concepts ({kinds}); sparc eval scores "
                     "models against it")
    return "\n".join(lines)
