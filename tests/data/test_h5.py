"""import_h5: the original code's HDF5 files, metadata joins and refused inputs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sparc.data import FeatureStore, RowMeta, import_h5
from sparc.errors import SparcError
from tests.data.helpers import assert_clean_failure

h5py = pytest.importorskip("h5py")

DIMS = {"dino": 5, "clip_img": 3, "clip_txt": 3}


def make_h5(tmp_path, n=40, dims=DIMS, indices=None, seed=0, dataset="features"):
    rng = np.random.default_rng(seed)
    feats, paths = {}, {}
    for name, d in dims.items():
        feats[name] = rng.normal(size=(n, d)).astype(np.float32)
        paths[name] = tmp_path / f"{name}.h5"
        with h5py.File(paths[name], "w") as f:
            f.create_dataset(dataset, data=feats[name])
            if indices is not None:
                f.create_dataset("indices", data=np.asarray(indices, dtype=np.int32))
    return paths, feats


def test_round_trip_in_chunks(tmp_path):
    paths, feats = make_h5(tmp_path, n=40)
    store = import_h5(paths, tmp_path / "s", normalize=False, chunk_rows=7, progress=False)
    assert isinstance(store, FeatureStore) and store.n_rows == 40
    assert list(store.streams) == list(DIMS)
    for name, x in feats.items():
        np.testing.assert_array_equal(store.features(name), x)
        assert store.manifest.streams[name].source["format"] == "hdf5"
    assert [m.row_id for m in store.rows()] == [str(i) for i in range(40)]


def test_normalised_float16_import(tmp_path):
    paths, feats = make_h5(tmp_path, n=10)
    store = import_h5(paths, tmp_path / "s", dtype="float16", progress=False)
    x = feats["dino"] / np.linalg.norm(feats["dino"], axis=1, keepdims=True)
    np.testing.assert_array_equal(store.features("dino"), x.astype(np.float16))


def test_indices_become_row_ids_and_metadata_joins(tmp_path):
    indices = [100 + 3 * i for i in range(12)]
    paths, _ = make_h5(tmp_path, n=12, indices=indices)
    meta_csv = tmp_path / "meta.csv"
    meta_csv.write_text(
        "row_id,group_id,image,caption,labels\n"
        "103,imgA,a.jpg,a cat,cat|animal\n"
        '106,imgA,a.jpg,"a cat, sitting","[""cat"", ""sofa""]"\n'
        "109,,,,\n"
    )
    store = import_h5(paths, tmp_path / "s", metadata=meta_csv, progress=False)
    rows = store.rows()
    assert [m.row_id for m in rows] == [str(i) for i in indices]
    assert rows[1] == RowMeta("103", "imgA", "a.jpg", "a cat", ("cat", "animal"))
    assert rows[2] == RowMeta("106", "imgA", "a.jpg", "a cat, sitting", ("cat", "sofa"))
    assert rows[3] == RowMeta("109") and rows[0] == RowMeta("100")
    assert store.labels_vocab() == ["animal", "cat", "sofa"]
    codes = store.split_codes()
    assert codes[1] == codes[2]  # same group, same split


def test_jsonl_metadata(tmp_path):
    paths, _ = make_h5(tmp_path, n=5)
    meta = tmp_path / "meta.jsonl"
    meta.write_text(
        json.dumps({"row_id": 0, "caption": "x", "labels": ["a"]}) + "\n\n"
        + json.dumps({"row_id": "4", "group_id": "g", "labels": "b|c"}) + "\n"
    )
    rows = import_h5(paths, tmp_path / "s", metadata=meta, progress=False).rows()
    assert rows[0] == RowMeta("0", caption="x", labels=("a",))
    assert rows[4] == RowMeta("4", group_id="g", labels=("b", "c"))


def test_drop_nonfinite(tmp_path):
    paths, feats = make_h5(tmp_path, n=20)
    with h5py.File(paths["clip_img"], "a") as f:
        f["features"][4, 0] = np.nan
        f["features"][15, 2] = -np.inf
    store = import_h5(paths, tmp_path / "s", drop_nonfinite=True, normalize=False, chunk_rows=6, progress=False)
    keep = [i for i in range(20) if i not in (4, 15)]
    assert store.manifest.dropped_nonfinite == 2
    assert [m.row_id for m in store.rows()] == [str(i) for i in keep]
    np.testing.assert_array_equal(store.features("dino"), feats["dino"][keep])


# -- refused inputs -----------------------------------------------------------------------

def _fails(tmp_path, paths, match, **kw):
    target = tmp_path / "out"
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(SparcError, match=match) as e:
        import_h5(paths, target, progress=False, **kw)
    assert_clean_failure(e, target, before)
    return str(e.value)


def test_nonfinite_counted_over_all_chunks(tmp_path):
    paths, _ = make_h5(tmp_path, n=30)
    with h5py.File(paths["dino"], "a") as f:
        for i in (2, 11, 29):
            f["features"][i, 1] = np.nan
    msg = _fails(tmp_path, paths, "3 of 30 rows have NaN/Inf", chunk_rows=5)
    assert "first: row 2" in msg and "--drop-nonfinite" in msg


def test_missing_file(tmp_path):
    paths, _ = make_h5(tmp_path)
    paths["clip_txt"] = tmp_path / "nope.h5"
    _fails(tmp_path, paths, "HDF5 file for stream 'clip_txt' not found")


def test_not_hdf5(tmp_path):
    paths, _ = make_h5(tmp_path)
    (tmp_path / "bad.h5").write_text("hello")
    paths["dino"] = tmp_path / "bad.h5"
    _fails(tmp_path, paths, "cannot read .* as HDF5")


def test_missing_dataset_lists_present(tmp_path):
    paths, _ = make_h5(tmp_path, dataset="feats")
    with h5py.File(paths["dino"], "a") as f:
        f.create_dataset("grp/other", data=np.zeros(3))
    _fails(tmp_path, paths, "has no dataset 'features'; datasets present: feats, grp/other; pass dataset=")
    assert import_h5(paths, tmp_path / "ok", dataset="feats", progress=False).n_rows == 40


def test_different_row_counts(tmp_path):
    paths, _ = make_h5(tmp_path, n=10)
    (tmp_path / "other").mkdir()
    other, _ = make_h5(tmp_path / "other", n=9, dims={"clip_img": 3})
    paths["clip_img"] = other["clip_img"]
    _fails(tmp_path, paths, r"different row counts: dino=10 \(.*\), clip_img=9 \(.*\), clip_txt=10")


def test_non_2d_dataset(tmp_path):
    paths, _ = make_h5(tmp_path, dims={"a": 2})
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((40, 2, 2), dtype=np.float32))
    paths["b"] = tmp_path / "b.h5"
    _fails(tmp_path, paths, r"has shape \(40, 2, 2\); expected a 2-D")


def test_disagreeing_or_duplicate_indices(tmp_path):
    paths, _ = make_h5(tmp_path, n=4, indices=[0, 1, 2, 3])
    with h5py.File(paths["clip_txt"], "a") as f:
        f["indices"][0] = 7
    _fails(tmp_path, paths, "'indices' of streams 'dino' and 'clip_txt' differ")
    d = tmp_path / "dup"
    d.mkdir()
    paths, _ = make_h5(d, n=4, indices=[0, 1, 1, 3])
    _fails(d, paths, "duplicate values")


def test_bad_metadata(tmp_path):
    paths, _ = make_h5(tmp_path, n=5)
    meta = tmp_path / "m.csv"
    meta.write_text("row_id,caption\n1,a\n99,b\n")
    _fails(tmp_path, paths, "1 metadata row_id.* match no HDF5 row \\(e.g. '99'\\)", metadata=meta)
    meta.write_text("id,caption\n1,a\n")
    _fails(tmp_path, paths, "must name a 'row_id' column", metadata=meta)
    meta.write_text("row_id\n1\n1\n")
    _fails(tmp_path, paths, "line 3: duplicate row_id '1'", metadata=meta)
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"row_id": "1"}\n{oops\n')
    _fails(tmp_path, paths, "m.jsonl' line 2", metadata=bad)
    _fails(tmp_path, paths, "metadata file not found", metadata=tmp_path / "none.csv")


def test_existing_output_refused(tmp_path):
    paths, _ = make_h5(tmp_path, n=5)
    import_h5(paths, tmp_path / "out", progress=False)
    _fails(tmp_path, paths, "already exists.*--overwrite")
    assert import_h5(paths, tmp_path / "out", overwrite=True, progress=False).n_rows == 5


def test_without_h5py(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(SparcError, match=r"reading HDF5 needs h5py: pip install 'sparc-sae\[h5\]'"):
        import_h5({"a": tmp_path / "a.h5"}, tmp_path / "out")


def test_leftovers_of_a_killed_import_are_removed_and_a_second_writer_refused(tmp_path):
    from sparc.workspace import exclusive_lock

    paths, _ = make_h5(tmp_path)
    out = tmp_path / "out"
    stale = tmp_path / ".out.k1ll3d.tmp"  # what a killed import leaves beside the store
    (stale / "features").mkdir(parents=True)
    (stale / "features" / "a.npy").write_bytes(b"\0" * 1000)
    with exclusive_lock(out, "another import"):
        with pytest.raises(SparcError, match=r"being written by process \d+ \(another import\)"):
            import_h5(paths, out, progress=False)
    assert stale.exists()  # not while its writer may still be alive
    import_h5(paths, out, progress=False)
    assert not stale.exists() and FeatureStore.open(out).n_rows == 40
    assert not list(tmp_path.glob(".out.*"))
