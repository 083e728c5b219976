"""From maps to scores, as the original's notebooks ``t3_segmentation-coco-*`` do
(docs/method.md §5.7).

- **mask** — Otsu's threshold of the map at the image's resolution
  (``skimage.filters.threshold_otsu``), pixels ``≥`` it; if none, pixels ``≥ 0.3·max``. A
  flat map (no gradient) gives no mask: a miss.
- **mAP at IoU 0.2** — pycocotools' ``COCOeval`` on segmentations, one ground-truth
  annotation per (image, category) pair (the union of its instances) and at most one
  prediction per pair with score 1, ``iouThrs = [0.2]``; ``stats[0]``.
- **mIoU** — the IoU of each pair's prediction with its ground truth, averaged over ALL
  ground-truth pairs (a missing prediction counts 0).
- **pointing game** — a hit when the map's maximum lies inside the ground truth (a flat
  map: a miss).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from sparc.errors import SparcError

IOU_THRESHOLD = 0.2
FALLBACK = 0.3


def _skimage():
    try:
        from skimage.filters import threshold_otsu
    except ImportError:
        raise SparcError("localisation scores need scikit-image: pip install 'sparc-sae[localize]'") from None
    return threshold_otsu


def _coco():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise SparcError("localisation scores need pycocotools: pip install 'sparc-sae[localize]'") from None
    return mask_utils, COCO, COCOeval


def otsu_mask(h: np.ndarray, fallback: float = FALLBACK) -> np.ndarray | None:
    """The predicted mask of map ``h`` (H×W); None for a constant map."""
    h = np.asarray(h, dtype=np.float32)
    if not np.isfinite(h).all() or float(h.max()) <= float(h.min()):
        return None
    m = h >= _skimage()(h)
    if not m.any():
        m = h >= h.max() * fallback
    return m if m.any() else None


def iou(pred: np.ndarray | None, gt: np.ndarray) -> float:
    if pred is None:
        return 0.0
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 0.0


def pointing(h: np.ndarray, gt: np.ndarray, flat: bool = False) -> bool:
    """Whether the map's maximum (the first, in row-major order) lies inside ``gt``."""
    if flat:
        return False
    y, x = np.unravel_index(int(np.argmax(h)), h.shape)
    return bool(gt[y, x])


def _rle(mask_utils, m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def _bbox(m: np.ndarray) -> list[int]:
    ys, xs = np.where(m)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


@dataclass
class Scorer:
    """Accumulates (image, category) pairs of one method and scores them."""

    iou_threshold: float = IOU_THRESHOLD
    images: dict[int, tuple[int, int]] = field(default_factory=dict)
    gts: list[dict] = field(default_factory=list)
    dts: list[dict] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    ious: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    n_flat: int = 0

    def add(self, image_id: int, category: str, gt: np.ndarray, pred: np.ndarray | None,
            h: np.ndarray | None = None, *, flat: bool = False) -> None:
        """One pair: its ground truth ``gt`` (H×W bool), the predicted mask (None: a miss)
        and the map ``h`` (for the pointing game; None: no map, a miss)."""
        mask_utils, _, _ = _coco()
        gt = np.asarray(gt, dtype=bool)
        if not gt.any():
            raise SparcError(f"pair ({image_id}, {category!r}) has an empty ground-truth mask")
        H, W = gt.shape
        self.images[int(image_id)] = (H, W)
        cid = self.categories.setdefault(category, len(self.categories) + 1)
        g = _rle(mask_utils, gt)
        self.gts.append({"id": len(self.gts) + 1, "image_id": int(image_id), "category_id": cid, "segmentation": g,
                         "area": float(mask_utils.area(g)), "bbox": _bbox(gt), "iscrowd": 0})
        if pred is not None:
            self.dts.append({"image_id": int(image_id), "category_id": cid, "score": 1.0,
                             "segmentation": _rle(mask_utils, pred), "bbox": _bbox(pred)})
        self.ious.append(iou(pred, gt))
        self.hits.append(False if h is None else pointing(h, gt, flat))
        self.n_flat += int(flat)

    def add_map(self, image_id: int, category: str, gt: np.ndarray, h: np.ndarray, *, flat: bool = False) -> None:
        """One pair from its map at the image's resolution (Otsu mask, pointing game)."""
        self.add(image_id, category, gt, None if flat else otsu_mask(h), h, flat=flat)

    def mean_ap(self) -> float:
        """COCOeval segm mAP at IoU ``iou_threshold`` (the original's ``stats[0]``)."""
        if not self.gts:
            return float("nan")
        _, COCO, COCOeval = _coco()
        gt = COCO()
        gt.dataset = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in self.images.items()],
                      "annotations": self.gts,
                      "categories": [{"id": v, "name": k} for k, v in self.categories.items()]}
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            if not self.dts:
                return 0.0
            dt = gt.loadRes([dict(d) for d in self.dts])
            ev = COCOeval(gt, dt, iouType="segm")
            ev.params.iouThrs = np.array([self.iou_threshold])
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0]) if ev.stats[0] >= 0 else float("nan")

    def summary(self) -> dict:
        n = len(self.gts)
        return {
            "pairs": n,
            "predictions": len(self.dts),
            "flat": self.n_flat,
            f"map@{self.iou_threshold:g}": self.mean_ap(),
            "miou": float(np.mean(self.ious)) if n else float("nan"),
            "pointing": float(np.mean(self.hits)) if n else float("nan"),
        }


@dataclass
class ProtocolResult:
    """What a localisation protocol measured (each protocol adds its counts)."""

    rows: list[dict] = field(default_factory=list)
    """One per (model, image stream, text stream, target) and per baseline."""
    settings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    def add_scores(self, scorers: dict[tuple[str, str, str, str], Scorer]) -> None:
        """A row of scores for each (model, image stream, text stream, target) scored."""
        for (model, image, text, target), sc in scorers.items():
            self.rows.append({"model": model, "image_stream": image, "text_stream": text, "target": target,
                              **sc.summary()})

    def markdown(self, title: str, description: str, columns: list[str], cells) -> list[str]:
        """The report's lines: a title, the protocol in one paragraph, the table of the
        rows (``cells(row)`` gives a row's cells in ``columns``' order)."""
        from sparc.eval.output.markdown import table

        return [f"# {title}", "", description, "", table(columns, [cells(r) for r in self.rows])]
