"""The paper's localisation protocol on COCO (notebooks ``t3_segmentation-coco-*``;
docs/method.md §5.7), for a store whose backbones and a COCO copy are at hand.

- **pairs** — every (image, category) of an instances file (val2017: 14,631 pairs, 80
  categories), images in id order; ground truth = the union of that category's instance
  masks (``COCO.annToMask``, crowd regions included, as the original);
- **prompt** — the bare category name through a text stream → its SPARC code;
- **maps** — for every image stream with a spatial map and every text stream, the ``sum``
  and ``cross`` targets (:mod:`.targets`, ``text`` latents by default or the ``class``
  variant), rollout from the last block on a ViT, Grad-CAM on a CNN; the image resized to
  the model's input without crop, the map resized back to the image (bilinear);
- **baseline** ``clip_sim`` — ``logit_scale · cos(CLIP image, CLIP text)`` when an image and
  a text stream are the two towers of one CLIP model;
- **scores** — mAP at IoU 0.2 (COCOeval segm, one mask per pair, score 1) and mIoU over
  all pairs (misses 0), plus the pointing game (:mod:`.scoring`).

The ``class`` latents variant (the paper's headline numbers) replaces the text's latents by
the category's: the latents active more than ``class_min_count`` times on the category's
pairs, counts summed over the streams, from the joint codes of every pair (image streams
and the prompt).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparc.atomic import write_text
from sparc.errors import SparcError
from sparc.localize.heatmap import ImageMapper, to_image, unit
from sparc.localize.runs import Backbones, clip_pair, image_streams, logit_scale, open_runs, text_streams
from sparc.localize.scoring import ProtocolResult, Scorer
from sparc.localize.spatial import spatial_for
from sparc.localize.targets import Query
from sparc.train.rundir import RunDir


@dataclass(frozen=True)
class CocoSettings:
    """Settings of the COCO protocol."""

    annotations: Path | None = None
    """COCO instances file (e.g. annotations/instances_val2017.json)."""

    images: Path | None = None
    """Folder of its images (e.g. val2017/)."""

    limit: int | None = None
    """Use only the first N images (by id)."""

    targets: tuple[str, ...] = ("sum", "cross")
    """SPARC targets mapped for every pair."""

    latents: str = "text"
    """sum over the text's active latents (text) or over the category's latents (class: active > class_min_count times on it)."""

    class_min_count: int = 50
    """class variant: a latent belongs to a category when active more than this many times on its pairs."""

    encoding: str = "joint"
    """Codes of image and prompt: joint (together, as the original) or independent (each alone)."""

    clip_sim: bool = True
    """Also map the CLIP-similarity baseline when an image and a text stream are one CLIP's towers."""

    start_layer: int = -1
    """Rollout's first block on ViTs (-1: the last, as the original's quantitative runs)."""

    progress: bool = True

    def __post_init__(self) -> None:
        if not self.targets or any(t not in ("sum", "cross") for t in self.targets):
            raise SparcError(f"--targets must be sum and/or cross, got {self.targets}")
        if self.latents not in ("text", "class"):
            raise SparcError(f"--latents must be text or class, got {self.latents!r}")
        if self.encoding not in ("joint", "independent"):
            raise SparcError(f"--encoding must be joint or independent, got {self.encoding!r}")
        if self.limit is not None and self.limit < 1:
            raise SparcError(f"--limit must be at least 1, got {self.limit}")


def load_annotations(path: Path):
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise SparcError("the COCO protocol needs pycocotools: pip install 'sparc-sae[localize]'") from None
    import contextlib
    import io

    if not Path(path).is_file():
        raise SparcError(f"COCO annotations {path} do not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise SparcError(f"{path} is not a COCO instances file ({type(e).__name__}: {e})") from None


def coco_pairs(coco, limit: int | None = None) -> list[tuple[int, int]]:
    """(image id, category id) of every category present in each image, images by id."""
    pairs = []
    for img_id in sorted(coco.imgs)[:limit]:
        for cid in sorted({a["category_id"] for a in coco.imgToAnns[img_id]}):
            pairs.append((img_id, cid))
    return pairs


def union_mask(coco, img_id: int, cid: int) -> np.ndarray:
    info = coco.imgs[img_id]
    m = np.zeros((info["height"], info["width"]), dtype=bool)
    for ann in coco.imgToAnns[img_id]:
        if ann["category_id"] == cid:
            m |= coco.annToMask(ann).astype(bool)
    return m


@dataclass
class CocoResult(ProtocolResult):
    n_pairs: int = 0
    n_images: int = 0


def _class_latents(run, fs, bbs, coco, pairs, images_dir, imgs, texts, feats, settings) -> dict[int, tuple[int, ...]]:
    """Category id → the latents active more than ``class_min_count`` times on its pairs
    (joint codes of image streams and prompt, counts summed over the streams)."""
    model = run.model
    counts: dict[int, torch.Tensor] = {}
    for img_id, cid in pairs:
        im = _load(images_dir, coco.imgs[img_id])
        inputs = {}
        for s in imgs:
            sp = spatial_for(bbs.get(s), s)
            x = sp.pixels([im])
            f = sp.pool(sp.feature_map(x)) if sp.kind == "cnn" else sp.vit_features(x)
            inputs[s] = unit(f.detach().float())
        name = coco.cats[cid]["name"]
        for ts in texts:
            inputs[ts] = feats[ts][name][None]
        with torch.no_grad():
            codes = model.encode(inputs)
        c = counts.setdefault(cid, torch.zeros(model.n_latents))
        for code in codes.values():
            c.index_add_(0, code.indices[0][code.values[0] > 0].cpu(), torch.ones(int((code.values[0] > 0).sum())))
    return {cid: tuple(int(i) for i in torch.nonzero(c > settings.class_min_count).flatten()) for cid, c in counts.items()}


def _load(images_dir: Path, info: dict) -> Image.Image:
    from sparc.explore.sources import read_image

    return read_image(Path(images_dir) / info["file_name"], max_side=None)  # the masks are at this size


def run_coco(run_paths: list[Path], settings: CocoSettings, *, store: Path | None = None, device: str = "cpu",
             backbones: dict[str, str] | None = None, log=print) -> CocoResult:
    """The COCO protocol for every run (see the module docstring)."""
    from tqdm.auto import tqdm

    if settings.annotations is None or settings.images is None:
        raise SparcError("the COCO protocol needs --coco-annotations (instances JSON) and --coco-images (folder)")
    if not Path(settings.images).is_dir():
        raise SparcError(f"COCO image folder {settings.images} does not exist")
    t0 = time.perf_counter()
    runs, fs = open_runs(run_paths, store)
    bbs = Backbones(fs, device, dict(backbones or {}))
    coco = load_annotations(settings.annotations)
    pairs = coco_pairs(coco, settings.limit)
    if not pairs:
        raise SparcError(f"{settings.annotations} has no annotated image")
    model0 = runs[0].model
    imgs, texts = image_streams(model0, fs), text_streams(model0, fs)
    if not imgs or not texts:
        raise SparcError(f"the COCO protocol needs an image and a text stream; these runs have "
                         f"{', '.join(model0.names)}")
    names = sorted({coco.cats[c]["name"] for _, c in pairs})
    feats = {ts: dict(zip(names, bbs.text_features(ts, names))) for ts in texts}
    clip = [(i, t) for i in imgs for t in texts if settings.clip_sim and clip_pair(fs, i, t)]
    mappers = {(r.name, s): ImageMapper(r.model, s, bbs.get(s), start_layer=settings.start_layer) for r in runs
               for s in imgs}
    class_lat = {}
    if settings.latents == "class":
        for r in runs:
            class_lat[r.name] = _class_latents(r, fs, bbs, coco, pairs, settings.images, imgs, texts, feats, settings)
    scorers: dict[tuple, Scorer] = {}
    by_image: dict[int, list[int]] = {}
    for img_id, cid in pairs:
        by_image.setdefault(img_id, []).append(cid)
    for img_id in tqdm(sorted(by_image), disable=not settings.progress, desc="coco", unit="img", dynamic_ncols=True):
        info = coco.imgs[img_id]
        im = _load(settings.images, info)
        if im.size != (info["width"], info["height"]):
            raise SparcError(f"image {info['file_name']} is {im.size[0]}×{im.size[1]}, its annotation says "
                             f"{info['width']}×{info['height']}")
        gts = {cid: union_mask(coco, img_id, cid) for cid in by_image[img_id]}
        jobs: list[tuple[tuple, ImageMapper, list[tuple[int, Query]], list[int]]] = []
        for r in runs:
            for s in imgs:
                q, cids, keys = [], [], []
                for cid in by_image[img_id]:
                    name = coco.cats[cid]["name"]
                    for ts in texts:
                        for target in settings.targets:
                            lat: tuple[int, ...] = ()
                            if settings.latents == "class" and target == "sum":
                                lat = class_lat[r.name].get(cid, ())
                            query = None if settings.latents == "class" and target == "sum" and not lat else Query(
                                text_stream=ts, text=feats[ts][name], target=target, encoding=settings.encoding,
                                latents=lat)
                            keys.append((r.name, s, ts, target))
                            q.append((0, query))
                            cids.append(cid)
                jobs.append((keys, mappers[(r.name, s)], q, cids))
        for s, ts in clip:
            scale = logit_scale(bbs.get(s))
            q = [(0, Query(text_stream=ts, text=feats[ts][coco.cats[c]["name"]], target="clip_sim", scale=scale))
                 for c in by_image[img_id]]
            jobs.append(([("clip_sim", s, ts, "clip_sim")] * len(q), mappers[(runs[0].name, s)], q,
                         list(by_image[img_id])))
        for keys, mapper, q, cids in jobs:
            live = [k for k, (_, query) in enumerate(q) if query is not None]
            got = mapper.maps([im], [q[k] for k in live]) if live else None
            for k, (key, cid) in enumerate(zip(keys, cids)):
                sc = scorers.setdefault(key, Scorer())
                if k not in live:
                    sc.add(img_id, coco.cats[cid]["name"], gts[cid], None, None, flat=True)
                    continue
                p = live.index(k)
                h = to_image(got.maps[p], gts[cid].shape)
                sc.add_map(img_id, coco.cats[cid]["name"], gts[cid], h, flat=bool(got.flat[p]))
    result = CocoResult(n_pairs=len(pairs), n_images=len(by_image))
    result.add_scores(scorers)
    result.settings = {**dataclasses.asdict(settings), "runs": [str(r.path) for r in runs], "store": str(fs.path),
                       "methods": {s: mappers[(runs[0].name, s)].describe() for s in imgs}}
    result.seconds = {"total": round(time.perf_counter() - t0, 2)}
    return result


def render_coco(result: CocoResult) -> str:
    s = result.settings
    maps = "; ".join(f"`{k}` {v}" for k, v in (s.get("methods") or {}).items())
    lines = result.markdown(
        f"Localisation on COCO — {result.n_pairs} (image, category) pairs in {result.n_images} images",
        f"The paper's protocol (docs/method.md §5.7): prompt = the category name; latents: {s.get('latents')}; "
        f"codes: {s.get('encoding')} encoding; maps: {maps}. mAP@0.2: COCOeval segm; mIoU over all pairs (misses 0).",
        ["model", "image stream", "text stream", "target", "mAP@0.2", "mIoU", "pointing", "predictions"],
        lambda r: [r["model"], r["image_stream"], r["text_stream"], r["target"], f"{r['map@0.2']:.3f}",
                   f"{r['miou']:.3f}", f"{r['pointing']:.3f}", f"{r['predictions']} / {r['pairs']}"])
    return "\n".join(lines) + "\n"


def write_coco(result: CocoResult, out: Path, runs: list[Path] | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "localisation.md", render_coco(result))
    write_text(out / "localisation.json", json.dumps(dataclasses.asdict(result), indent=2, default=str) + "\n")
    for r in runs or []:
        d = RunDir(r).localisation_dir("coco")
        d.mkdir(exist_ok=True)
        write_text(d / "localisation.md", render_coco(result))
    return [out / "localisation.md", out / "localisation.json"]
