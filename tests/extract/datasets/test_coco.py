"""coco: captions_*.json, optional instances_*.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparc.errors import SparcError
from sparc.extract.datasets import build
from tests.extract.datasets.helpers import make_image


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """A COCO-style tree: annotations/captions_val2017.json, instances_val2017.json, val2017/."""
    root = tmp_path / "coco"
    for i in (139, 285, 632):
        make_image(root / "val2017" / f"{i:012d}.jpg", (i % 256, 0, 0))
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 6} for i in (632, 139, 285)]
    captions = {
        "info": {},
        "images": images,
        "annotations": [
            {"image_id": 632, "id": 50, "caption": "A bedroom with a bed.\n"},
            {"image_id": 139, "id": 12, "caption": "  A living   room. "},
            {"image_id": 139, "id": 7, "caption": "People in a room."},
            {"image_id": 285, "id": 3, "caption": "A big bear."},
        ],
    }
    instances = {
        "images": images,
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 23, "name": "bear", "supercategory": "animal"},
            {"id": 65, "name": "bed", "supercategory": "furniture"},
            {"id": 62, "name": "chair", "supercategory": "furniture"},
        ],
        "annotations": [
            {"image_id": 139, "category_id": 62, "id": 1},
            {"image_id": 139, "category_id": 1, "id": 2},
            {"image_id": 139, "category_id": 1, "id": 3},
            {"image_id": 285, "category_id": 23, "id": 4},
            {"image_id": 999, "category_id": 65, "id": 5},
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(captions))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    return root


def test_pairs_groups_order_labels(coco: Path):
    ann = coco / "annotations"
    ds = build("coco", captions=ann / "captions_val2017.json", instances=ann / "instances_val2017.json")
    rows = list(ds)
    assert [(r.row_id, r.group_id) for r in rows] == [("7", "139"), ("12", "139"), ("3", "285"), ("50", "632")]
    assert rows[1].caption == "A living room." and rows[3].caption == "A bedroom with a bed."
    assert rows[0].labels == ("person", "chair") == rows[1].labels  # category-id order
    assert rows[2].labels == ("bear",) and rows[3].labels == ()
    assert rows[0].image == "000000000139.jpg"
    im = ds.load_image(rows[2])
    assert im.mode == "RGB" and abs(im.getpixel((0, 0))[0] - 285 % 256) < 8  # JPEG
    assert ds.label_hierarchy() == {"person": None, "bear": "animal", "bed": "furniture", "chair": "furniture",
                                    "animal": None, "furniture": None}  # fmt: skip
    assert "COCO" in ds.credits()
    assert list(ds) == list(
        build("coco", captions=ann / "captions_val2017.json", instances=ann / "instances_val2017.json")
    )


def test_joined_captions_and_no_labels(coco: Path):
    ds = build("coco", captions=coco / "annotations" / "captions_val2017.json", join_captions="true", separator=" | ")
    assert [(r.row_id, r.group_id) for r in ds] == [("139", "139"), ("285", "285"), ("632", "632")]
    assert ds[0].caption == "People in a room. | A living room."
    assert all(r.labels == () for r in ds) and ds.label_hierarchy() is None


def test_explicit_image_dir_and_missing_images(coco: Path, tmp_path: Path):
    cap = coco / "annotations" / "captions_val2017.json"
    (coco / "val2017" / "000000000285.jpg").unlink()
    with pytest.raises(SparcError, match="1 of 3 images are missing"):
        build("coco", captions=cap)
    ds = build("coco", captions=cap, images=coco / "val2017", missing_images="skip")
    assert [r.group_id for r in ds] == ["139", "139", "632"]


def test_errors(coco: Path, tmp_path: Path):
    cap = coco / "annotations" / "captions_val2017.json"
    with pytest.raises(SparcError, match="captions annotation file \\(captions_\\*.json\\) not found"):
        build("coco", captions=tmp_path / "captions_x.json")
    with pytest.raises(SparcError, match="instances annotation file .* not found"):
        build("coco", captions=cap, instances=tmp_path / "nope.json")
    other = tmp_path / "captions_train2017.json"
    other.write_text(cap.read_text())
    with pytest.raises(SparcError, match="give the image folder with images=.*train2017"):
        build("coco", captions=other)
    bad = tmp_path / "bad.json"
    for text, match in [
        ("{not json", "is not valid JSON"),
        ('{"images": []}', "no 'annotations' list"),
        ('{"images": [], "annotations": []}', "has no caption annotations"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "id": 1, "caption": "x"}]}',
         "caption 1 refers to unknown image 2"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "x"}]}',
         "without image_id, id and caption"),
    ]:  # fmt: skip
        bad.write_text(text)
        with pytest.raises(SparcError, match=match):
            build("coco", captions=bad, images=coco / "val2017")
    inst = tmp_path / "instances_other.json"
    inst.write_text(json.dumps({"images": [{"id": 5}], "categories": [], "annotations": []}))
    with pytest.raises(SparcError, match="describes none of the captioned images"):
        build("coco", captions=cap, instances=inst)
