"""The run directory's layout (sparc.train.rundir): which model a run holds, its
recorded store, and the folder kind its writers are checked against."""

from __future__ import annotations

import pytest
import torch

from sparc.atomic import old_of
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.train.rundir import RUN, STARTED_RUN, RunDir, load_model
from sparc.workspace import foreign_entry, mark


def model(seed: int) -> SPARC:
    torch.manual_seed(seed)
    return SPARC({"a": 6, "b": 5}, SPARCConfig(n_latents=16, k=3))


def same(a: SPARC, b: SPARC) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_finished_run_loads_its_final_model_not_the_checkpoint(tmp_path):
    final, checkpoint = model(0), model(1)
    final.save(tmp_path)
    checkpoint.save(tmp_path / "checkpoint")
    assert RunDir(tmp_path).model_folder() == tmp_path
    assert same(load_model(tmp_path), final)


def test_a_run_still_training_loads_its_checkpoint(tmp_path):
    checkpoint = model(1)
    checkpoint.save(tmp_path / "checkpoint")
    assert RunDir(tmp_path).model_folder() == tmp_path / "checkpoint"
    assert same(load_model(tmp_path), checkpoint)


def test_a_checkpoint_swap_cut_between_its_renames_loads_the_previous_one(tmp_path):
    checkpoint = model(2)
    checkpoint.save(old_of(tmp_path / "checkpoint"))
    assert RunDir(tmp_path).holds_run()
    assert same(load_model(tmp_path), checkpoint)


def test_a_plain_model_folder_loads(tmp_path):
    m = model(3)
    m.save(tmp_path / "m")
    assert same(load_model(tmp_path / "m"), m)


def test_a_folder_without_a_model_is_one_line(tmp_path):
    assert not RunDir(tmp_path).holds_run()
    with pytest.raises(SparcError, match="holds no sparc model") as e:
        load_model(tmp_path)
    assert "\n" not in str(e.value)


def test_the_trained_store_needs_a_recorded_spec(tmp_path):
    with pytest.raises(SparcError, match="does not record the store it was trained on; pass --store"):
        RunDir(tmp_path).trained_store()


def test_what_the_layout_names_is_what_a_run_folder_may_hold(tmp_path):
    rd = RunDir(tmp_path)
    mark(tmp_path, RUN, "test")
    for d in (rd.checkpoint, rd.tensorboard, rd.eval_dir("test"), tmp_path / "wandb"):
        d.mkdir()
    for f in (*rd.model_files, rd.spec_file, rd.metrics_file):
        f.write_text("{}")
    assert foreign_entry(tmp_path, RUN) is None
    assert foreign_entry(tmp_path, STARTED_RUN) is not None  # weights: a restart could lose them
    (tmp_path / "notes.txt").write_text("mine")
    assert foreign_entry(tmp_path, RUN) == "'notes.txt'"


def test_eval_dirs_are_named_after_their_split(tmp_path):
    rd = RunDir(tmp_path)
    for split in ("val", "test"):
        rd.eval_dir(split).mkdir()
    assert rd.eval_dirs() == [tmp_path / "eval-test", tmp_path / "eval-val"]
    assert [RunDir.eval_split(d) for d in rd.eval_dirs()] == ["test", "val"]
