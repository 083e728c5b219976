"""The trainer: it learns, logs, checkpoints, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from sparc.data import BatchLoader, FeatureStore
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig, Trainer
from synthetic import make_store

MODEL = SPARCConfig(n_latents=48, k=4, auxk=8, dead_after_samples=96)
TRAIN = TrainConfig(batch_size=32, epochs=3, lr=3e-3, checkpoint_every=5, log_every=1,
                    progress=False, resample_after_samples=320, resample_every=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore.open(make_store(tmp_path_factory.mktemp("s") / "store", n_rows=300))


def new_trainer(store, run_dir, cfg=TRAIN, model=None):
    if model is None:
        torch.manual_seed(cfg.seed)
        model = SPARC(store.streams, MODEL)
    train = BatchLoader(store, "train", batch_size=cfg.batch_size, seed=cfg.seed)
    val = BatchLoader(store, "val", batch_size=64, shuffle=False)
    return Trainer(model, cfg, train, val, run_dir=run_dir)


def stop_after(trainer, n):
    """Make ``trainer`` behave as if Ctrl-C came during step ``n``."""
    step = trainer.step

    def wrapped(batch):
        out = step(batch)
        if trainer.step_count == n:
            trainer.request_stop()
        return out

    trainer.step = wrapped


def test_training_reduces_loss_and_writes_the_run(store, tmp_path):
    t = new_trainer(store, tmp_path / "run")
    t.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") != "val"]
    val = [r for r in records if r.get("split") == "val"]
    assert [r["step"] for r in train] == list(range(1, t.total_steps() + 1))
    assert len(val) == TRAIN.epochs
    assert train[-1]["loss"] < 0.8 * train[0]["loss"]
    assert val[-1]["loss"] < val[0]["loss"]
    for key in ("nmse/dino", "cross_nmse/dino<-clip_txt", "auxk/clip_img", "l0/clip_txt", "dead/dino"):
        assert key in train[-1]
    loaded = SPARC.load(tmp_path / "run")
    for a, b in zip(loaded.state_dict().values(), t.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stop_at", [4, 8, 13])  # mid-epoch, at the end of epoch 1 (8 batches), in epoch 2
def test_interrupted_and_resumed_run_ends_bitwise_equal(store, tmp_path, stop_at):
    straight = new_trainer(store, tmp_path / "a")
    straight.fit()

    first = new_trainer(store, tmp_path / "b")
    stop_after(first, stop_at)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert not (tmp_path / "b" / "model.safetensors").exists()  # only the checkpoint

    model = SPARC.load(tmp_path / "b" / "checkpoint")
    resumed = new_trainer(store, tmp_path / "b", model=model)
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint")
    assert resumed.step_count == stop_at
    resumed.fit()

    assert resumed.step_count == straight.step_count
    for name, a in straight.model.state_dict().items():
        assert torch.equal(a, resumed.model.state_dict()[name]), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
             if "split" not in json.loads(line)]
    assert steps == sorted(set(steps)), "metrics were logged twice for some steps"


def test_dead_latents_are_resampled_with_fresh_state(store, tmp_path):
    cfg = TrainConfig(batch_size=32, epochs=1, max_steps=3, progress=False, checkpoint_every=0,
                      resample_after_samples=10**9)
    t = new_trainer(store, None, cfg)
    t.fit()
    from sparc.train.dead import resample_dead_latents

    m = t.model
    m.samples_since_fired[1, :5] = 10**9
    before = m.W_enc.detach().clone()
    n = resample_dead_latents(m, t.optimizer, after_samples=10**9, std=0.01, generator=torch.Generator().manual_seed(0))
    assert n == 5
    col = m.cols[1]
    assert not torch.equal(m.W_enc[:5, col], before[:5, col])
    assert torch.equal(m.W_enc[5:], before[5:]) and torch.equal(m.W_enc[:5, m.cols[0]], before[:5, m.cols[0]])
    torch.testing.assert_close(m.W_dec[:5, col].norm(dim=1), torch.ones(5))
    assert (m.samples_since_fired[1, :5] == 0).all() and (m.b_lat[1, :5] == 0).all()
    state = t.optimizer.state[m.W_enc]
    assert (state["exp_avg"][:5, col] == 0).all() and (state["exp_avg_sq"][:5, col] == 0).all()


def test_counters_do_not_move_during_validation(store, tmp_path):
    t = new_trainer(store, None, TrainConfig(batch_size=32, max_steps=2, progress=False, checkpoint_every=0))
    t.fit()
    before = t.model.samples_since_fired.clone()
    t.validate()
    assert torch.equal(before, t.model.samples_since_fired)


def test_training_under_autocast_keeps_float32_weights(store, tmp_path):
    from dataclasses import replace

    t = new_trainer(store, tmp_path / "run", cfg=replace(TRAIN, epochs=1, autocast=True))
    t.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") != "val"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert all(v.dtype == torch.float32 for st in t.optimizer.state.values() for k, v in st.items()
               if k != "step")
