"""``extract(..., shard=(i, n))`` and ``merge_stores``: n shards joined equal one extraction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparc.data.join import merge_stores
from sparc.data.manifest import MANIFEST
from sparc.errors import SparcError
from sparc.extract import extract
from tests.extract.test_extractor import Colours, streams


def _manifest(store):
    m = json.loads((store.path / MANIFEST).read_text())
    for key in ("created", "parts", "version"):
        m.pop(key, None)
    return m


@pytest.mark.parametrize("n", [2, 3])
def test_shards_merged_equal_a_single_extraction(tmp_path, n):
    # Broken images and an empty caption fall in different shards: the skipped rows,
    # the row order, the metadata and the splits must all come out as in one go.
    ds = Colours(tmp_path, n=23, broken=(2, 15), no_caption=(9,))
    whole = extract(ds, streams(), tmp_path / "whole", batch_size=4, shard_size=5, progress=False)
    shards = [extract(ds, streams(), tmp_path / f"shard{i}", batch_size=4, shard_size=5, progress=False,
                      shard=(i, n)) for i in range(n)]
    assert [s.manifest.extra["shard"]["index"] for s in shards] == list(range(n))
    assert sum(s.manifest.extra["shard"]["n_samples"] for s in shards) == 23
    merged = merge_stores(tmp_path / "merged", [s.path for s in reversed(shards)])  # any order given
    assert merged.n_parts == n and merged.n_rows == whole.n_rows == 20
    assert merged.rows() == whole.rows()
    np.testing.assert_array_equal(merged.split_codes(), whole.split_codes())
    for s in whole.streams:
        np.testing.assert_array_equal(np.asarray(merged.features(s)), np.asarray(whole.features(s)))
    assert _manifest(merged) == _manifest(whole)


def test_merge_needs_every_shard_once(tmp_path):
    ds = Colours(tmp_path, n=12)
    paths = [extract(ds, streams(), tmp_path / f"s{i}", progress=False, shard=(i, 3)).path for i in range(3)]
    with pytest.raises(SparcError, match="missing 1/3"):
        merge_stores(tmp_path / "m", [paths[0], paths[2]])
    with pytest.raises(SparcError, match="given twice: 0/3"):
        merge_stores(tmp_path / "m", [paths[0], paths[0], paths[1], paths[2]])
    with pytest.raises(SparcError, match="shard must be"):
        extract(ds, streams(), tmp_path / "bad", progress=False, shard=(3, 3))
