"""open-images: Localized Narratives rows, boxable image-level labels, class hierarchy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparc.errors import SparcError
from sparc.extract.datasets import build
from tests.extract.datasets.helpers import make_image, write_jsonl

CLASSES = """/m/01g317,Person
/m/04yx4,Man
/m/03bt1vf,Woman
/m/0k4j,Car
/m/0199g,Bicycle
/m/01bqk0,Bicycle wheel
/m/0cgh4,Building
/m/0d4v4,Window
"""

HIERARCHY = {
    "LabelName": "/m/0bl9f",  # Entity: not a class
    "Subcategory": [
        {"LabelName": "/m/01g317", "Subcategory": [{"LabelName": "/m/04yx4"}, {"LabelName": "/m/03bt1vf"}]},
        {"LabelName": "/m/07yv9", "Subcategory": [  # Vehicle: not in the class list
            {"LabelName": "/m/0k4j"},
            {"LabelName": "/m/0199g", "Part": [{"LabelName": "/m/01bqk0"}]},
        ]},
        {"LabelName": "/m/0cgh4", "Part": [{"LabelName": "/m/0d4v4"}]},
        {"LabelName": "/m/03bt1vf"},  # a second place for Woman (the file is a DAG): first wins
    ],
}  # fmt: skip

LABELS = """ImageID,Source,LabelName,Confidence
img1,verification,/m/04yx4,1
img1,verification,/m/0k4j,1
img1,verification,/m/0199g,0
img1,crowdsource-verification,/m/09j2d,1
img2,verification,/m/01g317,1.0
img2,verification,/m/0cgh4,1
img2,verification,/m/03bt1vf,1
img9,verification,/m/0k4j,1
"""


@pytest.fixture
def oi(tmp_path: Path) -> Path:
    root = tmp_path / "oi"
    for i in (1, 2, 3):
        make_image(root / "test" / f"img{i}.jpg")
    write_jsonl(
        root / "narr-00000-of-00002.jsonl",
        [
            {"dataset_id": "open_images", "image_id": "img2", "annotator_id": 7, "caption": "In this image  a woman.",
             "timed_caption": [], "traces": [], "voice_recording": "x.ogg"},
            {"dataset_id": "open_images", "image_id": "img1", "annotator_id": 7, "caption": "A man and a car."},
        ],
    )  # fmt: skip
    write_jsonl(
        root / "narr-00001-of-00002.jsonl",
        [
            {"image_id": "img1", "annotator_id": 9, "caption": "A car on a road."},
            {"image_id": "img3", "annotator_id": 7, "caption": "Nothing labelled."},
            {"image_id": "img1", "annotator_id": 9, "caption": "Same annotator again."},
        ],
    )
    (root / "classes.csv").write_text(CLASSES)
    (root / "labels.csv").write_text(LABELS)
    (root / "hierarchy.json").write_text(json.dumps(HIERARCHY))
    return root


def build_oi(root: Path, **kw):
    opts = dict(
        narratives=str(root / "narr-*.jsonl"),
        images=root / "test",
        labels=root / "labels.csv",
        classes=root / "classes.csv",
        hierarchy=root / "hierarchy.json",
    )
    opts.update(kw)
    return build("open-images", **opts)


def test_rows_groups_labels(oi: Path):
    ds = build_oi(oi)
    rows = list(ds)
    assert [(r.row_id, r.group_id) for r in rows] == [
        ("img2:7", "img2"), ("img1:7", "img1"), ("img1:9", "img1"), ("img3:7", "img3"), ("img1:9#1", "img1"),
    ]  # fmt: skip
    assert rows[0].caption == "In this image a woman."
    assert rows[1].labels == ("Car", "Man")  # Confidence 0 and non-boxable /m/09j2d dropped, sorted
    assert rows[0].labels == ("Building", "Person", "Woman")  # 1.0 counts as 1
    assert rows[3].labels == () and rows[2].labels == rows[1].labels
    assert rows[0].image == "img2.jpg"
    assert ds.load_image(rows[0]).mode == "RGB"
    assert "Localized Narratives" in ds.credits()
    assert list(ds) == list(build_oi(oi))


def test_hierarchy_display_names(oi: Path):
    h = build_oi(oi).label_hierarchy()
    assert h == {
        "Person": None, "Man": "Person", "Woman": "Person",
        "Car": None, "Bicycle": None,  # their parent "Vehicle" is not a class: roots
        "Bicycle wheel": "Bicycle",  # reachable only as a Part: parent = the whole
        "Building": None, "Window": "Building",
    }  # fmt: skip


def test_header_in_classes_and_list_of_files(oi: Path):
    (oi / "classes2.csv").write_text("LabelName,DisplayName\n" + CLASSES + "/m/0x,Person\n")
    files = [oi / "narr-00001-of-00002.jsonl", oi / "narr-00000-of-00002.jsonl"]
    ds = build_oi(oi, narratives=files, classes=oi / "classes2.csv", hierarchy=None)
    assert list(ds) == list(
        build_oi(oi, narratives="|".join(map(str, files)), classes=oi / "classes2.csv", hierarchy=None)
    )
    # a list keeps the given order; duplicate display names get their MID
    assert [r.row_id for r in ds][:2] == ["img1:9", "img3:7"]
    assert ds[-2].labels == ("Building", "Person (/m/01g317)", "Woman")
    assert ds.label_hierarchy() is None


def test_without_labels(oi: Path):
    ds = build("open-images", narratives=oi / "narr-00000-of-00002.jsonl", images=oi / "test")
    assert len(ds) == 2 and all(r.labels == () for r in ds)


def test_missing_images(oi: Path):
    (oi / "test" / "img3.jpg").unlink()
    with pytest.raises(SparcError, match="1 of 3 images are missing.*img3.jpg"):
        build_oi(oi)
    assert "img3" not in {r.group_id for r in build_oi(oi, missing_images="skip")}


def test_errors(oi: Path, tmp_path: Path):
    with pytest.raises(SparcError, match="no Localized Narratives JSONL file matches"):
        build_oi(oi, narratives=str(oi / "none-*.jsonl"))
    with pytest.raises(SparcError, match="Localized Narratives JSONL file not found"):
        build_oi(oi, narratives=oi / "x.jsonl")
    with pytest.raises(SparcError, match="need classes="):
        build_oi(oi, classes=None)
    with pytest.raises(SparcError, match="image folder \\(images\\) is not a directory"):
        build_oi(oi, images=oi / "nope")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"image_id": "img1"}])
    with pytest.raises(SparcError, match="line 1 needs 'image_id' and 'caption'"):
        build_oi(oi, narratives=bad)
    (tmp_path / "labels.csv").write_text("ImageID,LabelName\nimg1,/m/0k4j\n")
    with pytest.raises(SparcError, match="needs the header ImageID,Source,LabelName,Confidence"):
        build_oi(oi, labels=tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\nimg1,v,/m/0k4j,high\n")
    with pytest.raises(SparcError, match="line 2 is not ImageID,Source,LabelName,Confidence"):
        build_oi(oi, labels=tmp_path / "labels.csv")
    (tmp_path / "classes.csv").write_text("/m/0k4j\n")
    with pytest.raises(SparcError, match="line 1 must be LabelName,DisplayName"):
        build_oi(oi, classes=tmp_path / "classes.csv")
    (tmp_path / "h.json").write_text('{"Subcategory": []}')
    with pytest.raises(SparcError, match="must be a nested object"):
        build_oi(oi, hierarchy=tmp_path / "h.json")
    (tmp_path / "h.json").write_text('{"LabelName": "/m/0bl9f", "Subcategory": [{"Name": 1}]}')
    with pytest.raises(SparcError, match="node without LabelName"):
        build_oi(oi, hierarchy=tmp_path / "h.json")
