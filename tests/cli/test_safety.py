"""The sparc command never deletes a user's files, never reports a diverged model as a
success, and refuses bad flags and inputs with one line (docs/formats.md)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from sparc.cli.main import main
from sparc.data import FeatureStore
from sparc.eval.metrics.ranking import rank_queries
from sparc.model import SPARC
from tests.synthetic import make_store

SMALL = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- --overwrite


def test_out_at_the_input_store_is_refused_and_the_store_kept(store, tmp_path, capsys):
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for out in (copy, copy / "features", tmp_path):
        code, _, err = run(["train", copy, "--out", out, "--overwrite", *SMALL], capsys)
        assert code == 2 and "overlaps the input" in one_line(err)
    assert FeatureStore.open(copy).n_rows == 200


def test_overwrite_never_deletes_a_folder_of_the_users(store, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    code, _, err = run(["train", store, "--out", folder, "--overwrite", "--max-steps", "1", *SMALL], capsys)
    assert code == 2 and "not a run directory written by sparc (no sparc marker .sparc.json" in one_line(err)
    assert "refusing to replace" in err
    assert (folder / "thesis.tex").read_text() == "precious"
    # Not even when a run lies beside the user's file.
    assert main(["train", str(store), "--out", str(tmp_path / "run"), "--max-steps", "1", *SMALL]) == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    code, _, err = run(["train", store, "--out", tmp_path / "run", "--overwrite", "--max-steps", "1", *SMALL], capsys)
    assert code == 2 and "'notes.txt'" in one_line(err)
    assert (tmp_path / "run" / "notes.txt").exists() and (tmp_path / "run" / "model.safetensors").exists()


def test_overwrite_replaces_sparcs_own_run(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "2", *SMALL]) == 0
    assert main(["eval", str(out), "--no-plots", "--no-progress", "--retrieval-queries", "20"]) == 0
    assert main(["train", str(store), "--out", str(out), "--overwrite", "--max-steps", "1", *SMALL]) == 0
    assert not (out / "eval-test").exists()


def test_eval_out_refuses_a_users_folder_and_the_run_itself(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "2", *SMALL]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "paper.pdf").write_text("x")
    for target, expect in ((mine, "not an evaluation written by sparc (no sparc marker"), (out, "holds the run"),
                           (store, "overlaps the input")):
        code, _, err = run(["eval", out, "--out", target, "--no-plots", "--no-progress"], capsys)
        assert code == 2 and expect in one_line(err), err
    assert (mine / "paper.pdf").exists()
    # An earlier evaluation with a user's file added is not replaced either.
    assert main(["eval", str(out), "--no-plots", "--no-progress", "--retrieval-queries", "20"]) == 0
    (out / "eval-test" / "paper.pdf").write_text("x")
    code, _, err = run(["eval", out, "--no-plots", "--no-progress"], capsys)
    assert code == 2 and "'paper.pdf'" in one_line(err)


# ---------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_with_exit_1_and_resumes_with_a_lower_lr(store, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(["train", store, "--out", out, "--lr", "1e8", "--epochs", "20", "--checkpoint-every", "1",
                        *SMALL], capsys)
    line = one_line(err)
    assert code == 1 and "training diverged at step" in line and "--resume --resume-lr" in line
    assert not (out / "model.safetensors").exists()
    # Whatever checkpoint is on disk holds finite weights only.
    checkpoint = SPARC.load(out / "checkpoint")
    assert all(bool(torch.isfinite(p).all()) for p in checkpoint.parameters())
    code, stdout, err = run(["train", store, "--out", out, "--resume", "--resume-lr", "1e-3", "--max-steps", "8"],
                            capsys)
    assert code == 0, err
    assert "lr 0.001" in stdout
    assert json.loads((out / "train_config.json").read_text())["train"]["lr"] == 1e-3


def test_a_run_diverging_before_any_checkpoint_says_to_start_again(store, tmp_path, capsys):
    code, _, err = run(["train", store, "--out", tmp_path / "r", "--lr", "1e30", "--epochs", "5", *SMALL], capsys)
    line = one_line(err)
    assert code == 1 and "no checkpoint was written" in line and "--overwrite --lr" in line


def test_eval_refuses_a_model_with_non_finite_weights(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "2", *SMALL]) == 0
    model = SPARC.load(out)
    with torch.no_grad():
        model.W_dec[3, 0] = float("nan")
    model.save(out)
    code, _, err = run(["eval", out, "--no-plots", "--no-progress"], capsys)
    assert code == 2 and "not finite" in one_line(err)


def test_a_query_whose_match_scores_nan_is_a_miss_not_a_tie_at_rank_1():
    scores = torch.full((2, 4), float("nan"))
    scores[1] = torch.tensor([0.1, 0.9, 0.2, 0.3])

    ranks = rank_queries(lambda a, b: scores[:, a:b], torch.tensor([float("nan"), 0.9], dtype=torch.float64),
                         (np.array([0, 1]), np.array([0, 1])), 4, 2, tol=1e-6)
    assert ranks.tolist() == [4, 1]


# ---------------------------------------------------------------------------- flags and inputs


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "lr must be a positive number"),
    (["--lr", "inf"], "lr must be a positive number"),
    (["--adam-eps", "-1"], "adam_eps must be a positive number"),
    (["--device", "banana"], "unknown device 'banana'"),
    (["--device", "cuda:7"], "device 'cuda:7' asked for"),
    (["--fire-threshold", "nan"], "fire_threshold must be a non-negative number"),
    (["--resample-std", "-1"], "resample_std must be a positive number"),
    (["--cross-coef", "inf"], "cross_coef must be a non-negative number"),
    (["--resume-lr", "1e-3"], "--resume-lr goes with --resume"),
])
def test_bad_flags_are_one_line_errors(store, tmp_path, capsys, flags, message):
    code, _, err = run(["train", store, "--out", tmp_path / "r", *flags, *SMALL], capsys)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "r").exists()


def test_resume_refuses_another_store_unless_told(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "2", "--checkpoint-every", "1",
                 "--epochs", "3", *SMALL]) == 0
    (out / "model.safetensors").unlink()  # make it an unfinished run
    other = make_store(tmp_path / "other", n_rows=200, seed=1)
    code, _, err = run(["train", other, "--out", out, "--resume"], capsys)
    assert code == 2 and "is not the store" in one_line(err) and "--other-store" in err
    # The same path re-created with other rows is refused too.
    moved = tmp_path / "moved"
    shutil.copytree(store, moved)
    code, _, err = run(["train", moved, "--out", out, "--resume", "--max-steps", "3"], capsys)
    assert code == 0, err  # a copy of the same store (same creation stamp) is fine
    code, _, err = run(["train", other, "--out", out, "--resume", "--other-store", "--max-steps", "4"], capsys)
    assert code == 0, err


def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"encoders.dino.weight": Evil()}, tmp_path / "msae_checkpoint.pth")
    code, _, err = run(["import-checkpoint", tmp_path / "msae_checkpoint.pth", "--out", tmp_path / "m",
                        "--topk", "global", "--k", "4"], capsys)
    assert code == 2 and "asks to run Python code" in one_line(err) and "system" in err
    assert not marker.exists()


def test_csv_metadata_with_an_unterminated_quote_is_refused_with_its_line(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["features"] = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    (tmp_path / "rows.csv").write_text('row_id,caption\n0,fine\n1,"never closed\n2,swallowed\n')
    code, _, err = run(["import-h5", "--stream", f"a={tmp_path / 'a.h5'}", "--metadata", tmp_path / "rows.csv",
                        "--out", tmp_path / "s"], capsys)
    assert code == 2 and "line 3" in one_line(err) and "unterminated quote" in err
    assert not (tmp_path / "s").exists()
