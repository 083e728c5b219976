"""Heatmaps for ``sparc report``: each latent on its top images and its top captions.

Writes the report's heatmap hook, ``RUN/heatmaps/index.json`` =
``{"latents": {"<latent>": {"<stream>": [["<row id>", "<image path>"], ...]}}}`` (paths
relative to ``RUN/heatmaps``), which :func:`sparc.explore.report.write_report` copies
onto each latent's page:

- **image streams with a spatial map** — the latent's map (the image encoded alone, the
  target its value there) laid over each of its top rows under the *independent* encoding
  (the images on which the latent fires from the image alone); a row where the map is flat
  is skipped;
- **text streams** — the latent's top captions (independent encoding) with each word
  shaded by its attribution to the latent (:mod:`.text_attribution`).

Rows are shared between latents: a CNN backbone runs once per distinct image.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparc.atomic import atomic_path
from sparc.errors import SparcError
from sparc.explore.sources import RowImages, backbone_for, stream_modality
from sparc.localize.heatmap import ImageMapper
from sparc.localize.render import overlay, words_png
from sparc.localize.spatial import spatial_for
from sparc.localize.targets import Query
from sparc.localize.text_attribution import TextAttributor
from sparc.train.rundir import RunDir
from sparc.workspace import writing


@dataclass(frozen=True)
class ReportHeatmapSettings:
    """What the report's heatmaps cover."""

    rows: int = 3
    """Top images (and captions) per latent and stream."""

    max_latents: int | None = None
    """Only the latents that fire most often (none: every latent that fires)."""

    px: int = 128
    """Side of a heatmap picture in pixels."""

    text: bool = True
    """Also shade the words of the top captions of text streams."""

    progress: bool = True


@dataclass
class ReportHeatmaps:
    path: Path
    images: int
    captions: int
    seconds: float
    notes: list[str]

    def summary(self) -> str:
        return (f"heatmaps: {self.images:,} image maps and {self.captions:,} shaded captions in {self.path} "
                f"({self.seconds:.0f} s)")


def _latents(ex, stream: str, settings: ReportHeatmapSettings) -> list[int]:
    st = ex.stats
    e, s = st.encoding_index("independent"), st.stream_index(stream)
    fires = np.asarray(st.fires[e][s])
    order = [int(i) for i in np.argsort(-fires, kind="stable") if fires[i] > 0]
    return order[:settings.max_latents] if settings.max_latents is not None else order


def write_report_heatmaps(ex, settings: ReportHeatmapSettings = ReportHeatmapSettings(), *,
                          device: str = "cpu", backbones: dict[str, str] | None = None) -> ReportHeatmaps:
    """Write ``RUN/heatmaps/`` for the explorer's run (replacing an earlier one)."""
    from tqdm.auto import tqdm

    if ex.run is None:
        raise SparcError("report heatmaps go into a run directory; open the explorer on a run")
    t0 = time.perf_counter()
    st, store, model = ex.stats, ex.store, ex.model
    meta = store.rows()
    index: dict = {}
    notes: list[str] = []
    n_img = n_txt = 0
    with writing(RunDir(ex.run).heatmaps, "sparc heatmap --for-report"), \
            atomic_path(RunDir(ex.run).heatmaps, is_dir=True) as tmp:
        for stream in model.names:
            modality = stream_modality(store, stream)
            if modality not in ("image", "text") or (modality == "text" and not settings.text):
                continue
            try:
                bb = backbone_for(store, stream, spec=(backbones or {}).get(stream), device=device)
                if modality == "image":
                    spatial_for(bb, stream)
            except SparcError as e:
                notes.append(f"{stream}: no heatmaps ({e})")
                continue
            lats = _latents(ex, stream, settings)
            (tmp / stream).mkdir()
            if modality == "image":
                n_img += _image_maps(ex, stream, bb, lats, settings, tmp, index, meta, notes)
            else:
                attr = TextAttributor(model, stream, bb)
                bar = tqdm(lats, disable=not settings.progress, desc=f"words {stream}", unit="latent",
                           dynamic_ncols=True)
                for lat in bar:
                    rows, _ = st.top("independent", stream, lat, settings.rows)
                    for r in rows.tolist():
                        text = meta[r].caption
                        if not text:
                            continue
                        ws = attr.attribute(text, (lat,))
                        if ws.target <= 0:
                            continue
                        rel = Path(stream) / f"{lat}-{r}.png"
                        words_png(ws.words, ws.scores, width=2 * settings.px + 64, font_size=13).save(tmp / rel)
                        index.setdefault(str(lat), {}).setdefault(stream, []).append([meta[r].row_id, rel.as_posix()])
                        n_txt += 1
        (tmp / "index.json").write_text(json.dumps({"latents": index, "notes": notes}) + "\n")
    return ReportHeatmaps(RunDir(ex.run).heatmaps, n_img, n_txt, time.perf_counter() - t0, notes)


def _image_maps(ex, stream, bb, lats, settings, tmp: Path, index: dict, meta, notes) -> int:
    from tqdm.auto import tqdm

    st = ex.stats
    mapper = ImageMapper(ex.model, stream, bb)
    need: dict[int, list[int]] = {}
    rank: dict[tuple[int, int], int] = {}
    for lat in lats:
        rows, _ = st.top("independent", stream, lat, settings.rows)
        for i, r in enumerate(rows.tolist()):
            need.setdefault(int(r), []).append(lat)
            rank[(lat, meta[int(r)].row_id)] = i
    images = RowImages(ex.store)
    if images.note:
        notes.append(f"{stream}: {images.note}")
    order = sorted(need)
    n = 0
    batch = 16
    bar = tqdm(total=len(order), disable=not settings.progress, desc=f"heatmaps {stream}", unit="img",
               dynamic_ncols=True)
    for a in range(0, len(order), batch):
        rows = order[a:a + batch]
        ims = [images.load(meta[r]) for r in rows]
        ok = [i for i, im in enumerate(ims) if im is not None]
        pairs = [(k, Query(latents=(lat,))) for k, i in enumerate(ok) for lat in need[rows[i]]]
        got = mapper.maps([ims[i] for i in ok], pairs)
        for p, (k, q) in enumerate(pairs):
            if got.flat[p]:
                continue
            r, lat = rows[ok[k]], q.latents[0]
            rel = Path(stream) / f"{lat}-{r}.webp"
            im = ims[ok[k]]
            pic = overlay(im, got.maps[p], max_side=settings.px)
            pic.save(tmp / rel, format="WEBP", quality=80, method=4)
            index.setdefault(str(lat), {}).setdefault(stream, []).append([meta[r].row_id, rel.as_posix()])
            n += 1
        bar.update(len(rows))
    bar.close()
    for lat in lats:  # each latent's maps in the order of its top rows
        items = index.get(str(lat), {}).get(stream)
        if items:
            items.sort(key=lambda item, lat=lat: rank[(lat, item[0])])
    return n
