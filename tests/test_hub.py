"""sparc.model.hub and sparc.publish: save_pretrained / from_pretrained through a folder and through a
pre-filled Hugging Face cache with HF_HUB_OFFLINE=1; the model card; offline errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sparc.errors import SparcError
from sparc.model import SPARC, SPARCConfig
from sparc.publish import model_card

pytest.importorskip("huggingface_hub")


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SPARC({"img": 6, "txt": 5}, SPARCConfig(n_latents=16, k=3))
    with torch.no_grad():
        m.b_pre.normal_()
        m.samples_since_fired.random_(0, 1000)
    return m


def assert_same(a: SPARC, b: SPARC) -> None:
    assert a.streams == b.streams and a.cfg == b.cfg
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)


def test_round_trip_through_a_folder(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "m", card="# hello\n")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert_same(model, SPARC.from_pretrained(folder))
    assert_same(model, SPARC.from_pretrained(str(folder)))
    x = {"img": torch.randn(4, 6), "txt": torch.randn(4, 5)}
    a, b = model.encode(x), SPARC.from_pretrained(folder).encode(x)
    assert all(torch.equal(a[s].values, b[s].values) for s in x)


def test_a_name_that_is_neither_folder_nor_repo(tmp_path):
    with pytest.raises(SparcError, match="neither a folder nor a Hub repository"):
        SPARC.from_pretrained(str(tmp_path / "missing" / "deeper" / "x"))


def fill_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> None:
    """The cache layout huggingface_hub documents: blobs named by content hash,
    snapshots/<commit>/<file> linking to them, refs/main naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))


def test_from_the_hub_cache_offline(model, tmp_path):
    from huggingface_hub import scan_cache_dir

    cache = tmp_path / "cache"
    fill_cache(cache, "someone/sparc-tiny", model.save_pretrained(tmp_path / "m"))
    # The hub library itself recognises the layout.
    repos = {r.repo_id: r for r in scan_cache_dir(cache).repos}
    assert repos["someone/sparc-tiny"].nb_files == 2
    torch.save(model.state_dict(), tmp_path / "want.pt")
    script = textwrap.dedent(f"""
        import torch
        from sparc.cli.main import main
        from sparc.errors import SparcError
        from sparc.model import SPARC
        got = SPARC.from_pretrained("someone/sparc-tiny")
        want = torch.load({str(tmp_path / "want.pt")!r})
        assert all(torch.equal(got.state_dict()[k], v) for k, v in want.items())
        try:
            SPARC.from_pretrained("someone/not-cached")
        except SparcError as e:
            print("MISS", e)
        code = main(["push", {str(tmp_path / "run")!r}, "someone/sparc-tiny"])
        print("PUSH", code)
    """)
    run = tmp_path / "run"
    model.save(run)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    miss = next(line for line in proc.stdout.splitlines() if line.startswith("MISS"))
    assert "someone/not-cached is not in the Hugging Face cache and the Hub cannot be reached" in miss
    assert "PUSH 2" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "error: cannot push with HF_HUB_OFFLINE set; unset it and connect"


def test_model_card_from_a_run(model, tmp_path):
    run = tmp_path / "run"
    model.save(run)
    (run / "train_config.json").write_text(json.dumps({
        "store": "/data/store", "streams": ["img", "txt"], "store_created": "2026-01-01T00:00:00+00:00",
        "train": {"batch_size": 256, "lr": 0.0001, "epochs": 3, "progress": True, "device": "cpu"}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 30, "samples": 7680, "loss": 0.5, "nmse/img": 0.25,
                                                   "time": 1.0}) + "\n")
    (run / "eval-test").mkdir()
    (run / "eval-test" / "eval.md").write_text("# Evaluation of `run`\n\n## Reconstruction\n\n| a |\n|---|\n| 1 |\n\n"
                                               "![jaccard](plots/jaccard.png)\n")
    card = model_card(run, model, "someone/sparc-tiny")
    assert card.startswith("---\nlibrary_name: sparc\n")
    assert 'SPARC.from_pretrained("someone/sparc-tiny")' in card
    assert "| img | 6 |" in card and "| n_latents | 16 |" in card and "| batch_size | 256 |" in card
    assert "| progress |" not in card and "Last logged step 30 (7680 samples): loss 0.5, nmse/img 0.25" in card
    assert "## Evaluation (test split)" in card and "### Reconstruction" in card
    assert "![jaccard](eval-test/plots/jaccard.png)" in card and "# Evaluation of" not in card


def test_push_needs_a_finished_run_and_a_repo_name(model, tmp_path):
    from sparc.publish import push

    with pytest.raises(SparcError, match="not a Hub repository name"):
        push(tmp_path, "no-slash")
    with pytest.raises(SparcError, match="holds no finished model"):
        push(tmp_path, "someone/x")
