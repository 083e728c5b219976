"""A run keeps its backend (kernel path, encoder selection): recorded resolved at the
start, reused on --resume whatever this process would choose, so a killed run resumes
to the uninterrupted run's bits on every path; a path that cannot run here is refused
in one line naming the override (sparc.train.backend)."""

from __future__ import annotations

import json

import pytest
import torch

from sparc.cli.main import main
from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig, kernels
from sparc.train.backend import Backend
from sparc.train.config import TrainConfig
from sparc.train.trainer import Trainer
from tests.synthetic import make_store
from tests.train.test_interruptions import assert_same_metrics, assert_same_weights, run_killed

ARGS = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "3",
        "--log-every", "1", "--no-progress", "--auxk", "8", "--dead-after-samples", "64"]
# The resume below runs in a process whose own choice is the opposite of the recorded
# one in both respects, so a resume that decided afresh would not repeat the run.
PATHS = [("pytorch", "on"), ("fused", "off"), ("fused", "on")]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


def recorded(run) -> dict:
    return json.loads((run / "train_config.json").read_text())["backend"]


@pytest.mark.parametrize("path", PATHS, ids="+".join)
def test_a_killed_run_resumes_on_its_path_to_the_same_bits(store, tmp_path, path, monkeypatch):
    kernel_path, select = path
    if kernel_path == "fused" and kernels.resolve("auto", "cpu", torch.float32) != "fused":
        pytest.skip("numba is not installed: no fused CPU kernels")
    chosen = ["--kernels", kernel_path, "--bf16-select", select]
    ref = tmp_path / "ref"
    assert main(["train", str(store), "--out", str(ref), *ARGS, *chosen]) == 0
    assert recorded(ref) == {"kernels": kernel_path, "bf16_select": select}

    out = tmp_path / "run"
    # Killed during step 5, after the checkpoint of step 3.
    code = """
        from sparc.train.trainer import Trainer
        step = Trainer.step
        def killing(self, batch):
            if self.step_count == 4:
                die()
            return step(self, batch)
        Trainer.step = killing
    """
    done = run_killed(code, "train", str(store), "--out", str(out), *ARGS, *chosen)
    assert done.returncode == -9, done.stderr
    # This process would choose otherwise: the resume must take the recorded path.
    monkeypatch.setenv("SPARC_KERNELS", "pytorch" if kernel_path == "fused" else "fused")
    monkeypatch.setenv("SPARC_BF16_SELECT", "off" if select == "on" else "on")
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert recorded(out) == recorded(ref)
    assert_same_weights(ref, out)
    assert_same_metrics(ref, out)


def test_a_path_that_cannot_run_here_is_refused_naming_the_override(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), *ARGS, "--max-steps", "3", "--kernels", "pytorch"]) == 0
    spec_file = out / "train_config.json"
    spec = json.loads(spec_file.read_text())
    spec["backend"]["kernels"] = "triton"  # recorded on a GPU machine
    spec_file.write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "computes with the triton kernels, which cannot run here" in err and "--kernels pytorch" in err
    assert json.loads(spec_file.read_text()) == spec, "a refused resume changed the run's settings"

    assert main(["train", str(store), "--out", str(out), "--resume", "--kernels", "pytorch"]) == 0
    err = capsys.readouterr().err
    assert "--kernels pytorch (recorded: triton)" in err and "bit for bit" in err
    assert recorded(out) == {"kernels": "pytorch", "bf16_select": spec["backend"]["bf16_select"]}


def test_auto_is_resolved_as_this_process_would_and_kept_as_recorded(monkeypatch):
    monkeypatch.setenv("SPARC_KERNELS", "pytorch")
    monkeypatch.setenv("SPARC_BF16_SELECT", "on")
    assert Backend().resolved("cpu") == Backend("pytorch", "on")
    assert Backend(bf16_select="off").resolved("cpu") == Backend("pytorch", "off")
    assert Backend().over(Backend("fused", "off")) == Backend("fused", "off")
    assert Backend("pytorch").over(Backend("fused", "off")) == Backend("pytorch", "off")
    with pytest.raises(SparcError, match="kernels must be one of"):
        Backend("numba")
    with pytest.raises(SparcError, match="bf16 selection must be one of"):
        Backend(bf16_select="fast")


def test_without_flags_a_fresh_run_records_the_environments_choice(store, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "SPARC_KERNELS": "pytorch", "SPARC_BF16_SELECT": "off"}
    done = subprocess.run([sys.executable, "-m", "sparc.cli.main", "train", str(store), "--out", str(out), *ARGS,
                           "--max-steps", "1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert recorded(out) == {"kernels": "pytorch", "bf16_select": "off"}


def test_a_hand_edited_auto_in_the_record_is_decided_on_resume(store, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), *ARGS, "--max-steps", "2", "--kernels", "pytorch"]) == 0
    (out / "model.safetensors").unlink()  # unfinished: resumable
    spec = json.loads((out / "train_config.json").read_text())
    spec["backend"] = {"kernels": "auto", "bf16_select": "off"}
    (out / "train_config.json").write_text(json.dumps(spec))
    monkeypatch.setenv("SPARC_KERNELS", "pytorch")
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0
    assert recorded(out) == {"kernels": "pytorch", "bf16_select": "off"}


def test_two_models_on_two_paths_train_side_by_side_in_one_process():
    """The backend is the model's and its engine's, not the process's: two trainers on two
    paths, stepped in turn, each give the bits it gives alone."""
    import torch.nn.functional as F

    if kernels.resolve("auto", "cpu", torch.float32) != "fused":
        pytest.skip("numba is not installed: no fused CPU kernels")
    dims = {"a": 24, "b": 16, "c": 20}
    g = torch.Generator().manual_seed(3)
    batches = [{s: F.normalize(torch.randn(32, d, generator=g), dim=1) for s, d in dims.items()} for _ in range(6)]
    backends = [Backend("pytorch", "off"), Backend("fused", "on")]

    def trainer(backend: Backend) -> Trainer:
        torch.manual_seed(0)
        model = SPARC(dims, SPARCConfig(n_latents=48, k=4, auxk=4, dead_after_samples=64))
        return Trainer(model, TrainConfig(lr=1e-2, progress=False), train=[], backend=backend)

    alone = []
    for backend in backends:
        t = trainer(backend)
        for x in batches:
            t.step(x)
        alone.append(t.model.state_dict())
    together = [trainer(b) for b in backends]
    for x in batches:
        for t in together:
            t.step(x)
    assert [t.model.kernels.name for t in together] == ["pytorch", "fused"]
    assert [t.engine.bf16_select for t in together] == ["off", "on"]
    for t, want in zip(together, alone):
        for name, value in t.model.state_dict().items():
            assert torch.equal(value, want[name]), f"{t.backend}: {name}"
    # The case is what it says: the two paths round differently.
    assert not torch.equal(alone[0]["W_enc"], alone[1]["W_enc"])


def test_a_fresh_run_starts_on_its_own_path_and_a_named_path_must_run(store, tmp_path, monkeypatch):
    """The model of a fresh run is built on the run's kernel path (its decoder's first
    normalisation rounds as the run does), whatever this process's default; a path named
    that cannot run here is a one-line error, not another path."""
    from sparc.data import FeatureStore
    from sparc.train import new_spec, open_run

    if kernels.resolve("auto", "cpu", torch.float32) != "fused":
        pytest.skip("numba is not installed: no fused CPU kernels")
    monkeypatch.setenv("SPARC_KERNELS", "fused")
    data = FeatureStore.open(store)
    cfg = SPARCConfig(n_latents=32, k=4)
    spec = new_spec(data, cfg, TrainConfig(max_steps=1, progress=False), backend=Backend("pytorch", "off"))
    with open_run(tmp_path / "run", spec) as run:
        got = run.trainer.model.W_dec.detach().clone()
    streams = {s: data.streams[s] for s in spec.streams}
    built = {}
    for path in ("pytorch", "fused"):
        torch.manual_seed(spec.train.seed)
        built[path] = SPARC(streams, cfg, kernels=path).W_dec.detach()
    assert torch.equal(got, built["pytorch"])
    assert not torch.equal(built["pytorch"], built["fused"])  # the case is what it says
    if not torch.cuda.is_available():
        with pytest.raises(SparcError, match="Triton GPU kernels cannot run here"):
            Backend("triton", "off").resolved("cpu")
