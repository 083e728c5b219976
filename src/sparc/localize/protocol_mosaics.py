"""Localisation measured here, on real models: OpenMoji mosaics.

A mosaic is a 2×2 grid of emoji from a split of the store (default: the held-out test
split), each from a different Unicode subgroup, on white. Every emoji is rendered with a
transparent background and its ground-truth mask is its alpha channel (≥ 128). For each
emoji of each mosaic the prompt is its Unicode name; through each text stream it becomes
a SPARC code, and the map of the ``sum`` and ``cross`` targets on the image stream
(docs/method.md §5.7) is scored against the emoji's mask by the pointing game, mIoU and
mAP at IoU 0.2 (:mod:`.scoring`; the COCOeval category is the subgroup, unique within a
mosaic). The image and text models were never trained together: only the shared latents
link a name to a place in the image.

Baselines: **uniform** (the whole image predicted; pointing scores the expected hit of a
random pixel, the emoji's share of the image), **centre** (a centred Gaussian map through
the same thresholding) and, per run, **image only** — the map of the image's own code
(the sum of its latents, no text), the same for the four prompts of a mosaic: what a
prompt-blind saliency map scores.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sparc.atomic import write_text
from sparc.errors import SparcError
from sparc.localize.heatmap import ImageMapper, to_image
from sparc.localize.runs import Backbones, image_streams, open_runs, text_streams
from sparc.localize.scoring import ProtocolResult, Scorer
from sparc.localize.targets import Query
from sparc.train.rundir import RunDir

"""Where each run keeps the mosaic table (the report's overview shows it)."""


@dataclass(frozen=True)
class MosaicSettings:
    """Settings of the mosaic protocol."""

    mosaics: int = 500
    """Mosaics to make (4 emoji, 4 prompts each)."""

    split: str = "test"
    """Split of the store the emoji come from."""

    tile: int = 0
    """Side of one emoji in pixels (0: half the image model's input size, so a mosaic is its input size)."""

    seed: int = 0
    """Seed of the draw of the emoji."""

    targets: tuple[str, ...] = ("sum", "cross")
    """Targets mapped for every prompt."""

    encoding: str = "joint"
    """Codes of image and prompt: joint (together, as the original) or independent (each alone)."""

    alpha: int = 128
    """An emoji's mask: the pixels whose alpha is at least this."""

    batch_size: int = 16
    """Mosaics per backbone pass."""

    examples: int = 4
    """Mosaics drawn in the example figure."""

    progress: bool = True

    def __post_init__(self) -> None:
        if self.mosaics < 1:
            raise SparcError(f"--mosaics must be at least 1, got {self.mosaics}")
        if self.tile < 0:
            raise SparcError(f"--tile must be >= 0, got {self.tile}")
        if not self.targets or any(t not in ("sum", "cross", "dense") for t in self.targets):
            raise SparcError(f"--targets must be among sum, cross and dense, got {self.targets}")
        if self.encoding not in ("joint", "independent"):
            raise SparcError(f"--encoding must be joint or independent, got {self.encoding!r}")
        if not 1 <= self.alpha <= 255:
            raise SparcError(f"--alpha must be 1 to 255, got {self.alpha}")


@dataclass
class Mosaic:
    image: Image.Image
    masks: np.ndarray
    """[4, S, S] bool."""
    names: list[str]
    subgroups: list[str]
    rows: list[str]


def openmoji_dataset(store):
    from sparc.extract.datasets import DATASETS

    info = store.dataset_info()
    if info.get("name") != "openmoji":
        raise SparcError(f"the mosaic protocol needs a store of the openmoji dataset; '{store.path}' holds "
                         f"{info.get('name') or 'no recorded dataset'} (for COCO use --protocol coco)")
    opts = {**(info.get("options") or {}), "background": "transparent", "caption_template": "{name}"}
    return DATASETS.get("openmoji")(DATASETS.options("openmoji", **opts))


def make_mosaics(store, settings: MosaicSettings, size: int) -> list[Mosaic]:
    """The mosaics of ``settings`` at ``size`` × ``size`` pixels (tiles of ``size / 2``)."""
    ds = openmoji_dataset(store)
    tile = settings.tile or size // 2
    by_id = {s.row_id: s for s in ds}
    rows = store.rows()
    chosen = [rows[int(r)].row_id for r in store.split_rows(settings.split)]
    samples = [by_id[r] for r in chosen if r in by_id and len(by_id[r].labels) >= 2]
    by_sub: dict[str, list] = {}
    for s in samples:
        by_sub.setdefault(s.labels[1], []).append(s)
    subgroups = sorted(by_sub)
    if len(subgroups) < 4:
        raise SparcError(f"split {settings.split!r} of '{store.path}' has emoji of {len(subgroups)} subgroups; "
                         "a mosaic needs 4 (use a larger split, e.g. --split all)")
    rng = np.random.default_rng(settings.seed)
    rendered: dict[str, tuple[Image.Image, np.ndarray]] = {}

    def render(s):
        if s.row_id not in rendered:
            with Image.open(ds.image_path(s)) as im:
                rgba = im.convert("RGBA").resize((tile, tile), Image.Resampling.LANCZOS)
            a = np.asarray(rgba)[..., 3] >= settings.alpha
            rendered[s.row_id] = (rgba, a)
        return rendered[s.row_id]

    out = []
    side = 2 * tile
    for _ in range(settings.mosaics):
        subs = rng.choice(len(subgroups), size=4, replace=False)
        picks = [by_sub[subgroups[i]][int(rng.integers(len(by_sub[subgroups[i]])))] for i in subs]
        canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        masks = np.zeros((4, side, side), dtype=bool)
        for j, s in enumerate(picks):
            rgba, a = render(s)
            x, y = (j % 2) * tile, (j // 2) * tile
            canvas.alpha_composite(rgba, (x, y))
            masks[j, y:y + tile, x:x + tile] = a
        if side != size:
            canvas = canvas.resize((size, size), Image.Resampling.BILINEAR)
            masks = np.stack([np.asarray(Image.fromarray(m).resize((size, size), Image.Resampling.NEAREST))
                              for m in masks])
        keep = [j for j in range(4) if masks[j].any()]
        out.append(Mosaic(canvas.convert("RGB"), masks[keep], [picks[j].caption for j in keep],
                          [picks[j].labels[1] for j in keep], [picks[j].row_id for j in keep]))
    return out


@dataclass
class MosaicResult(ProtocolResult):
    n_mosaics: int = 0
    n_pairs: int = 0


def _gaussian(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] + 0.5
    c, s = size / 2, size / 4
    return np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * s * s)).astype(np.float32)


def run_mosaics(run_paths: list[Path], settings: MosaicSettings = MosaicSettings(), *, store: Path | None = None,
                device: str = "cpu", image_stream: str | None = None, backbones: dict[str, str] | None = None,
                log=print) -> tuple[MosaicResult, list[Mosaic], dict]:
    """Score every run on the mosaics. Returns (result, mosaics, example maps)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    runs, fs = open_runs(run_paths, store)
    bbs = Backbones(fs, device, dict(backbones or {}))
    first = runs[0].model
    images = image_streams(first, fs)
    if not images:
        raise SparcError(f"the runs have no image stream with a recorded backbone ({', '.join(first.names)})")
    img = image_stream or images[0]
    if img not in images:
        raise SparcError(f"{img!r} is not an image stream of these runs; image streams: {', '.join(images)}")
    texts = text_streams(first, fs)
    if not texts:
        raise SparcError("the mosaic protocol needs a text stream; these runs have none "
                         f"({', '.join(first.names)})")
    for r in runs[1:]:
        if list(r.model.names) != list(first.names):
            raise SparcError(f"run {r.path} has streams {r.model.names}, {runs[0].path} has {first.names}")
    mappers = {r.name: ImageMapper(r.model, img, bbs.get(img), batch_size=settings.batch_size) for r in runs}
    size = next(iter(mappers.values())).size
    t = time.perf_counter()
    mosaics = make_mosaics(fs, settings, size)
    seconds = {"mosaics": time.perf_counter() - t}
    names = sorted({n for m in mosaics for n in m.names})
    t = time.perf_counter()
    feats = {ts: dict(zip(names, bbs.text_features(ts, names))) for ts in texts}
    seconds["prompts"] = time.perf_counter() - t

    scorers: dict[tuple, Scorer] = {}

    def scorer(key):
        return scorers.setdefault(key, Scorer())

    examples: dict = {}
    n_examples = min(settings.examples, len(mosaics))
    t = time.perf_counter()
    bar = tqdm(total=len(mosaics), disable=not settings.progress, desc="mosaics", unit="mosaic", dynamic_ncols=True)
    shared = all(m.spatial.kind == "cnn" for m in mappers.values())
    for a in range(0, len(mosaics), settings.batch_size):
        batch = mosaics[a:a + settings.batch_size]
        A = next(iter(mappers.values())).feature_maps([m.image for m in batch]) if shared else None
        for r in runs:
            mapper = mappers[r.name]
            pairs, keys = [], []
            for i, m in enumerate(batch):
                for j, name in enumerate(m.names):
                    for ts in texts:
                        for target in settings.targets:
                            pairs.append((i, Query(text_stream=ts, text=feats[ts][name], target=target,
                                                   encoding=settings.encoding)))
                            keys.append((i, j, (r.name, img, ts, target)))
                pairs.append((i, Query(latents=tuple(range(r.model.n_latents)))))
                keys.append((i, None, (r.name, img, "-", "image only")))
            got = mapper.maps_from(A, pairs) if A is not None else mapper.maps([m.image for m in batch], pairs)
            for p, (i, j, key) in enumerate(keys):
                m = batch[i]
                h = got.maps[p]
                if h.shape != m.masks.shape[1:]:
                    h = to_image(h, m.masks.shape[1:])
                for jj in ([j] if j is not None else range(len(m.names))):
                    scorer(key).add_map(a + i, m.subgroups[jj], m.masks[jj], h, flat=bool(got.flat[p]))
                if a + i < n_examples and j is not None:
                    examples.setdefault((a + i, j), {})[key] = h
        for i, m in enumerate(batch):
            for j in range(len(m.names)):
                gt = m.masks[j]
                scorer(("chance", "-", "-", "uniform")).add(a + i, m.subgroups[j], gt, np.ones_like(gt), None)
                scorer(("chance", "-", "-", "uniform")).hits[-1] = float(gt.mean())
                scorer(("chance", "-", "-", "centre")).add_map(a + i, m.subgroups[j], gt, _gaussian(gt.shape[0]))
        bar.update(len(batch))
    bar.close()
    seconds["maps"] = time.perf_counter() - t
    t = time.perf_counter()
    result = MosaicResult(settings=dataclasses.asdict(settings), n_mosaics=len(mosaics),
                          n_pairs=sum(len(m.names) for m in mosaics))
    result.add_scores(scorers)
    seconds["scores"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    result.seconds = {k: round(v, 2) for k, v in seconds.items()}
    result.settings.update({"runs": [str(r.path) for r in runs], "store": str(fs.path), "image_stream": img,
                            "text_streams": texts, "method": next(iter(mappers.values())).describe()})
    return result, mosaics, examples


# ------------------------------------------------------------------------------- output

def render_table(result: MosaicResult) -> str:
    s = result.settings
    lines = result.markdown(
        f"Localisation on OpenMoji mosaics — {result.n_mosaics} mosaics, {result.n_pairs} prompts",
        f"2×2 mosaics of emoji from split `{s.get('split')}` (four subgroups each); prompt = the emoji's name "
        f"through each text stream; maps: {s.get('method')} on stream `{s.get('image_stream')}`; codes: "
        f"{s.get('encoding')} encoding; masks from the alpha channel. Pointing: the map's maximum inside the "
        "emoji; mIoU: Otsu mask (misses count 0); mAP@0.2: COCOeval segm. Flat: maps without gradient "
        "(the target's latents inactive on the image).",
        ["model", "text stream", "target", "pointing", "mIoU", "mAP@0.2", "flat maps"],
        lambda r: [r["model"], r["text_stream"], r["target"], f"{r['pointing']:.3f}", f"{r['miou']:.3f}",
                   f"{r['map@0.2']:.3f}", f"{r['flat']} / {r['pairs']}"])
    return "\n".join([*lines, "", f"Seconds: {json.dumps(result.seconds)}", ""])


def example_figure(mosaics: list[Mosaic], examples: dict, path: Path, *, text_stream: str | None = None,
                   target: str = "cross") -> Path | None:
    """Per example prompt: the mosaic with the emoji outlined, then each model's map."""
    from PIL import ImageDraw

    from sparc.localize.render import _font, overlay, save_png

    if not examples:
        return None
    keys = sorted({k for v in examples.values() for k in v if k[3] == target and (text_stream in (None, k[2]))})
    if not keys:
        return None
    if text_stream is None:
        ts = keys[0][2]
        keys = [k for k in keys if k[2] == ts]
    cell, head = 160, 34
    items = sorted(examples)
    W, H = cell * (1 + len(keys)), (cell + head) * len(items)
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    font = _font(12)
    for row, (mi, j) in enumerate(items):
        m = mosaics[mi]
        y = row * (cell + head)
        base = m.image.resize((cell, cell))
        edge = Image.fromarray((m.masks[j] * 255).astype(np.uint8)).resize((cell, cell))
        outlined = base.copy()
        outlined.paste((255, 0, 0), mask=edge.point(lambda v: 90 if v > 0 else 0))
        im.paste(outlined, (0, y + head))
        d.text((2, y + 2), f"\"{m.names[j][:40]}\"", fill="black", font=font)
        for c, k in enumerate(keys, 1):
            im.paste(overlay(m.image, examples[(mi, j)][k]).resize((cell, cell)), (c * cell, y + head))
            d.text((c * cell + 2, y + 18), f"{k[0]} ({k[2]}, {k[3]})"[:28], fill="black", font=font)
    return save_png(im, path)


def write_results(result: MosaicResult, mosaics: list[Mosaic], examples: dict, out: Path,
                  runs: list[Path] | None = None) -> list[Path]:
    """``out/localisation.md``, ``.json`` and ``examples.png``; the table also into each
    run's ``localisation-mosaics/`` (``-independent`` for that encoding; the report's
    overview shows it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = render_table(result)
    write_text(out / "localisation.md", table)
    write_text(out / "localisation.json", json.dumps(dataclasses.asdict(result), indent=2, default=str) + "\n")
    written = [out / "localisation.md", out / "localisation.json"]
    fig = example_figure(mosaics, examples, out / "examples.png")
    if fig is not None:
        written.append(fig)
    enc = result.settings.get("encoding", "joint")
    for r in runs or []:
        d = RunDir(r).localisation_dir("mosaics", enc)
        d.mkdir(exist_ok=True)
        write_text(d / "localisation.md", table)
        write_text(d / "localisation.json", json.dumps(dataclasses.asdict(result), indent=2, default=str) + "\n")
    return written
