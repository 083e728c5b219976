"""Runs, their store and the stores' backbones, as the localisation commands use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sparc.data import FeatureStore
from sparc.data.normalize import l2_normalize
from sparc.errors import SparcError
from sparc.explore.explorer import check_store_belongs
from sparc.explore.sources import backbone_for, encode_with, stream_modality
from sparc.model import SPARC
from sparc.options import named_values
from sparc.train.rundir import RunDir, load_model


@dataclass
class Run:
    """A trained model and where it came from."""

    path: Path
    model: SPARC
    name: str


def open_runs(paths: list[Path], store: Path | None = None) -> tuple[list[Run], FeatureStore]:
    """Load the runs and the store (default: the one the first run was trained on); every
    run must fit the store and come from the same backbones."""
    if not paths:
        raise SparcError("give at least one run directory")
    runs = []
    names: set[str] = set()
    for p in paths:
        p = Path(p)
        model = load_model(p)
        name = p.resolve().name
        while name in names:
            name = f"{p.resolve().parent.name}/{name}"
        names.add(name)
        runs.append(Run(p, model, name))
    fs = FeatureStore.open(store if store is not None else RunDir(runs[0].path).trained_store())
    for r in runs:
        check_store_belongs(r.path, r.model, fs)
    return runs, fs


@dataclass
class Backbones:
    """The store's backbones, each rebuilt once (and checked against its fingerprint)."""

    store: FeatureStore
    device: str = "cpu"
    specs: dict[str, str] = field(default_factory=dict)
    """Stream → FAMILY[:key=value,...] to build instead of reading the options from the store."""
    _built: dict[str, object] = field(default_factory=dict)

    def get(self, stream: str):
        if stream not in self._built:
            self._built[stream] = backbone_for(self.store, stream, spec=self.specs.get(stream), device=self.device)
        return self._built[stream]

    def modality(self, stream: str) -> str | None:
        return stream_modality(self.store, stream)

    def text_features(self, stream: str, texts: list[str], batch: int = 256) -> torch.Tensor:
        """L2-normalised features [n, d] of ``texts`` through the text stream's backbone."""
        bb = self.get(stream)
        parts = [encode_with(bb, texts[a:a + batch], stream).numpy() for a in range(0, len(texts), batch)]
        x = np.concatenate(parts) if parts else np.zeros((0, bb.dim), np.float32)
        return torch.from_numpy(l2_normalize(np.ascontiguousarray(x, dtype=np.float32)))


def backbone_specs(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--backbone`` items ``STREAM=FAMILY[:key=value,...]`` → {stream: spec}: backbones to
    build instead of reading their options from the store (e.g. a model folder, which the
    fingerprint names only by its folder name); still checked against the fingerprint."""
    return named_values(items, "STREAM=FAMILY[:key=value,...]", flag="--backbone")


def image_streams(model: SPARC, store: FeatureStore) -> list[str]:
    return [s for s in model.names if stream_modality(store, s) == "image"]


def text_streams(model: SPARC, store: FeatureStore) -> list[str]:
    return [s for s in model.names if stream_modality(store, s) == "text"]


def clip_pair(store: FeatureStore, image: str, text: str) -> bool:
    """Whether two streams are the image and the text tower of one CLIP model (the
    CLIP-similarity baseline applies)."""
    a, b = (store.manifest.streams[s].source or {} for s in (image, text))
    keys = ("family", "model", "weights")
    return (a.get("family") in ("open-clip", "hf-clip") and all(a.get(k) == b.get(k) for k in keys)
            and a.get("tower") == "image" and b.get("tower") == "text")


def logit_scale(backbone) -> float:
    """exp(logit_scale) of a CLIP backbone's model (1 when it has none)."""
    scale = getattr(getattr(backbone, "model", None), "logit_scale", None)
    return float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else 1.0
