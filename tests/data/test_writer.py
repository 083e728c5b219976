"""StoreWriter → FeatureStore round trips and every refused input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparc.data import FeatureStore, RowMeta, StoreWriter
from sparc.data.npy import HEADER_BYTES, npy_header
from sparc.errors import SparcError
from tests.data.helpers import DIMS, assert_clean_failure, random_features, simple_meta, write


def test_round_trip_raw_values_and_metadata(tmp_path):
    feats, meta = random_features(23), simple_meta(23)
    store = FeatureStore.open(write(tmp_path / "s", feats, meta, normalize=False))
    assert store.n_rows == 23 and store.streams == DIMS and store.dtype == "float32"
    assert not store.normalized
    for name, x in feats.items():
        got = store.features(name)
        assert isinstance(got, np.memmap)
        np.testing.assert_array_equal(got, x)
        # Plain numpy can read the files without sparc.
        np.testing.assert_array_equal(np.load(tmp_path / "s" / "features" / f"{name}.npy"), x)
    assert store.rows() == meta
    assert store.rows() is store.rows()  # cached
    assert store.labels_vocab() == ["cat", "dog"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"] == "sparc-store" and manifest["version"] == 1
    assert manifest["n_rows"] == 23 and manifest["dropped_nonfinite"] == 0
    assert manifest["splits"] == {"seed": 0, "fractions": {"train": 0.8, "val": 0.1, "test": 0.1}}
    assert manifest["streams"]["dino"] == {"dim": 6, "dtype": "float32", "file": "features/dino.npy"}


def test_normalisation_exact_on_hand_cases(tmp_path):
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0], [1.0, 1.0]])
    with StoreWriter(tmp_path / "s", {"a": 2}) as w:
        w.append({"a": x}, [RowMeta(str(i)) for i in range(4)])
    got = FeatureStore.open(tmp_path / "s").features("a")
    want = np.array([[0.6, 0.8], [0, 0], [0, -1], [2**-0.5, 2**-0.5]], dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_l2_normalize_tiny_and_huge_rows():
    from sparc.data.normalize import l2_normalize

    x = np.array([[1e30, 1e30], [1e-42, 0.0], [0.0, 0.0], [3e-20, -4e-20]], dtype=np.float32)
    got = l2_normalize(x.copy())
    want = np.array([[2**-0.5, 2**-0.5], [1, 0], [0, 0], [0.6, -0.8]], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 5)),
                elements=st.floats(-1e3, 1e3, width=32)),
       dtype=st.sampled_from(["float32", "float16"]))
def test_normalised_rows_unit_or_zero_and_float16_rounding(tmp_path_factory, x, dtype):
    path = tmp_path_factory.mktemp("h") / "s"
    with StoreWriter(path, {"a": x.shape[1]}, dtype=dtype) as w:
        w.append({"a": x}, [RowMeta(str(i)) for i in range(len(x))])
    got = FeatureStore.open(path).features("a")
    assert got.dtype == np.dtype(dtype)
    x64 = x.astype(np.float64)
    norm = np.linalg.norm(x64, axis=1, keepdims=True)
    want = np.where(norm > 0, x64 / np.where(norm > 0, norm, 1), 0).astype(np.float32)
    # float16 is exactly the rounding of the float32 normalised value.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(dtype).astype(np.float32),
                               rtol=0, atol=1e-6 if dtype == "float32" else 1e-3)
    nz = norm[:, 0] > 0
    np.testing.assert_allclose(np.linalg.norm(got[nz].astype(np.float64), axis=1), 1,
                               atol=1e-5 if dtype == "float32" else 2e-3)
    assert not np.any(got[norm[:, 0] == 0])


def test_float16_store_is_rounded_copy(tmp_path):
    feats, meta = random_features(10), simple_meta(10)
    s16 = FeatureStore.open(write(tmp_path / "h", feats, meta, dtype="float16"))
    s32 = FeatureStore.open(write(tmp_path / "f", feats, meta, dtype="float32"))
    assert s16.dtype == "float16"
    for name in DIMS:
        np.testing.assert_array_equal(s16.features(name), np.asarray(s32.features(name)).astype(np.float16))


def test_stream_order_kept_and_sources_recorded(tmp_path):
    dims = {"z": 2, "a": 3, "m": 1}
    with StoreWriter(tmp_path / "s", dims, sources={"a": {"model": "clip"}}) as w:
        w.append({"m": np.ones((2, 1)), "a": np.ones((2, 3)), "z": np.ones((2, 2))},
                 [RowMeta("x"), RowMeta("y")])
    store = FeatureStore.open(tmp_path / "s")
    assert list(store.streams) == ["z", "a", "m"]
    assert store.manifest.streams["a"].source == {"model": "clip"}
    assert store.select_streams(None) == ["z", "a", "m"]


def test_drop_nonfinite_drops_row_in_all_streams(tmp_path):
    feats, meta = random_features(12), simple_meta(12)
    feats["dino"][3, 1] = np.nan
    feats["clip_txt"][7, 0] = np.inf
    store = FeatureStore.open(write(tmp_path / "s", feats, meta, drop_nonfinite=True, normalize=False))
    keep = [i for i in range(12) if i not in (3, 7)]
    assert store.n_rows == 10 and store.manifest.dropped_nonfinite == 2
    assert [m.row_id for m in store.rows()] == [f"r{i}" for i in keep]
    for name, x in feats.items():
        np.testing.assert_array_equal(store.features(name), x[keep])


def test_overwrite_replaces_store_and_empty_dir_is_filled(tmp_path, make_store):
    path = make_store(20)
    write(path, random_features(5, seed=1), simple_meta(5), overwrite=True)
    assert FeatureStore.open(path).n_rows == 5
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", random_features(4), simple_meta(4))
    assert FeatureStore.open(tmp_path / "empty").n_rows == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "store"]


def test_rowmeta_defaults_and_types():
    m = RowMeta("a", labels=["x", "y"])
    assert m.group_id == "a" and m.labels == ("x", "y") and m.image is None
    with pytest.raises(TypeError):
        RowMeta(3)  # type: ignore[arg-type]


def test_npy_header_is_fixed_size_and_readable(tmp_path):
    assert len(npy_header((0, 4), np.float32)) == HEADER_BYTES
    assert len(npy_header((10**15, 10**6), np.float16)) == HEADER_BYTES
    p = tmp_path / "x.npy"
    p.write_bytes(npy_header((2, 3), np.float32) + np.arange(6, dtype=np.float32).tobytes())
    np.testing.assert_array_equal(np.load(p, mmap_mode="r"), np.arange(6).reshape(2, 3))


# -- refused inputs: one-line SparcError, nothing left behind ------------------------------

def _meta(n):
    return [RowMeta(str(i)) for i in range(n)]


BAD_APPENDS = {
    "row counts": ({"a": np.ones((3, 2)), "b": np.ones((4, 3))}, _meta(3), "different row counts"),
    "wrong dim": ({"a": np.ones((3, 5)), "b": np.ones((3, 3))}, _meta(3), "has dim 5"),
    "unknown stream": ({"a": np.ones((3, 2)), "b": np.ones((3, 3)), "c": np.ones((3, 1))}, _meta(3),
                       "unknown stream 'c'; this store has: a, b"),
    "missing stream": ({"a": np.ones((3, 2))}, _meta(3), "missing stream(s) b"),
    "not 2-D": ({"a": np.ones(2), "b": np.ones((1, 3))}, _meta(1), "2-D"),
    "meta count": ({"a": np.ones((3, 2)), "b": np.ones((3, 3))}, _meta(2), "3 rows of features but 2 RowMeta"),
    "nan": ({"a": np.array([[1, np.nan], [1, 1], [np.inf, 0]]), "b": np.ones((3, 3))}, _meta(3),
            "2 of 3 rows in this batch have NaN/Inf features; pass drop_nonfinite=True"),
}


@pytest.mark.parametrize("case", BAD_APPENDS)
def test_bad_append_leaves_nothing(tmp_path, case):
    feats, meta, msg = BAD_APPENDS[case]
    target = tmp_path / "s"
    with pytest.raises(SparcError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        with StoreWriter(target, {"a": 2, "b": 3}) as w:
            w.append({"a": np.ones((2, 2)), "b": np.ones((2, 3))}, _meta(2))  # a good batch first
            w.append(feats, meta)
    assert_clean_failure(e, target)


@pytest.mark.parametrize("drop", [False, True])
def test_zero_rows_is_an_error(tmp_path, drop):
    target = tmp_path / "s"
    with pytest.raises(SparcError, match="no rows were written") as e:
        with StoreWriter(target, {"a": 2}, drop_nonfinite=drop) as w:
            if drop:
                w.append({"a": np.full((2, 2), np.nan)}, _meta(2))
    assert_clean_failure(e, target)
    if drop:
        assert "2 rows were dropped" in str(e.value)


def test_user_exception_inside_block_leaves_nothing(tmp_path):
    target = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(target, {"a": 2}) as w:
            w.append({"a": np.ones((2, 2))}, _meta(2))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_existing_store_refused_without_overwrite(tmp_path, make_store):
    path = make_store(10)
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(SparcError, match="already exists.*overwrite=True") as e:
        write(path, random_features(3), simple_meta(3))
    assert_clean_failure(e, path, before)
    assert FeatureStore.open(path).n_rows == 10  # untouched


@pytest.mark.parametrize("kind", ["file", "dir"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_non_store_never_replaced(tmp_path, kind, overwrite):
    target = tmp_path / "thing"
    if kind == "file":
        target.write_text("precious")
    else:
        target.mkdir()
        (target / "precious.txt").write_text("x")
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(SparcError, match=r"(is not a feature store written by sparc \(no sparc marker|exists and is not a feature store).*; refusing") as e:
        write(target, random_features(3), simple_meta(3), overwrite=overwrite)
    assert_clean_failure(e, target, before)
    assert target.exists()


def test_overwrite_never_deletes_a_users_file_inside_a_store(tmp_path, make_store):
    path = make_store(10)
    (path / "thesis.tex").write_text("precious")
    with pytest.raises(SparcError, match=r"not a feature store written by sparc \('thesis.tex'\); refusing") as e:
        write(path, random_features(3), simple_meta(3), overwrite=True)
    assert "\n" not in str(e.value)
    assert (path / "thesis.tex").read_text() == "precious" and FeatureStore.open(path).n_rows == 10


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"streams": {}}, "at least one stream"),
        ({"streams": {"a": 0}}, "positive integer dim"),
        ({"streams": {"../x": 2}}, "invalid stream name"),
        ({"dtype": "float64"}, "dtype must be one of"),
        ({"split_fractions": (0.5, 0.2, 0.2)}, "must sum to 1"),
        ({"split_fractions": (1.2, -0.1, -0.1)}, ">= 0"),
        ({"sources": {"zz": {}}}, "unknown stream"),
    ],
)
def test_bad_writer_arguments(tmp_path, kwargs, msg):
    kw = {"streams": {"a": 2}, **kwargs}
    with pytest.raises(SparcError, match=msg) as e:
        StoreWriter(tmp_path / "s", **kw)
    assert_clean_failure(e, tmp_path / "s")


def test_float16_overflow_without_normalisation(tmp_path):
    with pytest.raises(SparcError, match="float16 range") as e:
        with StoreWriter(tmp_path / "s", {"a": 2}, dtype="float16", normalize=False) as w:
            w.append({"a": np.array([[1e6, 0.0]])}, _meta(1))
    assert_clean_failure(e, tmp_path / "s")
