"""The methods as runs (``sparc train --method``): recorded in the run's settings and
model, a killed run resumed on its kernel path to the uninterrupted run's bits, bad
settings refused in one line before any work, and ``sparc eval`` / ``sparc compare`` /
``sparc info`` on such runs."""

from __future__ import annotations

import json

import pytest
import torch

from sparc.cli.main import main
from sparc.model import SPARC, kernels
from tests.synthetic import make_store
from tests.train.test_interruptions import assert_same_metrics, assert_same_weights, run_killed

ARGS = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "3",
        "--log-every", "1", "--no-progress", "--auxk", "8", "--dead-after-samples", "64"]
METHODS = {"batchtopk": [], "batchtopk-local": [], "matryoshka": ["--matryoshka", "8", "16", "32"], "usae": []}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("path", [("pytorch", "off"), ("fused", "on")], ids="+".join)
@pytest.mark.parametrize("method", list(METHODS))
def test_a_killed_run_of_a_method_resumes_to_the_same_bits(store, tmp_path, method, path):
    kernel_path, select = path
    if kernel_path == "fused" and kernels.resolve("auto", "cpu", torch.float32) != "fused":
        pytest.skip("numba is not installed: no fused CPU kernels")
    args = [*ARGS, "--method", method, *METHODS[method], "--kernels", kernel_path, "--bf16-select", select]
    ref = tmp_path / "ref"
    assert main(["train", str(store), "--out", str(ref), *args]) == 0
    spec = json.loads((ref / "train_config.json").read_text())
    assert spec["model"]["method"] == method and SPARC.load(ref).cfg.method == method
    out = tmp_path / "run"
    code = """
        from sparc.train.trainer import Trainer
        step = Trainer.step
        def killing(self, batch):
            if self.step_count == 4:
                die()
            return step(self, batch)
        Trainer.step = killing
    """
    done = run_killed(code, "train", str(store), "--out", str(out), *args)
    assert done.returncode == -9, done.stderr
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert_same_weights(ref, out)
    assert_same_metrics(ref, out)
    model = SPARC.load(out)
    if method.startswith("batchtopk"):  # the threshold was estimated, saved and restored
        assert (model.batch_threshold > 0).all()
    elif method == "usae":  # the draws went on from the checkpoint's: one per step
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in steps if r.get("split") != "val"]
        assert int(model.source_draws[1]) == steps[-1]["step"]
        assert len({next(k for k in r if k.startswith("nmse/")) for r in steps}) > 1  # sources vary
    else:
        logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])  # a training step
        assert {"prefix_nmse/8", "prefix_nmse/16", "prefix_nmse/32"} <= set(logged)


@pytest.mark.parametrize("path", [("pytorch", "off"), ("fused", "on")], ids="+".join)
def test_exclusive_latents_stay_zero_through_a_killed_and_resumed_run(store, tmp_path, path):
    """--exclusive: the rows of each stream's own latents are exactly zero in the other
    streams after training, and a killed run resumes to the uninterrupted run's bits."""
    from sparc.model.exclusive import allowed

    kernel_path, select = path
    if kernel_path == "fused" and kernels.resolve("auto", "cpu", torch.float32) != "fused":
        pytest.skip("numba is not installed: no fused CPU kernels")
    names = list(json.loads((store / "manifest.json").read_text())["streams"])
    args = [*ARGS, "--exclusive", f"{names[0]}:3", f"{names[-1]}:2", "--kernels", kernel_path, "--bf16-select", select]
    ref = tmp_path / "ref"
    assert main(["train", str(store), "--out", str(ref), *args]) == 0
    assert json.loads((ref / "config.json").read_text())["config"]["exclusive"] == [f"{names[0]}:3", f"{names[-1]}:2"]
    out = tmp_path / "run"
    code = """
        from sparc.train.trainer import Trainer
        step = Trainer.step
        def killing(self, batch):
            if self.step_count == 4:
                die()
            return step(self, batch)
        Trainer.step = killing
    """
    done = run_killed(code, "train", str(store), "--out", str(out), *args)
    assert done.returncode == -9, done.stderr
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert_same_weights(ref, out)
    assert_same_metrics(ref, out)
    model = SPARC.load(out)
    assert model.latent_owner.tolist()[-5:] == [0, 0, 0, len(names) - 1, len(names) - 1]
    ok = allowed(model)
    for s, col in enumerate(model.cols):
        assert torch.count_nonzero(model.W_dec[~ok[s], col]) == 0
        assert torch.count_nonzero(model.W_enc[~ok[s], col]) == 0
        assert torch.count_nonzero(model.b_lat[s, ~ok[s]]) == 0
        assert (model.W_dec[ok[s], col] != 0).any(1).all()  # its own rows learned, unit rows


@pytest.mark.parametrize("args, message", [
    (["--exclusive", "nosuch:2"], "--exclusive names stream 'nosuch', which is not among the streams"),
    (["--exclusive", "a:0"], "must number at least 1"),
    (["--exclusive", "a:20", "b:12"], "gives 32 exclusive latents, but n_latents is 32"),
    (["--method", "topk-batch"], "unknown method 'topk-batch'"),
    (["--method", "matryoshka", "--matryoshka", "16", "8", "32"], "must grow"),
    (["--method", "matryoshka", "--matryoshka", "8", "16"], "must be the whole dictionary"),
    (["--method", "matryoshka", "--matryoshka", "2", "32"], "larger than the smallest matryoshka prefix"),
    (["--matryoshka", "8", "32", "--topk", "local"], "method 'matryoshka' chooses latents by topk 'global'"),
    (["--method", "batchtopk", "--topk", "global"], "method 'batchtopk' chooses latents by topk 'batch-global'"),
])
def test_bad_method_flags_are_one_line_errors_before_any_work(store, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    code, _, err = run(["train", store, "--out", out, *ARGS, *args], capsys)
    assert code == 2 and message in err and err.startswith("error: "), err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_help_lists_every_method():
    """--method's help (the config field's docstring) describes every registered method."""
    import inspect

    from sparc.model.config import SPARCConfig
    from sparc.model.methods import METHODS as REGISTERED

    source = inspect.getsource(SPARCConfig)
    for name in REGISTERED.names():
        assert f"{name} (" in source, f"--method's help does not describe {name}"


def test_eval_compare_and_info_on_method_runs(store, tmp_path, capsys):
    runs = {}
    for method in ("sparc", "batchtopk", "matryoshka", "usae"):
        runs[method] = tmp_path / method
        code, _, err = run(["train", store, "--out", runs[method], *ARGS, "--method", method], capsys)
        assert code == 0, err
    for method, run_dir in runs.items():
        code, out, err = run(["eval", run_dir, "--no-progress", "--probe-epochs", "2", "--retrieval-queries", "50",
                              "--no-plots"], capsys)
        assert code == 0, err
        data = json.loads((run_dir / "eval-test" / "eval.json").read_text())
        assert data["model"]["method"] == method
        assert f"method {method}" in (run_dir / "eval-test" / "eval.md").read_text()
        code, out, err = run(["info", run_dir], capsys)
        assert code == 0 and f"method {method}" in out, err
    code, out, err = run(["compare", *runs.values(), "--out", tmp_path / "cmp"], capsys)
    assert code == 0, err
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["sparc", "batchtopk", "matryoshka", "usae"]
    assert [r["model"] for r in rows] == ["global + cross", "batchtopk + cross", "matryoshka + cross", "usae + cross"]
    assert "| batchtopk + cross | batchtopk |" in out


def test_batchtopk_is_refused_in_a_data_parallel_run():
    from sparc.errors import SparcError
    from sparc.model import SPARCConfig
    from sparc.train.run import check_parallel

    rank = object()  # any Distributed: the check reads only whether there is one
    with pytest.raises(SparcError, match="chooses latents from the whole batch") as e:
        check_parallel(SPARCConfig(method="batchtopk-local"), rank)
    assert "\n" not in str(e.value)
    check_parallel(SPARCConfig(method="batchtopk"), None)
    check_parallel(SPARCConfig(method="matryoshka"), rank)
