"""The one-pass latent statistics equal the same figures computed densely from the
model's codes of every row, whatever the chunking; they are saved and reused."""

import numpy as np
import pytest
import torch

from sparc.errors import SparcError
from sparc.eval.features import model_inputs
from sparc.eval.labels import label_matrix
from sparc.eval.metrics.concept_jaccard import concept_jaccard
from sparc.explore.stats import (
    ENCODINGS,
    HIST_EDGES,
    LatentStats,
    StatsSettings,
    compute_stats,
    explore_dir,
    stats_for_run,
)

from .conftest import small_model


def _dense_codes(model, store, rows):
    x = {s: model_inputs(store, s, rows) for s in model.names}
    with torch.no_grad():
        joint = {s: c.dense().numpy() for s, c in model.encode(x).items()}
        indep = {s: model.encode({s: x[s]})[s].dense().numpy() for s in model.names}
    return {"joint": joint, "independent": indep}


@pytest.mark.parametrize("chunk_rows", [300, 7])
def test_stats_equal_the_dense_computation(store, model, chunk_rows):
    settings = StatsSettings(split="all", top=5, quantile_bins=3, per_bin=2, chunk_rows=chunk_rows, progress=False)
    stats = compute_stats(model, store, settings)
    rows = store.split_rows("all")
    assert np.array_equal(stats.rows, rows) and stats.streams == list(model.names)
    dense = _dense_codes(model, store, rows)
    labels = label_matrix([store.rows()[r].labels for r in rows])
    for e, enc in enumerate(ENCODINGS):
        fire_sets = []
        counts = []
        for s, name in enumerate(model.names):
            z = dense[enc][name]
            on = z > 0
            fire_sets.append(on)
            assert np.array_equal(stats.fires[e, s], on.sum(0))
            np.testing.assert_allclose(stats.act_sum[e, s], z.sum(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(stats.act_max[e, s], z.max(0), rtol=1e-6)
            for lat in range(model.n_latents):
                fired = np.flatnonzero(on[:, lat])
                want = sorted(fired, key=lambda i: (-z[i, lat], rows[i]))[:5]
                top_rows, top_vals = stats.top(enc, name, lat)
                assert top_rows.tolist() == rows[want].tolist()
                np.testing.assert_allclose(top_vals, z[want, lat], rtol=1e-6)
                # the sample: distinct firing rows, sorted by value, as many as fit
                bins = stats.quantile_samples(enc, name, lat)
                sampled = np.concatenate([r for r, _ in bins])
                vals = np.concatenate([v for _, v in bins])
                assert len(sampled) == min(6, len(fired)) and len(set(sampled)) == len(sampled)
                assert set(sampled) <= set(rows[fired].tolist())
                assert np.all(np.diff(vals) <= 0)
                h = np.histogram(np.clip(z[fired, lat], HIST_EDGES[0], HIST_EDGES[-1] * 0.999), HIST_EDGES)[0]
                assert stats.hist[e, s, lat].tolist() == h.tolist()
            counts.append(np.stack([(on[:, lat:lat + 1] & labels.dense()).sum(0) for lat in range(model.n_latents)]))
        stacked = np.stack(fire_sets)
        assert np.array_equal(stats.n_any[e], stacked.any(0).sum(0))
        assert np.array_equal(stats.n_all[e], stacked.all(0).sum(0))
        j_l = concept_jaccard(np.stack(counts), model.names)[1]
        np.testing.assert_allclose(stats.concept_j[e], j_l)
    # the independent codes of every row
    for s, name in enumerate(model.names):
        np.testing.assert_allclose(stats.code(name, slice(None)).dense().numpy(), dense["independent"][name], rtol=1e-6)


def test_frequency_agreement_and_views(store, model):
    stats = compute_stats(model, store, StatsSettings(split="test", progress=False))
    n = len(store.split_rows("test"))
    assert stats.n_rows == n
    np.testing.assert_allclose(stats.frequency("joint"), stats.fires[0] / n)
    agree = stats.agreement("independent")
    fired = stats.n_any[1] > 0
    assert np.all((agree[fired] >= 0) & (agree[fired] <= 1)) and np.isnan(agree[~fired]).all()
    with pytest.raises(SparcError, match="latent 32 does not exist"):
        stats.check_latent(32)
    with pytest.raises(SparcError, match="encoding must be"):
        stats.frequency("both")


def test_saved_and_reused(tmp_path, store, model):
    run = tmp_path / "run"
    settings = StatsSettings(split="test", progress=False)
    first = stats_for_run(run, model, store, settings)
    assert (explore_dir(run, "test") / "stats.safetensors").exists()
    logs = []
    again = stats_for_run(run, model, store, settings, log=logs.append)
    assert logs == [] and np.array_equal(again.top_rows, first.top_rows)
    assert again.settings == settings and np.array_equal(again.codes_idx, first.codes_idx)
    loaded = LatentStats.load(explore_dir(run, "test"))
    np.testing.assert_array_equal(loaded.concept_j, first.concept_j)
    # another model: recomputed
    other = small_model(store.streams, seed=1)
    third = stats_for_run(run, other, store, settings, log=logs.append)
    assert logs and "recomputing" in logs[0]
    assert third.source["model"] != first.source["model"]


def test_broken_files_are_one_line_errors(tmp_path, store, model):
    run = tmp_path / "run"
    stats_for_run(run, model, store, StatsSettings(split="test", progress=False))
    d = explore_dir(run, "test")
    (d / "stats.safetensors").write_bytes(b"garbage")
    with pytest.raises(SparcError, match="unreadable"):
        LatentStats.load(d)
    with pytest.raises(SparcError, match="no latent statistics"):
        LatentStats.load(tmp_path / "nowhere")


def test_bad_settings():
    with pytest.raises(SparcError, match="top must be at least 1"):
        StatsSettings(top=0)
    with pytest.raises(SparcError):
        StatsSettings(split="nope")


@pytest.mark.parametrize("method", ["batchtopk", "batchtopk-local"])
def test_stats_of_a_batchtopk_model_equal_the_dense_computation(store, method):
    """Rows with different numbers of latents (and, per stream, different widths): the
    code tables widen, padding counts for nothing, chunking changes nothing."""
    from sparc.model import SPARC, SPARCConfig

    torch.manual_seed(0)
    model = SPARC(store.streams, SPARCConfig(n_latents=32, k=4, method=method)).eval()
    with torch.no_grad():
        model.b_lat.normal_(std=0.05)
        model.batch_threshold.fill_(0.05)  # as if trained: each row thresholded on its own
    settings = StatsSettings(split="all", top=5, quantile_bins=3, per_bin=2, chunk_rows=7, progress=False)
    stats = compute_stats(model, store, settings)
    rows = store.split_rows("all")
    dense = _dense_codes(model, store, rows)
    for e, enc in enumerate(ENCODINGS):
        for s, name in enumerate(model.names):
            z = dense[enc][name]
            assert np.array_equal(stats.fires[e, s], (z > 0).sum(0))
            np.testing.assert_allclose(stats.act_sum[e, s], z.sum(0), rtol=1e-5, atol=1e-6)
    widths = {int((dense["joint"][s] > 0).sum(1).max()) for s in model.names}
    assert max(widths) > 4  # some row holds more than k latents
    for name in model.names:
        np.testing.assert_allclose(stats.code(name, slice(None)).dense().numpy(), dense["independent"][name],
                                   rtol=1e-6)
