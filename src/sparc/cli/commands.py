"""The ``sparc`` subcommands, one dataclass each: fields are the flags (their
docstrings are the help), ``run()`` does the work."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from sparc.demo import DemoConfig
from sparc.errors import SparcError
from sparc.eval.settings import EvalSettings
from sparc.explore.naming import NamingSettings
from sparc.explore.report.settings import ReportSettings
from sparc.explore.stats import StatsSettings
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

    dist_timeout: float = 600.0
    """Under torchrun: seconds a rank waits for the others before it stops, naming the failure (README.md, 'Scaling out')."""

    kernels: Literal["auto", "fused", "triton", "pytorch"] | None = None
    """Sparse kernels: fused (numba, CPU float32/64), triton (CUDA), pytorch, or auto (the fast ones where they load).
    Default: SPARC_KERNELS, else auto; with --resume: the run's recorded ones, which keep its rounding
    (docs/method.md §4.2)."""

    bf16_select: Literal["auto", "on", "off"] | None = None
    """Choose each sample's latents through a certified bf16 encoder pass (exactly the float32 choice;
    auto: where the hardware has bf16 matrix units — AVX512-BF16, AMX, CUDA). Default: SPARC_BF16_SELECT,
    else auto; with --resume: as recorded (docs/method.md §4.3)."""

    def run(self) -> None:
        from sparc.model import certified, kernels
        from sparc.train.distributed import Distributed, launched_by_torchrun

        # Given flags set this process's choice; without them the environment's stands.
        if self.kernels is not None:
            kernels.set_kernels(self.kernels)
        if self.bf16_select is not None:
            certified.set_bf16_selection(self.bf16_select)

        if self.resume_lr is not None and not self.resume:
            raise SparcError("--resume-lr goes with --resume; for a new run use --lr")
        if self.resume_lr is not None:
            TrainConfig(lr=self.resume_lr)  # the same checks as --lr
        # Under torchrun, one rank of a data-parallel run (sparc.train.distributed).
        dist = Distributed.from_env(timeout_s=self.dist_timeout) if launched_by_torchrun() else None
        self._train(dist)
        # Only after a normal end: a rank that fails exits, and its closed connections
        # stop the others.
        if dist is not None:
            dist.close()

    def _train(self, dist) -> None:
        from sparc.data import FeatureStore
        from sparc.errors import Interrupted, TrainingDiverged
        from sparc.train import new_spec, open_run
        from sparc.train.backend import Backend

        main = dist is None or dist.is_main
        backend = Backend(self.kernels or "auto", self.bf16_select or "auto")
        spec = None if self.resume or not main else new_spec(FeatureStore.open(self.store), self.model, self.train,
                                                             self.streams, backend=backend)
        with open_run(self.out, spec, resume=self.resume, overwrite=self.overwrite, store=self.store,
                      lr=self.resume_lr, other_store=self.other_store, backend=backend, dist=dist) as run:
            if run.resumed and main:
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
        if main:
            ranks = f" on {dist.world_size} ranks" if dist is not None else ""
            print(f"trained {run.trainer.step_count} steps{ranks}; model saved in {self.out}")


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
        print(f"output in {self.demo.out}/ (store/, runs/, report/, summary.md); {timing}")
        print(f"open the report in a browser: {result.report / 'index.html'}")


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

    shard: Annotated[str | None, tyro.conf.arg(metavar="I/N")] = None
    """Extract only the I-th of N equal ranges of the samples (I from 0), e.g. one per machine; join the N stores with 'sparc store merge'."""

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
        shard = _shard(self.shard)
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
                        dataset_info={"name": name, "options": given}, shard=shard)
        print(describe_store(store))


def _shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` → (I, N)."""
    if text is None:
        return None
    i, sep, n = text.partition("/")
    try:
        shard = (int(i), int(n))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard[0] < shard[1]:
        raise SparcError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return shard


@dataclass
class StoreMerge:
    """Join feature stores into one, their rows one after another: the shards of a sharded extraction (in shard order), or any stores with the same streams and splits."""

    inputs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="STORE...")]
    """The stores to join (shards of one extraction: all of them, in any order)."""

    out: Path
    """Store directory to create; its parts are hard links to the inputs' files where the file system allows (else copies)."""

    overwrite: bool = False
    """Replace a store at --out (only a folder sparc wrote as a store)."""

    def run(self) -> None:
        from sparc.data import describe_store
        from sparc.data.join import merge_stores

        print(describe_store(merge_stores(self.out, self.inputs, overwrite=self.overwrite)))


@dataclass
class StoreAppend:
    """Append the rows of a store to another, as new parts: the store grows without rewriting what it holds."""

    store: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]
    """The store that grows (its creation stamp is renewed: runs trained on it resume only with --other-store)."""

    other: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OTHER")]
    """The store whose rows are added (same streams, dtype, normalisation and split settings); left as it is."""

    def run(self) -> None:
        from sparc.data import describe_store
        from sparc.data.join import append_store

        print(describe_store(append_store(self.store, self.other)))


@dataclass
class StoreCommand:
    """Join or grow feature stores: merge the shards of an extraction (or several stores), append one store's rows to another."""

    action: Annotated[
        Union[Annotated[StoreMerge, tyro.conf.subcommand("merge")],  # noqa: UP007 (tyro reads the Union)
              Annotated[StoreAppend, tyro.conf.subcommand("append")]],
        tyro.conf.OmitSubcommandPrefixes,
    ]

    def run(self) -> None:
        self.action.run()


@dataclass
class Push:
    """Upload a finished run's model to the Hugging Face Hub (config.json, model.safetensors, a model card from its settings and evaluations)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory of a finished training (sparc train)."""

    repo: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ORG/NAME")]
    """Hub repository to upload to (created if missing)."""

    private: bool = False
    """Create the repository as private."""

    revision: str | None = None
    """Branch to commit to (default: main)."""

    message: str | None = None
    """Commit message."""

    def run(self) -> None:
        from sparc.hub import push

        url = push(self.run_dir, self.repo, private=self.private, revision=self.revision, message=self.message)
        print(f"pushed {self.run_dir} to {self.repo}: {url}")


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
        from sparc.workspace import RUN, check_replaceable, mark, writing

        out = self.out
        model = SPARC.from_reference(self.checkpoint, topk=self.topk, k=self.k, auxk=self.auxk,
                                     batch_size=self.batch_size)
        with writing(out, "sparc import-checkpoint"):
            if out.exists() and (not out.is_dir() or any(out.iterdir())) and not self.overwrite:
                raise SparcError(f"{out} is not empty; pass --overwrite to replace a model sparc wrote there, "
                                 "or choose another --out")
            check_replaceable(out, RUN, "choose another --out")  # the one ownership rule
            out.mkdir(parents=True, exist_ok=True)
            mark(out, RUN, "sparc import-checkpoint")
            model.save(out)
        print(f"imported {self.checkpoint} → {out}\n{describe_model(model)}")


@dataclass
class Info:
    """Describe a feature store, a run / model directory, or an original checkpoint."""

    path: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="PATH")]
    """A store directory, a run directory or a .pth checkpoint."""

    def run(self) -> None:
        from sparc.train.run import run_exists

        p = self.path
        if (p / "manifest.json").exists():
            from sparc.data import FeatureStore, describe_store

            print(describe_store(FeatureStore.open(p)))
        elif p.is_dir() and run_exists(p):
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
    from sparc.train.metrics import read_metrics

    lines = []
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        records = read_metrics(metrics)
        train = [r for r in records if r.get("split") != "val"]
        val = [r for r in records if r.get("split") == "val"]
        if train:
            last = train[-1]
            lines.append(f"trained {last['step']} steps ({last.get('samples', 0)} samples); last loss {last['loss']:.4g}")
        if val:
            v = val[-1]
            nm = " ".join(f"{k}={x:.4g}" for k, x in v.items() if k.startswith("nmse/"))
            lines.append(f"last validation (epoch {v['epoch'] + 1}): loss {v['loss']:.4g} {nm}")
    if not (run / "model.safetensors").exists():
        lines.append("run in progress or interrupted: resume with 'sparc train STORE --out RUN --resume'")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- looking inside (sparc.explore)


def _explorer(run: Path, store: Path | None, split: str, *, device: str, progress: bool, names: bool = True,
              backbone_device: str = "cpu"):
    """The run's Explorer, reusing the statistics and names saved for the split."""
    from sparc.explore import Explorer, NamingSettings, StatsSettings

    return Explorer.open(run, store, stats_settings=StatsSettings(split=split, device=device, progress=progress),
                         naming=NamingSettings(device=backbone_device) if names else None, reuse_any=True,
                         device=backbone_device)


@dataclass
class Stats:
    """Compute the latent statistics of a run on a split (saved in RUN/explore-<split>/, reused by latent, query, names and report)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    settings: Annotated[StatsSettings, Flat] = field(default_factory=StatsSettings)

    recompute: bool = False
    """Recompute even when statistics with these settings are saved."""

    def run(self) -> None:
        from sparc.data import FeatureStore
        from sparc.explore import stats_for_run
        from sparc.explore.explorer import check_store_belongs, trained_store
        from sparc.explore.stats import explore_dir

        settings = self.settings
        model = SPARC.load(self.run_dir)
        store = FeatureStore.open(self.store or trained_store(self.run_dir))
        check_store_belongs(self.run_dir, model, store)
        stats = stats_for_run(self.run_dir, model, store, settings, recompute=self.recompute)
        alive = ", ".join(f"{s} {int((stats.fires[0, i] > 0).sum()):,}" for i, s in enumerate(stats.streams))
        print(f"latent statistics of {stats.n_latents:,} latents on {stats.n_rows:,} rows of the {stats.settings.split} "
              f"split ({stats.seconds:.1f} s to compute); latents firing (joint): {alive}")
        print(f"saved in {explore_dir(self.run_dir, settings.split)}")


@dataclass
class Names:
    """Name the latents of a run: from labels (the original's majority of the top 50) and from a vocabulary through a text stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "test"
    """Split of the store whose statistics name the latents."""

    naming: Annotated[NamingSettings, Flat] = field(default_factory=NamingSettings)

    recompute: bool = False
    """Recompute the statistics and the names."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.explore import Explorer, names_for_run
        from sparc.explore.naming import render_evaluation
        from sparc.explore.stats import explore_dir

        naming = self.naming
        ex = Explorer.open(self.run_dir, self.store, stats_settings=StatsSettings(
            split=self.split, top=max(naming.top, 50), device=naming.device, progress=self.progress),
            naming=None, recompute=self.recompute, reuse_any=not self.recompute and naming.top <= 50,
            device=naming.device)
        names = names_for_run(self.run_dir, ex.model, ex.store, ex.stats, naming, recompute=self.recompute)
        if names.classes:
            named = ", ".join(f"{s} {int(names.accepted[i].sum()):,}" for i, s in enumerate(names.streams))
            print(f"latents named from labels ({names.settings.encoding}, purity ≥ {names.settings.min_purity:g}): "
                  f"{named}; aligned (every stream the same name): {int(names.aligned.sum()):,} of {names.n_latents:,}")
        if names.words is not None:
            print(f"latents with vocabulary words (through {names.text_stream}, {len(names.vocabulary):,} entries): "
                  f"{int((names.words[:, 0] >= 0).sum()):,}")
        table = render_evaluation(names)
        if table:
            print()
            print(table)
        for note in names.notes:
            print(f"note: {note}")
        print(f"saved in {explore_dir(self.run_dir, self.split) / 'names.json'}")


@dataclass
class Latent:
    """Print a latent's card: names, firing per stream, agreement, nearest latents, top rows per stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    latent: Annotated[int, tyro.conf.Positional, tyro.conf.arg(metavar="L")]
    """Latent id (0 to n_latents - 1)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "test"
    """Split whose statistics are shown (computed on first use)."""

    encoding: Literal["joint", "independent"] = "joint"
    """Statistics of the joint codes (all streams together) or of the independent ones (each stream alone)."""

    rows: int = 5
    """Top rows shown per stream."""

    device: str = "cpu"
    """Torch device of the model."""

    progress: bool = True
    """Show progress bars (when the statistics are computed)."""

    def run(self) -> None:
        from sparc.explore.render import latent_card

        n_latents = SPARC.load(self.run_dir).n_latents
        if not 0 <= self.latent < n_latents:
            raise SparcError(f"latent {self.latent} does not exist; this model has {n_latents} latents "
                             f"(0 to {n_latents - 1})")
        ex = _explorer(self.run_dir, self.store, self.split, device=self.device, progress=self.progress)
        print(latent_card(ex, self.latent, encoding=self.encoding, rows=self.rows))


@dataclass
class Query:
    """Encode a caption, an image or a row with its stream's backbone, list the latents it activates and rank the rows of every other stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    text: str | None = None
    """A caption, encoded by a text stream's backbone (as recorded in the store)."""

    image: Path | None = None
    """An image file, encoded by an image stream's backbone."""

    row: str | None = None
    """The id of a row of the store, encoded from its stored features."""

    stream: str | None = None
    """Stream to encode the query with (default: the first text / image stream; for --row the model's first)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "test"
    """Split whose rows are ranked."""

    top: int = 10
    """Rows shown per stream."""

    grid: Path | None = None
    """Also write a PNG grid of the top rows of every stream here."""

    backbone: str | None = None
    """FAMILY[:key=value,...] to build instead of reading the backbone's options from the store (still checked against its fingerprint)."""

    device: str = "cpu"
    """Torch device of the backbone."""

    progress: bool = True
    """Show progress bars (when the statistics are computed)."""

    def run(self) -> None:
        from sparc.explore.render import query_table, write_grid

        given = [flag for flag, v in (("--text", self.text), ("--image", self.image), ("--row", self.row)) if v is not None]
        if len(given) != 1:
            raise SparcError("give exactly one of --text, --image or --row")
        if self.top < 1:
            raise SparcError(f"--top must be at least 1, got {self.top}")
        ex = _explorer(self.run_dir, self.store, self.split, device="cpu", progress=self.progress,
                       backbone_device=self.device)
        if self.text is not None:
            result = ex.query_text(self.text, self.stream, top=self.top, backbone=self.backbone)
        elif self.image is not None:
            result = ex.query_image(self.image, self.stream, top=self.top, backbone=self.backbone)
        else:
            result = ex.query_row(self.row, self.stream, top=self.top)
        print(query_table(ex, result))
        if self.grid is not None:
            print(f"wrote {write_grid(ex, result, self.grid)}")


@dataclass
class Report:
    """Write a static site to browse the run's concept space (opens from disk, no server)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    out: Path
    """Directory to write (index.html, data/, thumbs/, assets/); an earlier report there is replaced."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "test"
    """Split whose statistics the report shows (computed on first use)."""

    settings: Annotated[ReportSettings, Flat] = field(default_factory=ReportSettings)

    device: str = "cpu"
    """Torch device of the model and backbones."""

    def run(self) -> None:
        from sparc.explore.report import write_report

        ex = _explorer(self.run_dir, self.store, self.split, device=self.device, progress=self.settings.progress,
                       backbone_device=self.device)
        info = write_report(ex, self.out, self.settings)
        for note in info.notes:
            print(f"note: {note}")
        print(info.summary())


@dataclass
class Heatmap:
    """Where a latent or a caption lies in an image (Grad-CAM on CNNs, attention rollout or Grad-CAM on ViTs), or, without IMAGE, which words of a caption carry latents."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train')."""

    image: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="IMAGE")] = None
    """Image file to map (PNG, JPEG, WebP); without it, --text is a caption whose words are shaded."""

    latent: tuple[int, ...] = ()
    """Latent ids: the map of the sum of their values (in the image stream, or in the caption's text stream)."""

    text: str | None = None
    """With IMAGE: a prompt, through a text stream to its SPARC code, mapped on the image; without: the caption to attribute."""

    stream: str | None = None
    """With IMAGE: the image stream mapped (default: the first); without: the text stream whose words are shaded (default: the first)."""

    text_stream: str | None = None
    """Text stream a --text prompt goes through on an image (default: the first)."""

    method: Literal["gradcam", "rollout", "occlusion"] | None = None
    """gradcam (CNNs, ViTs' last block, text towers), rollout (ViTs), occlusion (any text stream); default: rollout on a ViT, gradcam on a CNN or a text tower with gradients, else occlusion."""

    target: Literal["sum", "cross"] = "cross"
    """For a --text prompt on an image: sum of the image's values at the text's latents, or the dot product of the two codes."""

    encoding: Literal["joint", "independent"] = "joint"
    """For a --text prompt: codes of image and prompt encoded together (as the original) or each alone."""

    start_layer: int = -1
    """Rollout: first block rolled out (negative: from the end; -1 the last)."""

    out: Path | None = None
    """PNG to write: the image with the map over it, or the shaded words (and the same name with .html)."""

    npy: Path | None = None
    """Also save the raw map (H×W float32 in [0, 1], the image's size) here, for scoring."""

    for_report: bool = False
    """Instead: write RUN/heatmaps/ — every latent on its top images and captions — which 'sparc report' shows."""

    rows: int = 3
    """--for-report: top images and captions per latent and stream."""

    max_latents: int | None = None
    """--for-report: only the latents that fire most often (default: all that fire)."""

    split: str = "test"
    """--for-report: split whose top rows are mapped."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    backbone: tuple[str, ...] = ()
    """STREAM=FAMILY[:key=value,...] to build instead of reading the stream's backbone options from the store (e.g. a local model folder); still checked against its fingerprint."""

    device: str = "cpu"
    """Torch device of the backbones."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.localize.commands import heatmap

        heatmap(self)


@dataclass
class Localize:
    """Measure localisation: OpenMoji mosaics on the runs' real models (pointing game, mIoU, mAP@0.2), or the paper's COCO protocol."""

    runs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directories trained on the same store (e.g. the four of experiments/four_variants.sh)."""

    out: Path
    """Directory for localisation.md, localisation.json and the example figure (the table also goes into RUN/localisation-<protocol>/)."""

    protocol: Literal["mosaics", "coco"] = "mosaics"
    """mosaics: 2×2 OpenMoji mosaics from an openmoji store; coco: the paper's protocol on a COCO copy."""

    store: Path | None = None
    """Feature store (default: the store the first run was trained on)."""

    mosaics: int = 500
    """mosaics: number of mosaics (4 prompts each)."""

    split: str = "test"
    """mosaics: split of the store the emoji come from."""

    tile: int = 0
    """mosaics: side of one emoji in pixels (0: half the image model's input)."""

    seed: int = 0
    """mosaics: seed of the draw."""

    image_stream: str | None = None
    """mosaics: the image stream mapped (default: the first)."""

    targets: tuple[Literal["sum", "cross", "dense"], ...] = ("sum", "cross")
    """Targets mapped for every prompt (dense, mosaics only: the image's latents before TopK, a diagnostic)."""

    encoding: Literal["joint", "independent"] = "joint"
    """Codes of image and prompt: together (as the original) or each alone."""

    coco_annotations: Path | None = None
    """coco: instances JSON (e.g. annotations/instances_val2017.json)."""

    coco_images: Path | None = None
    """coco: folder of its images (e.g. val2017/)."""

    limit: int | None = None
    """coco: only the first N images (by id)."""

    latents: Literal["text", "class"] = "text"
    """coco, sum target: the text's active latents, or the category's (active > --class-min-count times on it: the paper's headline variant)."""

    class_min_count: int = 50
    """coco, --latents class: the count a latent must exceed on a category's pairs."""

    start_layer: int = -1
    """Rollout's first block on ViT image streams (-1: the last)."""

    backbone: tuple[str, ...] = ()
    """STREAM=FAMILY[:key=value,...] to build instead of reading the stream's backbone options from the store (e.g. a local model folder); still checked against its fingerprint."""

    device: str = "cpu"
    """Torch device of the backbones."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.localize.commands import localize

        localize(self)
