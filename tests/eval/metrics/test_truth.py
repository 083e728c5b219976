"""Scores against planted truth on stores where the answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparc.data.planted import PlantedSettings, make_planted, write_planted
from sparc.data.truth import PlantedTruth, load_truth
from sparc.eval.metrics.truth import score_store
from sparc.model import SPARC, SPARCConfig


def hand_truth(kinds: list[str], home: list[int], parent: list[int], dims: dict[str, int],
               rows: list[dict[int, float]], seed: int = 0) -> PlantedTruth:
    """A truth with orthonormal directions in each stream (so codes are read exactly) and
    the given rows (concept → value), without noise."""
    rng = np.random.default_rng(seed)
    directions = {}
    for s, (name, d) in enumerate(dims.items()):
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        u = q[:, :len(kinds)].T.astype(np.float32)
        u[[h >= 0 and h != s for h in home]] = 0
        directions[name] = u
    indptr = np.cumsum([0] + [len(r) for r in rows])
    concept = np.array([c for r in rows for c in sorted(r)], dtype=np.int64)
    value = np.array([r[c] for r in rows for c in sorted(r)], dtype=np.float32)
    return PlantedTruth(streams=tuple(dims), kind=np.array(kinds), home=np.array(home), parent=np.array(parent),
                        directions=directions, code_indptr=indptr, code_concept=concept, code_value=value)


def dictionary_model(truth: PlantedTruth, n_latents: int, k: int, *, enc=None, dec=None, topk="local") -> SPARC:
    """A model whose decoder rows (and encoder rows) are the given per-stream tables [L, d]
    (default: the true directions, one latent per concept); other latents never fire."""
    streams = {s: truth.directions[s].shape[1] for s in truth.streams}
    model = SPARC(streams, SPARCConfig(n_latents=n_latents, k=k, topk=topk))
    C = truth.n_concepts
    with torch.no_grad():
        W_dec, W_enc = torch.zeros_like(model.W_dec), torch.zeros_like(model.W_enc)
        for i, s in enumerate(truth.streams):
            col = model.cols[i]
            W_dec[:C, col] = torch.from_numpy(truth.directions[s] if dec is None else dec[s])
            W_enc[:C, col] = torch.from_numpy(truth.directions[s] if enc is None else enc[s])
        # Other latents: no decoder row (so no concept is near them) and never firing.
        model.W_dec.copy_(W_dec)
        model.W_enc.copy_(W_enc)
        model.b_lat[:, C:] = -1.0
        model.b_lat[:, :C] = -1e-4  # a concept absent from a row reads a round-off, not a firing
    return model


def rows_of(rng, n, options):
    return [options[i] for i in rng.integers(0, len(options), n)]


@pytest.fixture(scope="module")
def shared_and_exclusive(tmp_path_factory):
    """3 shared concepts, one exclusive to each of 2 streams; 1 to 2 concepts per row."""
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(300):
        cs = rng.choice(5, size=rng.integers(1, 3), replace=False)
        rows.append({int(c): float(rng.uniform(0.5, 1.5)) for c in cs})
    truth = hand_truth(["shared"] * 3 + ["exclusive"] * 2, [-1, -1, -1, 0, 1], [-1] * 5, {"a": 8, "b": 6}, rows)
    store = write_planted(tmp_path_factory.mktemp("truth") / "store", truth)
    return truth, store


def test_the_true_dictionary_scores_one(shared_and_exclusive):
    truth, store = shared_and_exclusive
    r = score_store(dictionary_model(truth, 6, 2), store, "all")
    assert (r.n_concepts, r.n_shared, r.n_exclusive) == (5, 3, 2)
    for value in (r.recovered, r.matched_recovered, r.median_best_cos, r.shared_aligned, r.shared_aligned_matched,
                  r.shared_aligned_firing, r.firing_alignment, r.exclusive_recovered):
        assert value == pytest.approx(1.0, abs=1e-6)
    assert [(s.stream, s.n_concepts, s.n_exclusive) for s in r.streams] == [("a", 4, 1), ("b", 4, 1)]
    assert (r.n_matched_shared, r.n_matched_exclusive) == (3, 2)
    # The exclusive latents fire, and have decoder rows, in their own stream only.
    for c in r.classification:
        assert (c.n_predicted, c.n_true, c.n_correct, c.precision, c.recall) == (2, 2, 2, 1.0, 1.0), c.rule
    assert r.absorption == [] and "linear_sum_assignment" in r.matching


def test_a_random_dictionary_scores_near_chance(tmp_path):
    """Random decoder rows at the §8 widths: no direction at cos 0.9, nothing aligned; the
    median best cosine is what the largest of L random cosines in d dims gives."""
    settings = PlantedSettings(rows=600, seed=2)
    store = make_planted(tmp_path / "p", settings)
    model = SPARC(store.streams, SPARCConfig(n_latents=256, k=6))
    r = score_store(model, store, "test")
    assert r.recovered == 0 and r.matched_recovered == 0 and r.exclusive_recovered == 0
    assert r.shared_aligned == 0 and r.shared_aligned_matched == 0
    assert r.median_best_cos < 0.5
    assert r.shared_aligned_firing == 0 and r.firing_alignment < 0.2
    assert r.n_matched_shared == r.n_matched_exclusive == 0
    assert all(math.isnan(c.precision) and math.isnan(c.recall) for c in r.classification)


def test_a_latent_that_fires_in_both_streams_is_not_called_exclusive(shared_and_exclusive):
    """The exclusive concept of stream a has its latent (decoder and encoder right in a), but
    in stream b that latent's encoder reads shared concept 0: it fires there too, so the
    firing rule no longer calls it exclusive (recall halves) while its decoder rows still
    point where they should."""
    truth, store = shared_and_exclusive
    enc = {s: truth.directions[s].copy() for s in truth.streams}
    enc["b"][3] = truth.directions["b"][0]
    r = score_store(dictionary_model(truth, 6, 3, enc=enc), store, "all")
    firing = r.classification_by("firing")
    assert (firing.n_predicted, firing.n_true, firing.n_correct) == (1, 2, 1)
    assert firing.precision == 1.0 and firing.recall == 0.5
    assert r.classification_by("decoder").recall == 1.0
    assert r.recovered == 1.0 and r.exclusive_recovered == 1.0


def test_decoder_alignment_without_firing_alignment(shared_and_exclusive):
    """Shared concept 0's latent has the right decoder rows but its encoder in stream b
    reads nothing: aligned by the decoder, not by the firing."""
    truth, store = shared_and_exclusive
    enc = {s: truth.directions[s].copy() for s in truth.streams}
    enc["b"][0] = 0
    r = score_store(dictionary_model(truth, 6, 2, enc=enc), store, "all")
    assert r.shared_aligned == 1.0
    assert r.shared_aligned_firing == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def parent_and_child(tmp_path_factory):
    """One parent (0) and its child (1), in 2 streams: rows with the parent alone and rows
    with both."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        row = {0: float(rng.uniform(0.5, 1.5))}
        if i % 2:
            row[1] = float(rng.uniform(0.5, 1.5))
        rows.append(row)
    truth = hand_truth(["parent", "child"], [-1, -1], [-1, 0], {"a": 4, "b": 5}, rows)
    return truth, write_planted(tmp_path_factory.mktemp("absorb") / "store", truth)


def test_absorption_of_a_child_into_its_parent(parent_and_child):
    """k = 1, latent 0 = the parent, latent 1 reads and writes parent + child: on a row with
    the child, latent 1 (logit 0.9·(a + b) > a) wins, the parent's latent falls silent and the
    parent's direction is carried by latent 1 (cos 0.71) — full absorption."""
    truth, store = parent_and_child
    both = {s: (truth.directions[s][0] + truth.directions[s][1]) for s in truth.streams}
    enc = {s: np.stack([truth.directions[s][0], 0.9 * both[s]]) for s in truth.streams}
    dec = {s: np.stack([truth.directions[s][0], both[s] / np.linalg.norm(both[s])]) for s in truth.streams}
    r = score_store(dictionary_model(truth, 3, 1, enc=enc, dec=dec), store, "all")
    assert [(a.stream, a.parent, a.latent, a.rows_alone, a.rows_with_child) for a in r.absorption] == \
        [("a", 0, 0, 100, 100), ("b", 0, 0, 100, 100)]
    for a in r.absorption:
        assert (a.fires_alone, a.fires_with_child, a.drop, a.absorbed) == (1.0, 0.0, 1.0, 1.0)
    assert r.mean_drop() == 1.0 and r.mean_absorbed() == 1.0


def test_no_absorption_when_parent_and_child_have_their_own_latents(parent_and_child):
    truth, store = parent_and_child
    r = score_store(dictionary_model(truth, 3, 2), store, "all")
    for a in r.absorption:
        assert (a.fires_alone, a.fires_with_child, a.drop, a.absorbed) == (1.0, 1.0, 0.0, 0.0)
    assert r.recovered == 1.0 and r.shared_aligned == 1.0  # parent and child are in every stream


def test_generated_hierarchy_is_scored(tmp_path):
    """On a generated store with parents, the true dictionary (k large enough for every
    row's concepts) shows no absorption (random directions are not orthogonal: the
    cross-talk of the other concepts silences a parent now and then)."""
    store = make_planted(tmp_path / "p", PlantedSettings(streams={"a": 64, "b": 48}, shared=4, exclusive=2,
                                                         parents=2, children=2, child_rate=0.5, noise=0.0,
                                                         rows=800, seed=5))
    truth = load_truth(store.path)
    r = score_store(dictionary_model(truth, truth.n_concepts + 2, 5), store, "all")
    assert len(r.absorption) == 4 and r.mean_drop() < 0.03 and r.mean_absorbed() == 0.0
    assert r.recovered == 1.0
