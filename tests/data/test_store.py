"""FeatureStore.open validation, accessors and describe_store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparc.data import FeatureStore, describe_store
from sparc.errors import SparcError


def _one_line_error(path, match):
    with pytest.raises(SparcError, match=match) as e:
        FeatureStore.open(path)
    assert "\n" not in str(e.value)


def test_missing_dir_and_manifest(tmp_path):
    _one_line_error(tmp_path / "nope", "no feature store at .*directory not found")
    (tmp_path / "d").mkdir()
    _one_line_error(tmp_path / "d", "not a sparc feature store \\(no manifest.json\\)")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: "{not json", "invalid manifest .*; re-create the store"),
        (lambda m: json.dumps({**m, "format": "other"}), "'format' is not 'sparc-store'"),
        (lambda m: json.dumps({**m, "version": 9}), "version 9 is not supported"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "n_rows"}), "missing key 'n_rows'"),
        (lambda m: json.dumps({**m, "n_rows": -1}), "n_rows must be"),
        (lambda m: json.dumps({**m, "streams": {"a": {"dim": 2, "dtype": "int8", "file": "x"}}}), "dtype must be"),
        (lambda m: json.dumps({**m, "streams": {"a": {"dim": 2, "dtype": "float32", "file": "/etc/x"}}}),
         "relative path"),
        (lambda m: json.dumps({**m, "rows_sorted": True}), "unknown key 'rows_sorted' .*newer sparc"),
        (lambda m: json.dumps({**m, "streams": {"a": {"dim": 2, "dtype": "float32", "file": "x", "scale": 2}}}),
         "stream 'a': unknown key 'scale'"),
        (lambda m: json.dumps({**m, "n_rows": m["n_rows"] + 1}), "holds float32 \\[20, 6\\] but the manifest says"),
    ],
)
def test_invalid_manifest(make_store, edit, match):
    path = make_store(20)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(edit(manifest))
    _one_line_error(path, match)


def test_missing_or_truncated_files(make_store):
    path = make_store(20)
    (path / "features" / "clip_txt.npy").unlink()
    _one_line_error(path, "missing features/clip_txt.npy .*re-create it")
    path = make_store(20, name="t")
    f = path / "features" / "dino.npy"
    f.write_bytes(f.read_bytes()[:-10])
    _one_line_error(path, "cannot read .*dino.npy")
    path = make_store(20, name="u")
    (path / "splits.npy").unlink()
    _one_line_error(path, "missing splits.npy")
    path = make_store(20, name="v")
    np.save(path / "splits.npy", np.zeros(19, dtype=np.int8))
    _one_line_error(path, "one split code")
    path = make_store(20, name="w")
    lines = (path / "rows.jsonl").read_text().splitlines()
    (path / "rows.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    store = FeatureStore.open(path)  # metadata is read lazily
    with pytest.raises(SparcError, match="has 19 rows but the manifest says 20"):
        store.rows()


def test_accessors(make_store):
    store = FeatureStore.open(make_store(30, dtype="float16"))
    assert store.dtype == "float16" and store.normalized and store.n_rows == 30
    assert repr(store).startswith("FeatureStore(") and "n_rows=30" in repr(store)
    assert len(repr(store)) < 200
    with pytest.raises(SparcError, match="unknown stream 'x'; this store has: dino, clip_img, clip_txt"):
        store.select_streams(["dino", "x"])
    with pytest.raises(SparcError, match="unknown stream 'x'"):
        store.features("x")
    with pytest.raises(SparcError, match="listed twice"):
        store.select_streams(["dino", "dino"])
    assert store.select_streams(["clip_txt", "dino"]) == ["clip_txt", "dino"]
    rows = store.split_rows("train")
    with pytest.raises(ValueError):
        rows[0] = 5  # cached arrays are read-only
    with pytest.raises(ValueError):
        store.features("dino")[0, 0] = 1


def test_describe_store(make_store):
    store = FeatureStore.open(make_store(30))
    text = describe_store(store)
    sizes = {s: len(store.split_rows(s)) for s in ("train", "val", "test")}
    assert "30 in 10 groups" in text
    assert "dino 6-d float32" in text and "clip_txt 4-d float32" in text
    assert f"train {sizes['train']} · val {sizes['val']} · test {sizes['test']}" in text
    assert "20 labelled rows, 2 distinct labels" in text
    assert "normalized  yes" in text
    assert len(text.splitlines()) <= 8
