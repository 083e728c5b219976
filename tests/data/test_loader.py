"""BatchLoader: coverage, determinism, chunk mixing and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparc.data import Batch, BatchLoader, FeatureStore, RowMeta, StoreWriter
from sparc.errors import SparcError
from tests.data.helpers import random_features, simple_meta, write

N = 1000


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    path = tmp_path_factory.mktemp("loader") / "s"
    return FeatureStore.open(write(path, random_features(N), simple_meta(N, rows_per_group=2), batch=256))


@pytest.fixture(scope="module")
def store16(tmp_path_factory) -> FeatureStore:
    path = tmp_path_factory.mktemp("loader16") / "s"
    return FeatureStore.open(write(path, random_features(300), simple_meta(300), batch=256, dtype="float16"))


def rows_of(loader: BatchLoader) -> list[np.ndarray]:
    return [b.rows.copy() for b in loader.iter_batches()]


loader_args = st.fixed_dictionaries({
    "split": st.sampled_from(["train", "val", "test", "all"]),
    "batch_size": st.integers(1, 150),
    "chunk_size": st.integers(1, 400),
    "buffer_chunks": st.integers(1, 5),
    "drop_last": st.booleans(),
    "shuffle": st.booleans(),
    "seed": st.integers(0, 1000),
})


@settings(max_examples=40, deadline=None)
@given(kw=loader_args)
def test_each_split_row_once_per_epoch(store, kw):
    if kw["drop_last"] and len(store.split_rows(kw["split"])) < kw["batch_size"]:
        kw["drop_last"] = False
    loader = BatchLoader(store, **kw)
    want = store.split_rows(kw["split"])
    b = kw["batch_size"]
    for _ in range(2):
        batches = list(loader.iter_batches())
        assert len(batches) == len(loader)
        assert all(len(x.rows) == b for x in batches[:-1])
        seen = np.concatenate([x.rows for x in batches])
        if kw["drop_last"]:
            assert len(batches[-1].rows) == b and len(seen) == (len(want) // b) * b
            assert len(np.unique(seen)) == len(seen) and np.isin(seen, want).all()
        else:
            np.testing.assert_array_equal(np.sort(seen), want)
        if not kw["shuffle"]:
            assert np.all(np.diff(seen) > 0)
    assert loader.epoch == 2


def test_batches_hold_the_rows_features(store):
    loader = BatchLoader(store, "all", batch_size=64, chunk_size=50, buffer_chunks=3, return_rows=True)
    for batch in loader:
        assert isinstance(batch, Batch)
        assert list(batch.features) == ["dino", "clip_img", "clip_txt"]
        for name, x in batch.features.items():
            assert x.dtype == torch.float32 and x.shape == (len(batch.rows), store.streams[name])
            np.testing.assert_array_equal(x.numpy(), store.features(name)[batch.rows])


def test_default_iteration_yields_dicts_of_selected_streams(store):
    loader = BatchLoader(store, "train", batch_size=100, streams=["clip_txt", "dino"])
    batch = next(iter(loader))
    assert isinstance(batch, dict) and list(batch) == ["clip_txt", "dino"]
    assert batch["dino"].shape == (100, 6)


def test_float16_store_gives_float32_tensors(store16):
    loader = BatchLoader(store16, "all", batch_size=32, return_rows=True)
    for batch in loader:
        x = batch.features["dino"]
        assert x.dtype == torch.float32
        np.testing.assert_array_equal(x.numpy(), store16.features("dino")[batch.rows].astype(np.float32))


def test_deterministic_given_seed_and_epoch(store):
    kw = dict(split="train", batch_size=37, chunk_size=60, buffer_chunks=2)
    a, b, c = BatchLoader(store, seed=1, **kw), BatchLoader(store, seed=1, **kw), BatchLoader(store, seed=2, **kw)
    ea, eb, ec = rows_of(a), rows_of(b), rows_of(c)
    assert all(np.array_equal(x, y) for x, y in zip(ea, eb))
    assert not np.array_equal(np.concatenate(ea), np.concatenate(ec))
    a2 = rows_of(a)  # the next epoch is shuffled differently
    assert not np.array_equal(np.concatenate(ea), np.concatenate(a2))
    b.set_epoch(1)
    b.set_epoch(1)
    assert all(np.array_equal(x, y) for x, y in zip(a2, rows_of(b)))


def test_chunk_shuffle_mixes_chunks(store):
    rows = store.split_rows("all")
    loader = BatchLoader(store, "all", batch_size=100, chunk_size=50, buffer_chunks=4, seed=0)
    first_epoch = rows_of(loader)
    chunk_of = {int(r): i // 50 for i, r in enumerate(rows)}
    for batch in first_epoch[:-1]:
        chunks = {chunk_of[int(r)] for r in batch}
        assert len(chunks) >= 3  # rows from several chunks in every batch
    # The first buffer's chunks are spread over the store, not the first 4 chunks.
    first_buffer = {chunk_of[int(r)] for r in np.concatenate(first_epoch[:2])}
    assert first_buffer != {0, 1, 2, 3}
    # Chunk order changes between epochs.
    second = rows_of(loader)
    assert {chunk_of[int(r)] for r in second[0]} != {chunk_of[int(r)] for r in first_epoch[0]}


@settings(max_examples=25, deadline=None)
@given(kw=loader_args, stop=st.integers(0, 40), drop_len=st.booleans())
def test_resume_is_exact(store, kw, stop, drop_len):
    if kw["drop_last"] and len(store.split_rows(kw["split"])) < kw["batch_size"]:
        kw["drop_last"] = False
    epochs = 3
    reference = BatchLoader(store, **kw)
    n = len(reference)
    want = [b for _ in range(epochs) for b in reference.iter_batches()]
    stop = min(stop, len(want))
    if drop_len:
        stop = min(n, len(want))  # stop right at an epoch boundary
    # Interrupted run: take `stop` batches (crossing epochs as the trainer would) ...
    first = BatchLoader(store, **kw)
    got = []
    while len(got) < stop:
        for b in first.iter_batches():
            got.append(b)
            if len(got) == stop:
                break
    state = first.state_dict()
    assert state == {"epoch": stop // n, "batch": stop % n, "seed": kw["seed"]}
    # ... then a fresh loader resumes from the saved state.
    second = BatchLoader(store, **{**kw, "seed": 999})
    second.load_state_dict(state)
    second.set_epoch(state["epoch"])  # a trainer calling set_epoch must not undo the resume
    while len(got) < len(want):
        got.extend(second.iter_batches())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.rows, w.rows)
        for name in w.features:
            assert torch.equal(g.features[name], w.features[name])


def test_state_rolls_over_after_last_batch(store):
    loader = BatchLoader(store, "val", batch_size=10)
    n = len(loader)
    for i, _ in enumerate(loader):
        assert loader.state_dict()["batch"] == (i + 1) % n
    assert loader.state_dict() == {"epoch": 1, "batch": 0, "seed": 42}
    loader.load_state_dict({"epoch": 4, "batch": n, "seed": 3})
    assert loader.state_dict() == {"epoch": 5, "batch": 0, "seed": 3}


def test_len(store):
    n = len(store.split_rows("train"))
    assert len(BatchLoader(store, batch_size=7)) == -(-n // 7)
    assert len(BatchLoader(store, batch_size=7, drop_last=True)) == n // 7


def test_errors(store, tmp_path):
    with pytest.raises(SparcError, match="unknown stream 'x'"):
        BatchLoader(store, streams=["x"])
    with pytest.raises(SparcError, match="unknown split"):
        BatchLoader(store, split="dev")
    with pytest.raises(SparcError, match="batch_size must be a positive integer"):
        BatchLoader(store, batch_size=0)
    with pytest.raises(SparcError, match="fewer than one batch of 100000 with drop_last"):
        BatchLoader(store, batch_size=100_000, drop_last=True)
    loader = BatchLoader(store)
    for bad in ({"epoch": 0}, {"epoch": 0, "batch": len(loader) + 1, "seed": 0}, {"epoch": "x", "batch": 0, "seed": 0}):
        with pytest.raises(SparcError, match="loader state"):
            loader.load_state_dict(bad)
    with StoreWriter(tmp_path / "s", {"a": 2}, split_fractions=(1, 0, 0)) as w:
        w.append({"a": np.ones((3, 2))}, [RowMeta(str(i)) for i in range(3)])
    with pytest.raises(SparcError, match="split 'val' of store .* has no rows"):
        BatchLoader(FeatureStore.open(tmp_path / "s"), "val")


def test_gather_paths_agree():
    from sparc.data.gather import read_rows

    x = np.arange(5000 * 3, dtype=np.float32).reshape(5000, 3)
    rng = np.random.default_rng(0)
    cases = [
        np.arange(100, 900),  # one run
        np.sort(rng.choice(5000, 300, replace=False)),  # scattered
        np.concatenate([np.arange(0, 700), np.arange(1000, 1900), np.arange(4000, 4999)]),  # long runs
        np.array([], dtype=np.int64),
    ]
    for rows in cases:
        np.testing.assert_array_equal(read_rows(x, rows), x[rows])
