"""image-folder: captions CSV/JSONL and ImageNet-style scanning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparc.errors import SparcError
from sparc.extract.datasets import build
from tests.extract.datasets.helpers import make_image, write_jsonl

CSV = """image,caption,labels
a.png,a red square,red|square
a.png,  another caption for a  ,"[""red"", ""thing""]"
sub/c.png,a blue square,
b.png,,green
"""


def test_csv_rows_ids_groups_labels(images: Path):
    (images / "captions.csv").write_text(CSV, encoding="utf-8")
    ds = build("image-folder", root=images, captions=images / "captions.csv")
    rows = list(ds)
    assert len(ds) == 4
    assert [r.row_id for r in rows] == ["a.png", "a.png#1", "sub/c.png", "b.png"]
    assert [r.group_id for r in rows] == ["a.png", "a.png", "sub/c.png", "b.png"]
    assert rows[0].labels == ("red", "square") and rows[1].labels == ("red", "thing")
    assert rows[2].labels == () and rows[3].caption is None
    assert rows[1].caption == "  another caption for a  "
    im = ds.load_image(rows[2])
    assert im.mode == "RGB" and im.size == (8, 6) and im.getpixel((0, 0)) == (0, 0, 255)
    assert ds.label_hierarchy() is None and ds.credits() is None


def test_jsonl_explicit_ids_and_relative_captions_path(images: Path):
    write_jsonl(
        images / "meta.jsonl",
        [
            {"image": "b.png", "caption": "green", "labels": ["g"], "row_id": "r1", "group_id": "G"},
            {"image": "a.png", "caption": "red", "labels": "x|y"},
            {"image": "a.png", "caption": "red again", "row_id": "a.png#1"},
            {"image": "a.png", "caption": "red once more"},
        ],
    )
    ds = build("image-folder", root=str(images), captions="meta.jsonl")  # found inside root
    assert [(r.row_id, r.group_id) for r in ds] == [
        ("r1", "G"),
        ("a.png", "a.png"),
        ("a.png#1", "a.png"),
        ("a.png#2", "a.png"),
    ]
    assert ds[0].labels == ("g",) and ds[1].labels == ("x", "y")


def test_scan_labels_from_folders(tmp_path: Path):
    root = tmp_path / "imagenet"
    make_image(root / "golden_retriever" / "2.jpg")
    make_image(root / "golden_retriever" / "1.jpg")
    make_image(root / "apple" / "x.png")
    make_image(root / ".hidden" / "y.png")
    make_image(root / "loose.png")
    (root / "notes.txt").write_text("not an image")
    ds = build("image-folder", root=root)
    rows = list(ds)
    assert [r.row_id for r in rows] == ["apple/x.png", "golden_retriever/1.jpg", "golden_retriever/2.jpg", "loose.png"]
    assert rows[0].labels == ("apple",) and rows[0].caption == "a photo of an apple"
    assert rows[1].caption == "a photo of a golden retriever"
    assert rows[3].labels == () and rows[3].caption is None
    assert all(r.group_id == r.row_id == r.image for r in rows)
    assert ds.label_hierarchy() is None
    plain = build("image-folder", root=root, caption_template="")
    assert all(r.caption is None for r in plain)


def test_scan_nested_hierarchy(tmp_path: Path):
    root = tmp_path / "tree"
    make_image(root / "animal" / "dog" / "1.png")
    make_image(root / "animal" / "cat" / "1.png")
    make_image(root / "plant" / "1.png")
    ds = build("image-folder", root=root, caption_template="{label}")
    assert [r.labels for r in ds] == [("animal", "cat"), ("animal", "dog"), ("plant",)]
    assert [r.caption for r in ds] == ["cat", "dog", "plant"]
    assert ds.label_hierarchy() == {"animal": None, "cat": "animal", "dog": "animal", "plant": None}


def test_hierarchy_file(images: Path, tmp_path: Path):
    h = tmp_path / "h.json"
    h.write_text(json.dumps({"red": "colour", "green": "colour"}))
    (images / "c.csv").write_text("image,labels\na.png,red\n")
    ds = build("image-folder", root=images, captions=images / "c.csv", hierarchy=h)
    assert ds.label_hierarchy() == {"red": "colour", "green": "colour", "colour": None}
    h.write_text(json.dumps({"a": "b", "b": "a"}))
    with pytest.raises(SparcError, match="cycle"):
        build("image-folder", root=images, captions=images / "c.csv", hierarchy=h)
    h.write_text("[1, 2]")
    with pytest.raises(SparcError, match="must be a JSON object"):
        build("image-folder", root=images, captions=images / "c.csv", hierarchy=h)


def test_deterministic(images: Path):
    (images / "captions.csv").write_text(CSV, encoding="utf-8")
    a = list(build("image-folder", root=images, captions=images / "captions.csv"))
    b = list(build("image-folder", root=images, captions=images / "captions.csv"))
    assert a == b
    assert list(build("image-folder", root=images)) == list(build("image-folder", root=images))


def test_missing_images_policy(images: Path):
    (images / "c.csv").write_text("image,caption\na.png,x\ngone.png,y\ngone.png,z\nalso/gone.jpg,w\n")
    with pytest.raises(SparcError, match=r"2 of 3 images are missing.*first: 'gone.png'.*missing_images=skip"):
        build("image-folder", root=images, captions=images / "c.csv")
    ds = build("image-folder", root=images, captions=images / "c.csv", missing_images="skip")
    assert [r.row_id for r in ds] == ["a.png"]
    assert len(build("image-folder", root=images, captions=images / "c.csv", missing_images="ignore")) == 4
    with pytest.raises(SparcError, match="missing_images='maybe' must be one of error, skip, ignore"):
        build("image-folder", root=images, captions=images / "c.csv", missing_images="maybe")


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("c.csv", "path,caption\na.png,x\n", "needs a header with an 'image' column"),
        ("c.csv", "image,caption\n,x\n", "line 2 has no 'image'"),
        ("c.csv", 'image,labels\na.png,"[1, 2"\n', "line 2: bad labels"),
        ("c.csv", "image,row_id\na.png,r\nb.png,r\n", "line 3: duplicate row_id 'r' \\(also line 2\\)"),
        ("c.csv", "image,caption\n", "has no rows"),
        ("c.jsonl", '{"image": "a.png"}\nnot json\n', "line 2 is not JSON"),
        ("c.jsonl", "[1]\n", "line 1 must be a JSON object"),
        ("c.txt", "a.png\n", "must end in .csv or .jsonl"),
    ],
)
def test_bad_captions_files(images: Path, name: str, text: str, match: str):
    (images / name).write_text(text)
    with pytest.raises(SparcError, match=match) as e:
        build("image-folder", root=images, captions=images / name)
    assert "\n" not in str(e.value)


def test_missing_root_and_files(tmp_path: Path, images: Path):
    with pytest.raises(SparcError, match="image folder \\(root\\) is not a directory"):
        build("image-folder", root=tmp_path / "nope")
    with pytest.raises(SparcError, match="captions file \\(CSV or JSONL\\) not found"):
        build("image-folder", root=images, captions="nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SparcError, match="no images .* and no captions file"):
        build("image-folder", root=tmp_path / "empty")
