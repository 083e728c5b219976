"""The run workflow: a run directory's recorded spec, fresh start, resume and reuse."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sparc.data import FeatureStore
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.train import TrainConfig, finished_with, new_spec, open_run
from sparc.train.rundir import SPEC_FILE, RunDir
from synthetic import make_store

MODEL = SPARCConfig(n_latents=24, k=3)
TRAIN = TrainConfig(batch_size=32, epochs=1, progress=False, checkpoint_every=0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FeatureStore.open(make_store(tmp_path_factory.mktemp("s") / "store", n_rows=120))


def test_fresh_run_records_its_spec_and_trains(store, tmp_path):
    spec = new_spec(store, MODEL, TRAIN, ["clip_txt", "dino"])
    assert spec.streams == ("clip_txt", "dino") and spec.store == str(store.path.resolve())
    with open_run(tmp_path / "r", spec) as run:
        assert not run.resumed and RunDir(tmp_path / "r").spec() == spec
        assert list(run.trainer.model.streams) == ["clip_txt", "dino"]
        # Validation batches hold at least 1024 rows, whatever the training batch.
        assert run.trainer.val_data.batch_size == 1024
        run.trainer.fit()
    assert finished_with(tmp_path / "r", spec)
    # The progress bar does not change the result; anything else does.
    assert finished_with(tmp_path / "r", dataclasses.replace(spec, train=dataclasses.replace(TRAIN, progress=True)))
    assert not finished_with(tmp_path / "r", dataclasses.replace(spec, model=dataclasses.replace(MODEL, k=4)))
    assert not finished_with(tmp_path / "r", dataclasses.replace(spec, store_created="another day"))


def test_same_seed_same_model_as_by_hand(store, tmp_path):
    with open_run(tmp_path / "r", new_spec(store, MODEL, TRAIN)) as run:
        pass
    torch.manual_seed(TRAIN.seed)
    by_hand = SPARC(store.streams, MODEL)
    for a, b in zip(run.trainer.model.state_dict().values(), by_hand.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_uses_the_recorded_spec(store, tmp_path):
    spec = new_spec(store, MODEL, dataclasses.replace(TRAIN, max_steps=2, checkpoint_every=1))
    with open_run(tmp_path / "r", spec) as run:
        run.trainer.fit()
    with open_run(tmp_path / "r", resume=True) as again:
        assert again.resumed and again.spec == spec and again.trainer.step_count == 2


def test_runs_recorded_without_model_settings_still_resume(store, tmp_path):
    # `sparc train` used to record only the store, the streams and the training settings.
    spec = new_spec(store, MODEL, dataclasses.replace(TRAIN, max_steps=1, checkpoint_every=1))
    with open_run(tmp_path / "r", spec) as run:
        run.trainer.fit()
    path = tmp_path / "r" / SPEC_FILE
    old = json.loads(path.read_text())
    path.write_text(json.dumps({"train": old["train"], "store": old["store"], "streams": old["streams"]}))
    with open_run(tmp_path / "r", resume=True) as run:
        assert run.spec.model is None


def test_unknown_key_in_the_spec_is_a_one_line_error(store, tmp_path):
    open_run(tmp_path / "r", new_spec(store, MODEL, TRAIN)).close()
    path = tmp_path / "r" / SPEC_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "optimizer": "sgd"}))
    with pytest.raises(SparcError, match=r"train_config.json: unknown key 'optimizer'") as e:
        RunDir(tmp_path / "r").spec()
    assert "\n" not in str(e.value)
    assert not finished_with(tmp_path / "r", new_spec(store, MODEL, TRAIN))
    bad = json.loads(path.read_text())
    bad.pop("optimizer")
    bad["train"]["lr"] = -1
    path.write_text(json.dumps(bad))
    with pytest.raises(SparcError, match=r"train: lr must be a positive number"):
        RunDir(tmp_path / "r").spec()
