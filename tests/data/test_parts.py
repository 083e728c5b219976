"""Stores of several parts: reading them as one, appending, merging, and memory that
does not grow with the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sparc.data import BatchLoader, FeatureStore
from sparc.data.join import append_store, merge_stores
from sparc.data.manifest import MANIFEST
from sparc.data.parted import PartedArray
from sparc.errors import SparcError
from synthetic import make_store


def _whole(paths):
    stores = [FeatureStore.open(p) for p in paths]
    return {s: np.concatenate([np.asarray(x.features(s)) for x in stores]) for s in stores[0].streams}


@pytest.fixture
def three(tmp_path):
    return [make_store(tmp_path / name, n_rows=n, seed=i) for i, (name, n) in enumerate((("a", 100), ("b", 50), ("c", 70)))]


def test_appended_store_reads_as_one(three):
    a, b, c = three
    want = _whole(three)
    rows_want = FeatureStore.open(a).rows() + FeatureStore.open(b).rows() + FeatureStore.open(c).rows()
    splits_want = np.concatenate([FeatureStore.open(p).split_codes() for p in three])
    append_store(a, b)
    store = append_store(a, c)
    assert store.n_parts == 3 and store.n_rows == 220
    manifest = json.loads((a / MANIFEST).read_text())
    assert manifest["version"] == 2 and manifest["parts"] == [
        {"path": ".", "n_rows": 100}, {"path": "parts/00001", "n_rows": 50}, {"path": "parts/00002", "n_rows": 70}]
    assert store.rows() == rows_want
    np.testing.assert_array_equal(store.split_codes(), splits_want)
    for s, x in want.items():
        f = store.features(s)
        assert isinstance(f, PartedArray) and f.shape == x.shape
        np.testing.assert_array_equal(np.asarray(f), x)
        idx = np.array([219, 5, 130, 0, 130, -1])
        np.testing.assert_array_equal(f[idx], x[idx])
        np.testing.assert_array_equal(f[90:160], x[90:160])
        np.testing.assert_array_equal(f[150], x[150])
        np.testing.assert_array_equal(f[idx, 1:3], x[idx, 1:3])
        with pytest.raises(ValueError):
            f[0, 0] = 1
    # A loader over the parts gives the rows one store of the same rows gives.
    loader = BatchLoader(store, "train", batch_size=16, chunk_size=24, return_rows=True)
    for batch in loader:
        for s, x in batch.features.items():
            np.testing.assert_array_equal(x.numpy(), want[s][batch.rows])


def test_append_refuses_stores_that_do_not_fit(three, tmp_path):
    a = three[0]
    other = make_store(tmp_path / "other", n_rows=20, dims={"dino": 12, "clip_img": 8})
    with pytest.raises(SparcError, match="streams"):
        append_store(a, other)
    reseeded = make_store(tmp_path / "reseeded", n_rows=20, split_seed=3)
    with pytest.raises(SparcError, match="seed 3"):
        append_store(a, reseeded)
    with pytest.raises(SparcError, match="overlaps"):
        append_store(a, a)
    assert FeatureStore.open(a).n_parts == 1  # untouched


def test_append_removes_what_a_killed_append_left(three):
    a, b, _ = three
    (a / "parts" / "00001").mkdir(parents=True)  # a part copied, its manifest never written
    (a / "parts" / "00001" / "junk").write_text("x")
    store = append_store(a, b)
    assert store.n_parts == 2 and not (a / "parts" / "00001" / "junk").exists()


def test_merge_keeps_order_metadata_and_splits(three, tmp_path):
    out = merge_stores(tmp_path / "m", three)
    assert out.n_parts == 3 and out.n_rows == 220
    for s, x in _whole(three).items():
        np.testing.assert_array_equal(np.asarray(out.features(s)), x)
    with pytest.raises(SparcError, match="already exists"):
        merge_stores(tmp_path / "m", three)
    merge_stores(tmp_path / "m", three[:1], overwrite=True)
    assert FeatureStore.open(tmp_path / "m").n_rows == 100


_PEAK = """
import sys, numpy as np
from sparc.data import BatchLoader, FeatureStore
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
store = FeatureStore.open(sys.argv[1])
loader = BatchLoader(store, "train", batch_size=512, chunk_size=2048, buffer_chunks=4)
peak, total = anon(), 0.0
for batch in loader:
    total += float(batch["a"][:, 0].sum())
    peak = max(peak, anon())
print(peak, store.n_rows)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_peak_anonymous_memory_stays_flat_while_the_store_grows_tenfold(tmp_path):
    dims = {"a": 256, "b": 256}
    base = make_store(tmp_path / "store", n_rows=20_000, dims=dims, dtype="float16", split_fractions=(1, 0, 0))
    piece = make_store(tmp_path / "piece", n_rows=20_000, dims=dims, dtype="float16", seed=1,
                       split_fractions=(1, 0, 0))

    def peak() -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(base)], capture_output=True, text=True, check=True)
        got, rows = out.stdout.split()
        return int(got), int(rows)

    small, rows_small = peak()
    for _ in range(9):
        append_store(base, piece)  # hard links: the store grows without the disk growing
    large, rows_large = peak()
    grown = (rows_large - rows_small) * 2 * sum(dims.values())
    assert rows_large == 10 * rows_small and grown > 175 * 2**20
    # The loader holds one read buffer (8,192 rows) and ~25 bytes of indices per row of
    # the split: 180,000 more rows add ~4.5 MB of indices while the features grow 184 MB.
    assert large - small < 12 * 2**20, (small, large)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda m: m.update(version=1), "'parts' needs version 2"),
    (lambda m: m.pop("parts"), "missing key 'parts'"),
    (lambda m: m["parts"].append({"path": "../x", "n_rows": 1}), "must be a new relative path"),
    (lambda m: m["parts"][1].update(n_rows=49), "the parts hold 149 rows but n_rows is 150"),
    (lambda m: m["parts"][1].update(path="."), "must be a new relative path"),
    (lambda m: m.update(version=3), "version 3 is not supported"),
])
def test_a_damaged_parts_manifest_is_one_line(three, change, needle):
    a, b, _ = three
    append_store(a, b)
    manifest = json.loads((a / MANIFEST).read_text())
    change(manifest)
    (a / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SparcError, match=needle.replace("(", r"\(")) as e:
        FeatureStore.open(a)
    assert "\n" not in str(e.value)


def test_a_missing_part_file_is_named(three):
    a, b, _ = three
    append_store(a, b)
    (a / "parts" / "00001" / "features" / "dino.npy").unlink()
    with pytest.raises(SparcError, match="parts/00001' is missing features/dino.npy"):
        FeatureStore.open(a)
