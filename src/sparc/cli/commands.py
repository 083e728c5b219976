"""The ``sparc`` subcommands, one dataclass each: fields are the flags (their
docstrings are the help), ``run()`` does the work."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from sparc.demo import DemoConfig
from sparc.errors import SparcError
from sparc.eval.settings import EvalSettings
from sparc.model import SPARC, SPARCConfig
from sparc.options import named_values
from sparc.train import TrainConfig

Flat = tyro.conf.OmitArgPrefixes


@dataclass
class Train:
    """Train a SPARC model on a feature store; resumable."""

    store: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]
    """Feature store directory (e.g. from 'sparc import-h5')."""

    out: Path
    """Run directory to create (config.json, model.safetensors, metrics.jsonl, checkpoint/)."""

    model: Annotated[SPARCConfig, Flat] = field(default_factory=SPARCConfig)
    train: Annotated[TrainConfig, Flat] = field(default_factory=TrainConfig)

    streams: tuple[str, ...] | None = None
    """Streams to train on (default: all streams of the store)."""

    resume: bool = False
    """Continue the run in --out from its last checkpoint (its saved settings are used)."""

    resume_lr: float | None = None
    """With --resume: continue with this learning rate instead of the saved one (e.g. lower, after a divergence)."""

    other_store: bool = False
    """With --resume: continue on STORE even though it is not the store the run was trained on."""

    overwrite: bool = False
    """Replace the run in --out (only a folder sparc wrote as a run; anything else is refused)."""

    def run(self) -> None:
        from sparc.data import FeatureStore
        from sparc.errors import Interrupted, TrainingDiverged
        from sparc.train import new_spec, open_run

        if self.resume_lr is not None and not self.resume:
            raise SparcError("--resume-lr goes with --resume; for a new run use --lr")
        if self.resume_lr is not None:
            TrainConfig(lr=self.resume_lr)  # the same checks as --lr
        spec = None if self.resume else new_spec(FeatureStore.open(self.store), self.model, self.train, self.streams)
        with open_run(self.out, spec, resume=self.resume, overwrite=self.overwrite, store=self.store,
                      lr=self.resume_lr, other_store=self.other_store) as run:
            if run.resumed:
                print(f"resuming {self.out} with its saved settings (lr {run.spec.train.lr:g})")
            try:
                run.trainer.fit()
            except KeyboardInterrupt:
                raise Interrupted(f"interrupted at step {run.trainer.step_count}; continue with: "
                                  f"sparc train {self.store} --out {self.out} --resume") from None
            except TrainingDiverged as e:
                lower = f"{run.spec.train.lr / 10:g}"
                how = (f"resume from it with a lower learning rate: sparc train {self.store} --out {self.out} "
                       f"--resume --resume-lr {lower}") if e.checkpoint_step is not None else (
                    f"start again with a lower learning rate: sparc train {self.store} --out {self.out} "
                    f"--overwrite --lr {lower}")
                raise TrainingDiverged(f"{e}; {how}", step=e.step, checkpoint_step=e.checkpoint_step) from None
        print(f"trained {run.trainer.step_count} steps; model saved in {self.out}")


@dataclass
class ImportH5:
    """Build a feature store from the original code's HDF5 files (one per stream)."""

    stream: tuple[str, ...]
    """One NAME=FILE.h5 per stream, in order (e.g. --stream dino=dino.h5 clip_img=img.h5)."""

    out: Path
    """Store directory to create."""

    metadata: Path | None = None
    """CSV or JSONL with row_id, group_id (split unit), image (rows with the same image match in retrieval), caption, labels per row (optional)."""

    dataset: str = "features"
    """Name of the HDF5 dataset holding the [N, D] features."""

    dtype: Literal["float32", "float16"] = "float32"
    """Storage precision of the features."""

    normalize: bool = True
    """L2-normalise every vector (the paper does)."""

    drop_nonfinite: bool = False
    """Drop rows with NaN/Inf in any stream instead of refusing them."""

    overwrite: bool = False
    """Replace an existing store at --out."""

    def run(self) -> None:
        from sparc.data import describe_store, import_h5

        streams = {name: Path(path) for name, path in named_values(self.stream, "NAME=FILE.h5").items()}
        store = import_h5(streams, self.out, metadata=self.metadata, dataset=self.dataset,
                          dtype=self.dtype, normalize=self.normalize,
                          drop_nonfinite=self.drop_nonfinite, overwrite=self.overwrite)
        print(describe_store(store))


@dataclass
class Demo:
    """Run the whole method on the embedded OpenMoji data: real features from three
    models, SPARC and the local-TopK baseline trained and compared."""

    demo: Annotated[DemoConfig, Flat] = field(default_factory=DemoConfig)

    def run(self) -> None:
        from sparc.demo import run_demo

        result = run_demo(self.demo)
        print()
        print(result.summary)
        timing = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
        print(f"output in {self.demo.out}/ (store/, runs/, summary.md); {timing}")


@dataclass
class Extract:
    """Encode a dataset with one backbone per stream into a feature store; resumable."""

    dataset: Annotated[str | None, tyro.conf.arg(metavar="NAME[:KEY=VALUE,...]")] = None
    """Dataset adapter, with options (e.g. image-folder:root=imgs,captions=c.csv); required."""

    stream: Annotated[tuple[str, ...], tyro.conf.arg(metavar="NAME=BACKBONE[:KEY=VALUE,...]")] = ()
    """One per stream, e.g. img=efficientnet-lite txt=minilm; required."""

    out: Annotated[Path | None, tyro.conf.arg(metavar="PATH")] = None
    """Store directory to create; required."""

    list_options: Annotated[bool, tyro.conf.arg(name="list"), tyro.conf.FlagCreatePairsOff] = False
    """Print every dataset and backbone with its options (name, type, default, help) and exit."""

    batch_size: int = 64
    """Samples per backbone call."""

    device: str = "cpu"
    """Torch device of the backbones (cpu, cuda, ...)."""

    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Backbone precision (fp16/bf16 need a GPU)."""

    dtype: Literal["float32", "float16"] = "float32"
    """Storage precision of the features."""

    normalize: bool = True
    """L2-normalise every vector (the paper does)."""

    limit: int | None = None
    """Use only the first N samples of the dataset."""

    workers: int = 4
    """Threads loading images."""

    overwrite: bool = False
    """Replace an existing store at --out."""

    progress: bool = True
    """Show a progress bar."""

    def run(self) -> None:
        from sparc.data import describe_store
        from sparc.extract import extract
        from sparc.extract.backbones import BACKBONES
        from sparc.extract.datasets import DATASETS
        from sparc.options import json_options, parse_spec, split_spec

        if self.list_options:
            print("datasets (--dataset NAME[:key=value,...]):\n" + DATASETS.describe())
            print("backbones (--stream NAME=FAMILY[:key=value,...]; all also take --device and --precision):\n"
                  + BACKBONES.describe())
            return
        missing = [flag for flag, given in (("--dataset", self.dataset), ("--stream", self.stream), ("--out", self.out))
                   if not given]
        if missing or self.dataset is None or self.out is None:
            raise SparcError(f"extract needs {', '.join(missing)} (see the datasets and backbones with --list)")
        name, options = parse_spec(self.dataset, DATASETS)
        dataset = DATASETS.get(name)(options)
        streams = {}
        for stream, spec in named_values(self.stream, "NAME=BACKBONE[:key=value,...]").items():
            family, bb_options = parse_spec(spec, BACKBONES)
            streams[stream] = BACKBONES.get(family)(bb_options, device=self.device, precision=self.precision)
        given = json_options(options, keys=split_spec(self.dataset)[1])
        store = extract(dataset, streams, self.out, batch_size=self.batch_size, dtype=self.dtype,
                        normalize=self.normalize, overwrite=self.overwrite, limit=self.limit,
                        workers=self.workers, progress=self.progress,
                        dataset_info={"name": name, "options": given})
        print(describe_store(store))


@dataclass
class ImportCheckpoint:
    """Convert the original code's msae_checkpoint.pth into a sparc model directory."""

    checkpoint: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CHECKPOINT")]
    """The .pth file (run_config.json beside it supplies k, topk, auxk when present)."""

    out: Path
    """Model directory to write (config.json + model.safetensors)."""

    topk: Literal["global", "local"] | None = None
    """TopK type, when run_config.json does not say."""

    k: int | None = None
    """Active latents, when run_config.json does not say."""

    auxk: int | None = None
    """AuxK latents, when run_config.json does not say."""

    batch_size: int | None = None
    """Batch size the original was trained with (turns its step counters into samples)."""

    overwrite: bool = False
    """Replace an existing model at --out."""

    def run(self) -> None:
        from sparc.train.run import run_exists

        if run_exists(self.out) and not self.overwrite:
            raise SparcError(f"{self.out} already holds a model; pass --overwrite to replace it")
        model = SPARC.from_reference(self.checkpoint, topk=self.topk, k=self.k, auxk=self.auxk,
                                     batch_size=self.batch_size)
        model.save(self.out)
        print(f"imported {self.checkpoint} → {self.out}\n{describe_model(model)}")


@dataclass
class Info:
    """Describe a feature store, a run / model directory, or an original checkpoint."""

    path: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="PATH")]
    """A store directory, a run directory or a .pth checkpoint."""

    def run(self) -> None:
        p = self.path
        if (p / "manifest.json").exists():
            from sparc.data import FeatureStore, describe_store

            print(describe_store(FeatureStore.open(p)))
        elif p.is_dir() and ((p / "config.json").exists() or (p / "checkpoint").is_dir()):
            print(describe_model(SPARC.load(p)))
            print(describe_run(p))
        elif p.suffix in (".pth", ".pt") and p.exists():
            from sparc.model.reference import read_reference

            state, run = read_reference(p)
            print(f"original checkpoint {p}: {len(state)} tensors; run_config: {json.dumps(run)}")
        else:
            raise SparcError(f"{p} is neither a feature store, a run directory nor a .pth checkpoint")


@dataclass
class Eval:
    """Evaluate a run on a split of a feature store: eval.json, eval.md and plots."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store to evaluate on (default: the store the run was trained on)."""

    out: Path | None = None
    """Directory to write (default: RUN/eval-<split>); an earlier evaluation there is replaced."""

    settings: Annotated[EvalSettings, Flat] = field(default_factory=EvalSettings)

    def run(self) -> None:
        from sparc.data import FeatureStore
        from sparc.eval import evaluate, write_eval
        from sparc.eval.output.markdown import render_summary
        from sparc.eval.output.write import check_out_dir
        from sparc.workspace import check_not_input, clean_stale, exclusive_lock

        model = SPARC.load(self.run_dir)
        store = FeatureStore.open(self.store or _trained_store(self.run_dir))
        out = self.out or self.run_dir / f"eval-{self.settings.split}"
        check_not_input(out, [store.path])
        if self.run_dir.resolve().is_relative_to(out.resolve()):
            raise SparcError(f"--out {out} holds the run {self.run_dir}; write the evaluation somewhere else")
        with exclusive_lock(out, "sparc eval"):
            clean_stale(out)
            check_out_dir(out)
            report = evaluate(model, store, self.settings, run=self.run_dir.resolve().name)
            write_eval(report, out, plots=self.settings.plots)
        print(render_summary(report))
        print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")


@dataclass
class Compare:
    """Compare evaluated runs side by side in the paper's table shape (Markdown and JSON)."""

    paths: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_OR_EVAL_DIR")]
    """Run directories (their eval-<split>/), eval directories or eval.json files."""

    out: Path | None = None
    """Directory to write compare.md and compare.json into (default: print only)."""

    split: str = "test"
    """Which eval-<split>/ to read from run directories."""

    def run(self) -> None:
        from sparc.atomic import write_json, write_text
        from sparc.eval import compare, render_comparison

        comparison = compare(self.paths, self.split)
        md = render_comparison(comparison)
        print(md, end="")
        if self.out is not None:
            if self.out.exists() and not self.out.is_dir():
                raise SparcError(f"{self.out} exists and is not a directory; choose another --out")
            write_text(self.out / "compare.md", md)
            write_json(self.out / "compare.json", comparison.to_json())
            print(f"wrote {self.out / 'compare.md'} and {self.out / 'compare.json'}")


def _trained_store(run_dir: Path) -> Path:
    """The store recorded in the run's spec (RUN/train_config.json)."""
    from sparc.train.run import RUN_SPEC, RunSpec

    if not (run_dir / RUN_SPEC).exists():
        raise SparcError(f"{run_dir} does not record the store it was trained on; pass --store")
    return Path(RunSpec.read(run_dir).store)


def describe_model(model: SPARC) -> str:
    cfg = model.cfg
    dead = model.dead_mask().float().mean(1)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"SPARC model: {cfg.n_latents} latents, k={cfg.k}, topk={cfg.topk}, auxk={cfg.auxk}, "
        f"cross_coef={cfg.cross_coef}, {n_params / 1e6:.2f}M parameters",
        "streams: " + ", ".join(f"{s} ({d})" for s, d in model.streams.items()),
        "dead latents (by training counters): "
        + ", ".join(f"{s} {100 * dead[i].item():.1f}%" for i, s in enumerate(model.names)),
    ]
    return "\n".join(lines)


def describe_run(run: Path) -> str:
    lines = []
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        train = [r for r in records if r.get("split") != "val"]
        val = [r for r in records if r.get("split") == "val"]
        if train:
            last = train[-1]
            lines.append(f"trained {last['step']} steps ({last.get('samples', 0)} samples); last loss {last['loss']:.4g}")
        if val:
            v = val[-1]
            nm = " ".join(f"{k}={x:.4g}" for k, x in v.items() if k.startswith("nmse/"))
            lines.append(f"last validation (epoch {v['epoch'] + 1}): loss {v['loss']:.4g} {nm}")
    if (run / "checkpoint").is_dir() and not (run / "model.safetensors").exists():
        lines.append("run in progress or interrupted: resume with 'sparc train STORE --out RUN --resume'")
    return "\n".join(lines)
