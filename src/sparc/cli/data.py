"""``sparc extract``, ``sparc import-h5``, ``sparc synth`` and ``sparc store``: making and joining feature stores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from sparc.errors import SparcError
from sparc.options import named_values


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

    splits: Annotated[str, tyro.conf.arg(metavar="TRAIN,VAL,TEST")] = "0.8,0.1,0.1"
    """Fractions of the groups (rows sharing a group id) in the train, val and test splits."""

    split_seed: int = 0
    """Seed of the split assignment (each group hashed with it: the same data always splits the same way)."""

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
        from sparc.jsonio import json_options
        from sparc.options import parse_spec, split_spec

        if self.list_options:
            print("datasets (--dataset NAME[:key=value,...]):\n" + DATASETS.describe())
            print("backbones (--stream NAME=FAMILY[:key=value,...]; all also take --device and --precision):\n"
                  + BACKBONES.describe())
            return
        missing = [flag for flag, given in (("--dataset", self.dataset), ("--stream", self.stream), ("--out", self.out))
                   if not given]
        if missing or self.dataset is None or self.out is None:
            raise SparcError(f"extract needs {', '.join(missing)} (see the datasets and backbones with --list)")
        from sparc.data.splits import parse_fractions

        shard = _shard(self.shard)
        fractions = parse_fractions(self.splits)
        name, options = parse_spec(self.dataset, DATASETS)
        dataset = DATASETS.get(name)(options)
        streams = {}
        for stream, spec in named_values(self.stream, "NAME=BACKBONE[:key=value,...]").items():
            family, bb_options = parse_spec(spec, BACKBONES)
            streams[stream] = BACKBONES.get(family)(bb_options, device=self.device, precision=self.precision)
        given = json_options(options, keys=split_spec(self.dataset)[1])
        store = extract(dataset, streams, self.out, batch_size=self.batch_size, dtype=self.dtype,
                        normalize=self.normalize, overwrite=self.overwrite, limit=self.limit,
                        workers=self.workers, progress=self.progress, split_fractions=fractions,
                        split_seed=self.split_seed, dataset_info={"name": name, "options": given}, shard=shard)
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

    splits: Annotated[str, tyro.conf.arg(metavar="TRAIN,VAL,TEST")] = "0.8,0.1,0.1"
    """Fractions of the groups (rows sharing a group id) in the train, val and test splits."""

    split_seed: int = 0
    """Seed of the split assignment (each group hashed with it: the same data always splits the same way)."""

    overwrite: bool = False
    """Replace an existing store at --out."""

    def run(self) -> None:
        from sparc.data import describe_store, import_h5
        from sparc.data.splits import parse_fractions

        fractions = parse_fractions(self.splits)
        streams = {name: Path(path) for name, path in named_values(self.stream, "NAME=FILE.h5").items()}
        store = import_h5(streams, self.out, metadata=self.metadata, dataset=self.dataset,
                          dtype=self.dtype, normalize=self.normalize, drop_nonfinite=self.drop_nonfinite,
                          overwrite=self.overwrite, split_fractions=fractions, split_seed=self.split_seed)
        print(describe_store(store))


@dataclass
class Synth:
    """Make a feature store whose concepts are known (planted ground truth): shared, stream-exclusive and
    parent/child concepts mapped into each stream by random linear maps, plus noise; the truth goes into
    OUT/truth.npz and 'sparc eval' scores models against it. Defaults: the specification's §8 setting."""

    out: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Store directory to create."""

    stream: Annotated[tuple[str, ...], tyro.conf.arg(metavar="NAME=WIDTH")] = ("s1=96", "s2=64", "s3=48")
    """One per stream, in order (at least two)."""

    shared: int = 48
    """Concepts present in every stream."""

    exclusive: int = 12
    """Concepts present in one stream only, this many per stream."""

    parents: int = 0
    """Parent concepts (in every stream), each with --children children active only with it."""

    children: int = 2
    """Children per parent."""

    child_rate: float = 0.5
    """Chance that an active parent brings one of its children."""

    active: int = 3
    """Concepts drawn per row among the shared, exclusive and parent ones (children come on top)."""

    low: float = 0.5
    """Smallest value of an active concept (values uniform in [low, high])."""

    high: float = 1.5
    """Largest value of an active concept."""

    noise: float = 0.02
    """Standard deviation of the Gaussian noise on every coordinate."""

    nonlinear: str | None = None
    """Bend this stream mildly non-linear (x = (1 − a)·y + a·σ·tanh(y/σ))."""

    nonlinear_strength: float = 0.5
    """a above, in [0, 1]."""

    rows: int = 8000
    """Rows of the store (split 80/10/10 into train/val/test)."""

    seed: int = 0
    """Seed of the directions, codes and noise."""

    overwrite: bool = False
    """Replace a store sparc wrote at OUT."""

    def run(self) -> None:
        from sparc.data import describe_store
        from sparc.data.planted import PlantedSettings, make_planted

        widths = {}
        for name, text in named_values(self.stream, "NAME=WIDTH").items():
            try:
                widths[name] = int(text)
            except ValueError:
                raise SparcError(f"--stream {name}={text}: the width must be an integer") from None
        # Every setting but the streams is a flag of the same name.
        settings = PlantedSettings(streams=widths, **{f.name: getattr(self, f.name) for f in dataclasses.fields(
            PlantedSettings) if f.name != "streams"})
        store = make_planted(self.out, settings, overwrite=self.overwrite)
        print(describe_store(store))


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
