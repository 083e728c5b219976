"""Otsu masks with their fallback, IoU, pointing game and COCOeval mAP at IoU 0.2."""

from __future__ import annotations

import numpy as np
import pytest

from sparc.localize.scoring import Scorer, iou, otsu_mask, pointing


def square(n=20, y=2, x=2, s=8):
    m = np.zeros((n, n), dtype=bool)
    m[y:y + s, x:x + s] = True
    return m


def test_otsu_mask_and_flat_map():
    h = np.full((20, 20), 0.1, np.float32)
    h[2:10, 2:10] = np.linspace(0.8, 1.0, 64, dtype=np.float32).reshape(8, 8)
    assert (otsu_mask(h) == square()).all()
    assert otsu_mask(np.full((5, 5), 0.3, np.float32)) is None


def test_iou_pointing():
    a, b = square(), square(y=6)
    assert iou(a, b) == pytest.approx(32 / 96)
    assert iou(None, a) == 0.0
    h = np.zeros((20, 20))
    h[3, 3] = 1
    assert pointing(h, a) and not pointing(h, b) and not pointing(h, a, flat=True)


def test_scorer_perfect_missing_and_half():
    sc = Scorer()
    gt1, gt2 = square(), square(x=10)
    sc.add(1, "cat", gt1, gt1.copy(), gt1.astype(float))     # exact
    sc.add(1, "dog", gt2, None, None)                          # a miss: IoU 0, no detection
    sc.add(2, "cat", gt1, square(y=8), None)                   # IoU 16/112 < 0.2: a false positive
    s = sc.summary()
    assert s["pairs"] == 3 and s["predictions"] == 2
    assert s["miou"] == pytest.approx((1 + 0 + 16 / 112) / 3)
    assert s["pointing"] == pytest.approx(1 / 3)
    # cat: one true positive ranked with one false positive (equal scores, pycocotools keeps
    # the order given) over 2 instances; dog: none found → AP 0
    assert 0 < s["map@0.2"] < 1
    perfect = Scorer()
    perfect.add(1, "cat", gt1, gt1, None)
    perfect.add(2, "dog", gt2, gt2, None)
    assert perfect.summary()["map@0.2"] == pytest.approx(1.0)
    none = Scorer()
    none.add(1, "cat", gt1, None, None)
    assert none.summary()["map@0.2"] == 0.0 and none.summary()["miou"] == 0.0
