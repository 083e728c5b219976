"""fashion-mnist: idx files (tiny ones written here; the Debian package's when installed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from sparc.errors import SparcError
from sparc.extract.datasets import build
from sparc.extract.datasets.fashion_mnist import DEFAULT_ROOT


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    data = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def make_split(root: Path, prefix: str, labels: list[int], gz: bool = True) -> np.ndarray:
    rng = np.random.default_rng(len(labels))
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{sfx}", images, gz)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{sfx}", np.array(labels), gz)
    return images


@pytest.fixture
def fm(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path / "fm"
    root.mkdir()
    train = make_split(root, "train", [9, 0, 7, 3], gz=True)
    test = make_split(root, "t10k", [8, 5], gz=False)
    return root, train, test


def test_rows_and_images(fm):
    root, train, test = fm
    ds = build("fashion-mnist", root=root)
    rows = list(ds)
    assert [r.row_id for r in rows] == [
        "train/00000",
        "train/00001",
        "train/00002",
        "train/00003",
        "test/00000",
        "test/00001",
    ]
    assert all(r.group_id == r.row_id == r.image for r in rows)
    assert [r.labels for r in rows] == [
        ("Ankle boot",),
        ("T-shirt/top",),
        ("Sneaker",),
        ("Dress",),
        ("Bag",),
        ("Sandal",),
    ]
    assert rows[0].caption == "a photo of an ankle boot" and rows[1].caption == "a photo of a t-shirt or top"
    im = ds.load_image(rows[2])
    assert im.mode == "RGB" and im.size == (28, 28)
    a = np.asarray(im)
    assert (a[..., 0] == train[2]).all() and (a[..., 1] == a[..., 2]).all()
    assert (np.asarray(ds.load_image(rows[5]))[..., 0] == test[1]).all()
    assert "Zalando" in ds.credits() and ds.label_hierarchy() is None
    assert list(ds) == list(build("fashion-mnist", root=root))


def test_split_limit_template(fm):
    root, _, _ = fm
    assert [r.row_id for r in build("fashion-mnist", root=root, split="test")] == ["test/00000", "test/00001"]
    assert len(build("fashion-mnist", root=root, split="test,train")) == 6
    assert [r.row_id for r in build("fashion-mnist", root=root, split="test|train")][:3] == [
        "test/00000",
        "test/00001",
        "train/00000",
    ]
    ds = build("fashion-mnist", root=root, split=["train"], limit="2", caption_template="{label} / {name}")
    assert [r.caption for r in ds] == ["Ankle boot / ankle boot", "T-shirt/top / t-shirt or top"]
    assert all(r.caption is None for r in build("fashion-mnist", root=root, caption_template=""))


def test_errors(fm, tmp_path: Path):
    root, _, _ = fm
    for split in ("val", "train,train", ""):
        with pytest.raises(SparcError, match="option split="):
            build("fashion-mnist", root=root, split=split)
    with pytest.raises(SparcError, match="option limit=-1 must be at least 0"):
        build("fashion-mnist", root=root, limit=-1)
    with pytest.raises(SparcError, match="bad caption template"):
        build("fashion-mnist", root=root, caption_template="{colour}")
    with pytest.raises(SparcError, match="apt-get install dataset-fashion-mnist"):
        build("fashion-mnist", root=tmp_path / "nope")
    (root / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(SparcError, match="t10k-images-idx3-ubyte' \\(or .gz\\) not found"):
        build("fashion-mnist", root=root)
    assert len(build("fashion-mnist", root=root, split="train")) == 4

    bad = tmp_path / "bad"
    bad.mkdir()
    write_idx(bad / "train-labels-idx1-ubyte", np.array([[1, 2]]), gz=False)  # idx2, not idx1
    write_idx(bad / "train-images-idx3-ubyte", np.zeros((2, 28, 28)), gz=False)
    with pytest.raises(SparcError, match="is not an idx1 file of unsigned bytes"):
        build("fashion-mnist", root=bad, split="train")
    write_idx(bad / "train-labels-idx1-ubyte", np.array([1, 12]), gz=False)
    with pytest.raises(SparcError, match="labels above 9"):
        build("fashion-mnist", root=bad, split="train")
    (bad / "train-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 8, 1, 5) + b"\x01\x02")
    with pytest.raises(SparcError, match="holds 2 bytes of data, its header says 5"):
        build("fashion-mnist", root=bad, split="train")
    write_idx(bad / "train-labels-idx1-ubyte", np.array([1, 2, 3]), gz=False)  # 3 labels, 2 images
    ds = build("fashion-mnist", root=bad, split="train")
    with pytest.raises(SparcError, match="has 2 images but the labels file 3"):
        ds.load_image(ds[0])
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    (bad / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(SparcError, match="cannot read"):
        build("fashion-mnist", root=bad, split="train")


@pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_files():
    ds = build("fashion-mnist")
    assert len(ds) == 70_000
    assert len(build("fashion-mnist", split="test")) == 10_000
    assert ds[0].labels == ("Ankle boot",) and ds[60_000].row_id == "test/00000"
    counts = {}
    for r in ds:
        counts[r.labels[0]] = counts.get(r.labels[0], 0) + 1
    assert len(counts) == 10 and set(counts.values()) == {7000}
    im = ds.load_image(ds[-1])
    assert im.size == (28, 28) and im.mode == "RGB" and np.asarray(im).max() > 0
