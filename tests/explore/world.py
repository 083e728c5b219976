"""A small world for the explore tests, made the way users make theirs: an image folder
with a captions file, two stand-in backbones (an image one and a text one) registered
for the session, ``sparc.extract.extract`` into a store (so the manifest records the
dataset and both fingerprints), a third stream without a recorded backbone, and a
SPARC model trained on it by the run workflow.

Concepts are 12 named things; every row shows one or two of them. The image backbone
reads which concepts an image shows from the grey level of its 12 vertical bands; the
text backbone from the concept words of the caption. Both map concepts to features
through their own fixed random basis, so a trained SPARC model has shared concepts to
align and names to find.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sparc.extract.backbones import BACKBONES, Backbone

CONCEPTS = ["apple", "banana", "cherry", "lemon", "orange", "peach",
            "whale", "shark", "seal", "otter", "crab", "squid"]
GROUP = {c: ("fruit" if i < 6 else "sea") for i, c in enumerate(CONCEPTS)}
HIERARCHY = {**GROUP, "fruit": None, "sea": None}
BAND = 4  # pixels per concept band


def _basis(seed: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(CONCEPTS), dim)).astype(np.float32)


def _noise(key: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return 0.05 * np.random.default_rng(seed).normal(size=dim).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FakeOptions:
    """Options of the stand-in backbones."""

    scale: float = 1.0
    """Multiplies the features (a non-default value shows up in the fingerprint)."""


class _Fake(Backbone):
    Options = FakeOptions
    DIM = 0
    SEED = 0

    def __init__(self, options: FakeOptions = FakeOptions(), *, device: str = "cpu", precision: str = "fp32"):
        super().__init__(device=device, precision=precision)
        self.options = options

    @property
    def dim(self) -> int:
        return self.DIM

    def _load(self) -> None:
        self.basis = _basis(self.SEED, self.DIM)

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "model": f"{self.family}-v1", "scale": self.options.scale, "code": 1}


class FakeText(_Fake):
    """Concept words → features."""

    family = "explore-fake-text"
    modality = "text"
    DIM, SEED = 8, 11

    def _encode(self, items: Sequence[Any]) -> torch.Tensor:
        out = []
        for text in items:
            words = str(text).lower().replace(",", " ").split()
            w = np.array([float(c in words) for c in CONCEPTS], dtype=np.float32)
            out.append(self.options.scale * (w @ self.basis + _noise(str(text), self.DIM)))
        return torch.from_numpy(np.stack(out)) if out else torch.empty(0, self.DIM)


class FakeImage(_Fake):
    """Grey bands → features."""

    family = "explore-fake-image"
    modality = "image"
    DIM, SEED = 10, 12

    def _encode(self, items: Sequence[Any]) -> torch.Tensor:
        out = []
        for im in items:
            a = np.asarray(im.convert("L").resize((BAND * len(CONCEPTS), 8)), dtype=np.float32) / 255.0
            w = a.reshape(8, len(CONCEPTS), BAND).mean(axis=(0, 2))
            out.append(self.options.scale * (w @ self.basis + _noise(a.tobytes().hex()[:64], self.DIM)))
        return torch.from_numpy(np.stack(out)) if out else torch.empty(0, self.DIM)


def register_fakes(mp: pytest.MonkeyPatch) -> None:
    """Register the stand-ins in the backbone registry until ``mp`` is undone."""
    BACKBONES.names()  # import the real families first
    for cls in (FakeText, FakeImage):
        mp.setitem(BACKBONES.classes, cls.family, cls)


def concept_image(weights: dict[str, float]) -> Image.Image:
    a = np.zeros((8, BAND * len(CONCEPTS)), dtype=np.uint8)
    for c, w in weights.items():
        i = CONCEPTS.index(c)
        a[:, i * BAND:(i + 1) * BAND] = int(round(255 * w))
    return Image.fromarray(a).convert("RGB")


def write_image_folder(root: Path, n_rows: int = 480, seed: int = 0) -> Path:
    """Images and captions.csv; returns the captions file."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "labels", "row_id"])
        for i in range(n_rows):
            chosen = list(rng.choice(CONCEPTS, size=int(rng.integers(1, 3)), replace=False))
            weights = {c: float(rng.uniform(0.5, 1.0)) for c in chosen}
            name = f"img{i:04d}.png"
            concept_image(weights).save(root / name)
            w.writerow([name, "a " + " and a ".join(chosen), "|".join(chosen), f"r{i}"])
    (root / "hierarchy.json").write_text(json.dumps(HIERARCHY))
    return root / "captions.csv"


def build_world(base: Path, mp: pytest.MonkeyPatch, *, epochs: int = 25) -> dict[str, Path]:
    """Store (img, txt from the stand-ins; raw without a backbone) and a trained run."""
    from sparc.data import FeatureStore, StoreWriter
    from sparc.extract import datasets, extract
    from sparc.model import SPARCConfig
    from sparc.train import TrainConfig, new_spec, open_run

    register_fakes(mp)
    root = base / "images"
    captions = write_image_folder(root)
    dataset = datasets.build("image-folder", root=str(root), captions=str(captions),
                             hierarchy=str(root / "hierarchy.json"))
    staged = extract(dataset, {"img": FakeImage(), "txt": FakeText()}, base / "staged", progress=False,
                     dataset_info={"name": "image-folder", "options": {
                         "root": str(root), "captions": str(captions), "hierarchy": str(root / "hierarchy.json")}})
    # add a stream with no recorded backbone (as features imported from HDF5 would be)
    src = staged
    raw = np.random.default_rng(5).normal(size=(src.n_rows, 6)).astype(np.float32)
    raw[:, :4] += src.features("txt")[:, :4] * 3
    with StoreWriter(base / "store", {**src.streams, "raw": 6},
                     sources={s: src.manifest.streams[s].source for s in src.streams},
                     dataset=src.dataset_info(), label_hierarchy=src.label_hierarchy()) as w:
        w.append({**{s: np.asarray(src.features(s)) for s in src.streams}, "raw": raw}, src.rows())
    store = FeatureStore.open(base / "store")
    torch.manual_seed(0)
    spec = new_spec(store, SPARCConfig(n_latents=48, k=4), TrainConfig(lr=3e-3, epochs=epochs, batch_size=64,
                                                                       checkpoint_every=0, progress=False,
                                                                       pre_bias_init="mean"))
    with open_run(base / "run", spec) as run:
        run.trainer.fit()
    return {"store": base / "store", "run": base / "run", "images": root}


def session_world(tmp_path_factory) -> dict[str, Path]:
    """The world, built once per test session (shared by tests/explore and tests/cli)."""
    base = tmp_path_factory.getbasetemp() / "explore-world"
    paths = {"store": base / "store", "run": base / "run", "images": base / "images"}
    if not (paths["run"] / "model.safetensors").exists():
        import shutil

        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        mp = pytest.MonkeyPatch()
        try:
            build_world(base, mp)
        finally:
            mp.undo()
    return paths
