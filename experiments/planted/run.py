"""Planted ground truth: each method sparc trains, scored against the truth.

    python experiments/planted/run.py [--out planted-runs] [--epochs 100] [--ks 6 3] [--seed 0] [--methods SLUG ...]

Makes the specification's §8 planted store (``sparc synth``'s defaults: 3 streams of
96/64/48 dims, 48 shared concepts and 12 exclusive to each stream, 3 active per row,
noise 0.02, 8,000 rows), trains every method of :data:`METHODS` at every k with §8's
training settings (L 256, lr 1e-3, batch 256, 100 epochs, pre-bias at the mean of the
first batch, seed 42), scores each against the truth on the store's test split
(docs/method.md §5.8) and prints a Markdown table (also written to OUT/table.md and,
with every figure, OUT/results.json). A rerun reuses finished runs with the same settings.

A new method is one more :class:`Method` in :data:`METHODS`: its name and the model
settings (``SPARCConfig`` fields) that make it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparc.atomic import write_text
from sparc.data import FeatureStore
from sparc.data.planted import PlantedSettings, make_planted
from sparc.eval.metrics.truth import score_store
from sparc.eval.truth_results import TruthReport
from sparc.jsonio import to_json
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig, finished_with, new_spec, open_run


@dataclass(frozen=True)
class Method:
    """One row group of the table: a name and the model settings that make the method."""

    name: str
    slug: str
    """Folder name of its runs."""
    model: dict[str, Any] = field(default_factory=dict)
    """SPARCConfig fields (besides n_latents and k, which the experiment sets)."""


METHODS: list[Method] = [
    Method("SPARC (global TopK + cross)", "sparc", {"topk": "global", "cross_coef": 1.0}),
    Method("local TopK + cross", "local", {"topk": "local", "cross_coef": 1.0}),
    Method("global TopK, no cross", "global-nocross", {"topk": "global", "cross_coef": 0.0}),
    Method("USAE (one source drawn per step)", "usae", {"method": "usae"}),
    Method("SPARC + 12 exclusive latents per stream", "sparc-exclusive",
           {"method": "sparc", "exclusive": ("s1:12", "s2:12", "s3:12")}),
]
"""The methods compared; add one here to add it to the table."""

N_LATENTS = 256
TRAIN = TrainConfig(lr=1e-3, batch_size=256, epochs=100, pre_bias_init="mean", seed=42, checkpoint_every=0,
                    validate=False, progress=False)
"""§8's training settings (validation and checkpoints off: only the final model is scored)."""


def train(store: FeatureStore, method: Method, k: int, train_cfg: TrainConfig,
          out: Path) -> tuple[SPARC, float | None]:
    """The trained model of ``method`` at ``k`` and the seconds its training took (None:
    reused, ``out`` held it finished with the same settings)."""
    model_cfg = SPARCConfig(n_latents=N_LATENTS, k=k, **method.model)
    spec = new_spec(store, model_cfg, train_cfg)
    if finished_with(out, spec):
        return SPARC.load(out), None
    t0 = time.perf_counter()
    with open_run(out, spec, overwrite=True) as run:
        run.trainer.fit()
    return SPARC.load(out), time.perf_counter() - t0


def seconds(secs: float | None) -> str:
    return "reused" if secs is None else f"{secs:.0f} s"


def table(rows: list[tuple[Method, int, TruthReport, float | None]]) -> str:
    """The Markdown table of the scores."""
    head = ["method", "k", "recovered", "matched recovered", "median best cos", "shared aligned",
            "aligned (firing)", "exclusive recovered", "exclusive latents P / R (firing)", "training"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, k, r, secs in rows:
        c = r.classification_by("firing")
        out.append("| " + " | ".join([
            method.name, str(k), f"{r.recovered:.2f}", f"{r.matched_recovered:.2f}", f"{r.median_best_cos:.3f}",
            f"{r.shared_aligned:.2f}", f"{r.shared_aligned_firing:.2f}", f"{r.exclusive_recovered:.2f}",
            f"{c.precision:.2f} / {c.recall:.2f}", seconds(secs)]) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("planted-runs"), help="folder of the store, runs and tables")
    ap.add_argument("--epochs", type=int, default=TRAIN.epochs, help="training epochs (§8: 100)")
    ap.add_argument("--ks", type=int, nargs="+", default=[6, 3], help="values of k")
    ap.add_argument("--rows", type=int, default=PlantedSettings().rows, help="rows of the planted store")
    ap.add_argument("--seed", type=int, default=0, help="seed of the planted store")
    ap.add_argument("--methods", nargs="+", choices=[m.slug for m in METHODS], default=None,
                    help="only these methods (their slugs; default: all)")
    args = ap.parse_args()

    t_start = time.perf_counter()
    settings = dataclasses.replace(PlantedSettings(), rows=args.rows, seed=args.seed)
    store_path = args.out / "store"
    if (store_path / "manifest.json").exists() and \
            FeatureStore.open(store_path).dataset_info().get("options") == to_json(settings):
        store = FeatureStore.open(store_path)
    else:
        store = make_planted(store_path, settings, overwrite=True)
    print(f"planted store {store_path}: {store.n_rows:,} rows, streams "
          + ", ".join(f"{s} ({d})" for s, d in store.streams.items()))
    train_cfg = dataclasses.replace(TRAIN, epochs=args.epochs)
    rows = []
    for k in args.ks:
        for method in [m for m in METHODS if args.methods is None or m.slug in args.methods]:
            model, secs = train(store, method, k, train_cfg, args.out / "runs" / f"{method.slug}-k{k}")
            report = score_store(model, store, "test")
            rows.append((method, k, report, secs))
            print(f"{method.name}, k {k}: recovered {report.recovered:.2f}, shared aligned "
                  f"{report.shared_aligned:.2f}, exclusive recovered {report.exclusive_recovered:.2f} "
                  f"({seconds(secs)})", flush=True)
    md = table(rows)
    print()
    print(md, end="")
    write_text(args.out / "table.md", md)
    write_text(args.out / "results.json", json.dumps(
        {"store": to_json(settings), "n_latents": N_LATENTS, "train": to_json(train_cfg),
         "runs": [{"method": m.name, "model": m.model, "k": k, "train_seconds": s, "truth": to_json(r)}
                  for m, k, r, s in rows]}, indent=2) + "\n")
    print(f"\nwrote {args.out / 'table.md'} and {args.out / 'results.json'}; "
          f"{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
