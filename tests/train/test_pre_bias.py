"""Pre-bias initialisation: the geometric median by hand, and the trainer's first batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sparc.data import BatchLoader, FeatureStore
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig, Trainer
from sparc.train.pre_bias import geometric_median, init_pre_bias_
from synthetic import make_store


def test_geometric_median_by_hand():
    # 1D: the median of {0, 1, 10} is 1 (the mean, 11/3, is pulled by the outlier).
    torch.testing.assert_close(geometric_median(torch.tensor([[0.0], [1.0], [10.0]])),
                               torch.tensor([1.0], dtype=torch.float64), atol=1e-5, rtol=0)
    # The corners of a square and a far outlier on its diagonal: by symmetry the median is
    # (t, t); for 0 < t < 2 the distances' derivative is 2(2t − 2)/√(2t² − 4t + 4) − √2, zero
    # at t = 1 + 1/√3 (the outlier pulls it by a fixed amount however far it is).
    pts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0], [100.0, 100.0]])
    t = 1 + 3 ** -0.5
    torch.testing.assert_close(geometric_median(pts), torch.tensor([t, t], dtype=torch.float64), atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(1, 4)),
              elements=st.floats(-10, 10, allow_nan=False)))
def test_geometric_median_is_no_worse_than_the_mean(x):
    x = torch.from_numpy(x)
    cost = lambda m: (x - m).norm(dim=1).sum().item()  # noqa: E731
    assert cost(geometric_median(x)) <= cost(x.mean(0)) + 1e-7 * (1 + cost(x.mean(0)))


def test_init_sets_only_the_given_streams():
    model = SPARC({"a": 3, "b": 2}, SPARCConfig(n_latents=8, k=2))
    x = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    init_pre_bias_(model, {"a": x}, "mean")
    torch.testing.assert_close(model.b_pre.detach(), torch.tensor([2.0, 3.0, 4.0, 0.0, 0.0]))
    init_pre_bias_(model, {"b": torch.ones(4, 2)}, "zero")  # 'zero' leaves the model alone
    torch.testing.assert_close(model.b_pre.detach(), torch.tensor([2.0, 3.0, 4.0, 0.0, 0.0]))
    with pytest.raises(SparcError, match="pre_bias_init"):
        TrainConfig(pre_bias_init="median-ish")


@pytest.mark.parametrize("method", ["mean", "median"])
def test_trainer_starts_the_pre_bias_at_the_first_batch(tmp_path, method):
    store = FeatureStore.open(make_store(tmp_path / "store", n_rows=120))
    cfg = TrainConfig(batch_size=32, max_steps=1, lr=1e-9, progress=False, checkpoint_every=0,
                      pre_bias_init=method)
    torch.manual_seed(0)
    model = SPARC(store.streams, SPARCConfig(n_latents=16, k=2))
    first = next(iter(BatchLoader(store, "train", batch_size=32, seed=cfg.seed)))
    Trainer(model, cfg, BatchLoader(store, "train", batch_size=32, seed=cfg.seed)).fit()
    for name, col in zip(model.names, model.cols):
        x = first[name].double()
        want = x.mean(0) if method == "mean" else geometric_median(x)
        # one Adam step of lr 1e-9 moves each entry by at most ~1e-9
        torch.testing.assert_close(model.b_pre.detach()[col].double(), want, atol=1e-7, rtol=0)


def test_the_default_is_the_mean_and_the_original_preset_restores_the_authors_settings():
    from sparc.train.config import apply_preset

    assert TrainConfig().pre_bias_init == "mean"
    model, train = apply_preset("original", SPARCConfig(topk="local"), TrainConfig(batch_size=128))
    assert train.pre_bias_init == "zero"
    assert model.dead_after_samples == train.resample_after_samples == 128_000
    assert model.method == "local" and train.batch_size == 128
    for m, t, message in [
        (SPARCConfig(method="batchtopk"), TrainConfig(), "trains the methods sparc, local and no-cross"),
        (SPARCConfig(), TrainConfig(pre_bias_init="median"), "drop --pre-bias-init median"),
        (SPARCConfig(dead_after_samples=1000), TrainConfig(), "drop --dead-after-samples"),
        (SPARCConfig(), TrainConfig(resample_after_samples=10), "drop --resample-after-samples"),
    ]:
        with pytest.raises(SparcError, match=message) as e:
            apply_preset("original", m, t)
        assert "\n" not in str(e.value)
    with pytest.raises(SparcError, match="unknown preset 'paper'"):
        apply_preset("paper", SPARCConfig(), TrainConfig())


def test_sparc_train_preset_original_records_the_authors_settings(tmp_path, capsys):
    import json

    from sparc.cli.main import main

    store = make_store(tmp_path / "store", n_rows=100)
    small = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--max-steps", "2", "--no-progress"]
    assert main(["train", str(store), "--out", str(tmp_path / "orig"), *small, "--preset", "original"]) == 0
    spec = json.loads((tmp_path / "orig" / "train_config.json").read_text())
    assert spec["train"]["pre_bias_init"] == "zero" and spec["model"]["dead_after_samples"] == 32_000
    assert main(["train", str(store), "--out", str(tmp_path / "new"), *small]) == 0
    assert json.loads((tmp_path / "new" / "train_config.json").read_text())["train"]["pre_bias_init"] == "mean"
    capsys.readouterr()
    assert main(["train", str(store), "--out", str(tmp_path / "bad"), *small, "--preset", "original",
                 "--method", "matryoshka"]) == 2
    err = capsys.readouterr().err
    assert "--preset original is the authors' code" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
