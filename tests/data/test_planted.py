"""sparc synth: planted stores carry the truth that made them, exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sparc.data import FeatureStore
from sparc.data.join import append_store
from sparc.data.planted import PlantedSettings, make_planted, sample_truth
from sparc.data.truth import TRUTH, PlantedTruth, load_truth
from sparc.errors import SparcError

SMALL = PlantedSettings(streams={"a": 12, "b": 9, "c": 7}, shared=6, exclusive=2, parents=2, children=2,
                        rows=400, seed=3)


def test_defaults_are_the_specification_setting():
    s = PlantedSettings()
    assert dict(s.streams) == {"s1": 96, "s2": 64, "s3": 48}
    assert (s.shared, s.exclusive, s.parents, s.active, s.low, s.high, s.noise, s.rows) == \
        (48, 12, 0, 3, 0.5, 1.5, 0.02, 8000)
    assert s.n_concepts == 48 + 3 * 12 and s.nonlinear is None


def test_truth_layout_and_codes(tmp_path):
    store = make_planted(tmp_path / "p", SMALL)
    truth = load_truth(store.path, store.n_rows)
    assert truth is not None and truth.n_rows == 400 and truth.streams == ("a", "b", "c")
    kinds = truth.kind.tolist()
    assert kinds == ["shared"] * 6 + ["exclusive"] * 6 + ["parent"] * 2 + ["child"] * 4
    assert truth.home[6:12].tolist() == [0, 0, 1, 1, 2, 2] and (truth.home[:6] == -1).all()
    assert truth.parent[14:].tolist() == [12, 12, 13, 13] and (truth.parent[:14] == -1).all()
    for s, name in enumerate(truth.streams):
        present = truth.present(name)
        # Exclusive concepts only at home; the others everywhere; present rows are unit vectors.
        assert present.tolist() == [k != "exclusive" or truth.home[c] == s for c, k in enumerate(kinds)]
        norms = np.linalg.norm(truth.directions[name], axis=1)
        np.testing.assert_allclose(norms[present], 1, atol=1e-6)
        assert (norms[~present] == 0).all()
    active = truth.active(np.arange(400))
    roots = active[:, :14]
    assert (roots.sum(axis=1) == 3).all()  # exactly `active` roots per row
    for child, parent in ((14, 12), (15, 12), (16, 13), (17, 13)):
        assert not (active[:, child] & ~active[:, parent]).any()  # a child only with its parent
    assert active[:, 14:].any()  # and children do occur
    assert (active[:, 14:16].sum(axis=1) <= 1).all()  # one child per active parent at most
    codes = truth.codes(np.arange(400))
    assert codes[active].min() >= 0.5 and codes[active].max() <= 1.5
    # The rows' labels name their active concepts; the label hierarchy puts children under parents.
    assert len(store.rows()[0].labels) == active[0].sum()
    assert store.label_hierarchy()["parent-0.child-1"] == "parent-0"


def test_features_are_the_truth_mapped(tmp_path):
    """Without noise, each stream's row is exactly the L2-normalised sum of the active
    concepts' directions there, weighted by their values (zero where every active concept
    is exclusive to other streams)."""
    settings = dataclasses.replace(SMALL, noise=0.0)
    store = make_planted(tmp_path / "p", settings)
    truth = load_truth(store.path)
    codes = truth.codes(np.arange(truth.n_rows)).astype(np.float64)
    for name in truth.streams:
        y = codes @ truth.directions[name].astype(np.float64)
        norm = np.linalg.norm(y, axis=1, keepdims=True)
        y /= np.where(norm > 0, norm, 1)
        np.testing.assert_allclose(np.asarray(store.features(name)), y, atol=2e-6)


def test_seeded_and_noise_in_every_coordinate(tmp_path):
    a = make_planted(tmp_path / "a", SMALL)
    b = make_planted(tmp_path / "b", SMALL)
    c = make_planted(tmp_path / "c", dataclasses.replace(SMALL, seed=4))
    for s in a.streams:
        assert np.array_equal(np.asarray(a.features(s)), np.asarray(b.features(s)))
        assert not np.array_equal(np.asarray(a.features(s)), np.asarray(c.features(s)))
    # More rows leave the directions as they were (independent child seeds).
    more = sample_truth(dataclasses.replace(SMALL, rows=600))
    assert all(np.array_equal(more.directions[s], load_truth(a.path).directions[s]) for s in a.streams)


def test_nonlinear_stream_bends_only_that_stream(tmp_path):
    lin = make_planted(tmp_path / "lin", dataclasses.replace(SMALL, noise=0.0))
    bent = make_planted(tmp_path / "bent", dataclasses.replace(SMALL, noise=0.0, nonlinear="b",
                                                               nonlinear_strength=0.8))
    assert load_truth(bent.path).nonlinear == 1
    for s in ("a", "c"):
        assert np.array_equal(np.asarray(lin.features(s)), np.asarray(bent.features(s)))
    x, y = np.asarray(lin.features("b")), np.asarray(bent.features("b"))
    cos = (x * y).sum(axis=1)[np.linalg.norm(x, axis=1) > 0]
    assert cos.min() > 0.8 and cos.mean() < 0.9999  # mild, yet not linear


def test_a_planted_store_is_a_store(tmp_path):
    store = make_planted(tmp_path / "p", SMALL)
    assert sorted(len(store.split_rows(s)) for s in ("train", "val", "test")) != [0, 0, 400]
    assert store.dataset_info()["name"] == "planted"
    assert store.dataset_info()["options"]["shared"] == 6
    # It can be replaced with overwrite (truth.npz is one of a store's own entries) ...
    make_planted(tmp_path / "p", SMALL, overwrite=True)
    # ... but it cannot grow: its truth covers the rows it was made with.
    other = make_planted(tmp_path / "q", SMALL)
    with pytest.raises(SparcError, match="cannot grow"):
        append_store(store.path, other.path)


@pytest.mark.parametrize("change, message", [
    ({"active": 15}, "active \\(15\\) exceeds the 14 concepts"),
    ({"streams": {"a": 0, "b": 3}}, "width of at least 1"),
    ({"streams": {"a": 3}}, "at least two streams"),
    ({"rows": 0}, "rows must be at least 1"),
    ({"shared": -1}, "shared must be at least 0"),
    ({"low": 2.0}, "0 < low <= high"),
    ({"noise": -0.1}, "noise must be"),
    ({"nonlinear": "z"}, "nonlinear names no stream"),
    ({"child_rate": 1.5}, "child_rate"),
    ({"children": 0}, "children must be at least 1"),
])
def test_bad_settings_are_one_line_errors(change, message):
    with pytest.raises(SparcError, match=message):
        dataclasses.replace(SMALL, **change)


def test_a_broken_truth_file_is_refused(tmp_path):
    store = make_planted(tmp_path / "p", SMALL)
    (store.path / TRUTH).write_bytes(b"not a zip")
    with pytest.raises(SparcError, match="cannot read"):
        load_truth(store.path)
    truth = sample_truth(SMALL)
    with pytest.raises(SparcError, match="not valid"):
        dataclasses.replace(truth, parent=truth.parent[:3])
    truth.save(store.path / TRUTH)
    assert isinstance(load_truth(store.path), PlantedTruth)
    smaller = sample_truth(dataclasses.replace(SMALL, rows=10))
    smaller.save(store.path / TRUTH)
    with pytest.raises(SparcError, match="cannot grow"):
        load_truth(store.path, FeatureStore.open(store.path).n_rows)
