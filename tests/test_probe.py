"""The reliability probe, replayed: each case a hostile-but-fair user tried, as its own
test (README, "Reliability"; docs/formats.md, "Writing safely"). Every one failed
before the fix it guards."""

from __future__ import annotations

import json
import shutil

import pytest

from sparc.cli.main import main
from sparc.errors import SparcError
from sparc.explore import Explorer
from sparc.explore.report import ReportSettings, write_report
from tests.synthetic import make_store

SMALL = ["--n-latents", "32", "--k", "4", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("s") / "store", n_rows=200)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.explore.world import session_world

    return session_world(tmp_path_factory)


@pytest.fixture
def run(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    return run


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- 1. report --out


def test_report_never_deletes_a_folder_that_holds_a_file_named_report_json(world, run, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "thesis.tex").write_text("precious")
    (mine / "report.json").write_text(json.dumps({"format": "sparc-report", "version": 1}))
    code = main(["report", str(run), "--store", str(world["store"]), "--out", str(mine), "--no-progress"])
    assert code == 2 and "not a report written by sparc" in one_line(capsys.readouterr().err)
    assert (mine / "thesis.tex").read_text() == "precious" and (mine / "photos").is_dir()


# ---------------------------------------------------------------- 2. paths in a run's files


@pytest.mark.parametrize("escape", ["../../secret.txt", "/abs/secret.txt", "link/secret.txt"])
def test_report_copies_no_file_from_outside_the_run(world, run, tmp_path, escape):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    (run / "heatmaps").mkdir()
    (run / "heatmaps" / "link").symlink_to(tmp_path)  # a symlink out of the run
    rel = escape.replace("/abs/secret.txt", str(secret))
    (run / "heatmaps" / "index.json").write_text(json.dumps({"latents": {"3": {"img": [["r0", rel]]}}}))
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)
    assert (run / "heatmaps" / rel).resolve() == secret.resolve()  # the index does name the secret
    with pytest.raises(SparcError, match="outside .*refusing it"):
        write_report(ex, tmp_path / "report", ReportSettings(progress=False))
    assert not (tmp_path / "report").exists()


def test_a_malformed_heatmap_index_is_a_note_not_a_traceback(world, run, tmp_path):
    (run / "heatmaps").mkdir()
    (run / "heatmaps" / "index.json").write_text(json.dumps({"latents": {"3": {"img": [["r0"]]}}}))
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)
    info = write_report(ex, tmp_path / "report", ReportSettings(progress=False))
    assert any("is not an index sparc wrote" in n for n in info.notes)


def test_report_publishes_no_markdown_linked_from_outside_the_run(world, run, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("password")
    (run / "localisation-x").mkdir()
    (run / "localisation-x" / "table.md").symlink_to(secret)
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)
    with pytest.raises(SparcError, match="outside .*refusing it"):
        write_report(ex, tmp_path / "report", ReportSettings(progress=False))


# ---------------------------------------------------------------- 3. --overwrite by names


def test_overwrite_spares_a_model_folder_that_only_looks_like_a_run(store, tmp_path, capsys):
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (hf / "model.safetensors").write_bytes(b"weights")
    code = main(["train", str(store), "--out", str(hf), "--overwrite", "--max-steps", "1", *SMALL])
    assert code == 2 and "no sparc marker" in one_line(capsys.readouterr().err)
    assert (hf / "model.safetensors").read_bytes() == b"weights"


def test_overwrite_replaces_a_marked_run(store, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 0
    assert json.loads((out / ".sparc.json").read_text())["kind"] == "run"
    assert main(["train", str(store), "--out", str(out), "--overwrite", "--max-steps", "2", *SMALL]) == 0


def test_a_marker_of_another_kind_is_not_a_run(store, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["train", str(store), "--out", str(tmp_path / "run"), "--max-steps", "1", *SMALL]) == 0
    assert main(["eval", str(tmp_path / "run"), "--out", str(out), "--no-plots", "--no-progress",
                 "--retrieval-queries", "20"]) == 0
    capsys.readouterr()
    code = main(["train", str(store), "--out", str(out), "--overwrite", "--max-steps", "1", *SMALL])
    assert code == 2 and "its marker says evaluation" in one_line(capsys.readouterr().err)
    assert (out / "eval.json").exists()


# ---------------------------------------------------------------- 6. killed before the first checkpoint


def killed_before_the_first_checkpoint(store, out):
    """What a kill during the first steps leaves: the marked folder and its settings."""
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 0
    for name in ("checkpoint", "model.safetensors", "config.json", "metrics.jsonl"):
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_before_its_first_checkpoint_starts_again(store, tmp_path, capsys, resume):
    out = tmp_path / "run"
    killed_before_the_first_checkpoint(store, out)
    capsys.readouterr()
    args = ["train", str(store), "--out", str(out), *(["--resume"] if resume else ["--max-steps", "1", *SMALL])]
    assert main(args) == 0
    assert "stopped before its first checkpoint; starting it again from step 0" in capsys.readouterr().err
    assert (out / "model.safetensors").exists()
    assert json.loads((out / ".sparc.json").read_text())["kind"] == "run"  # still sparc's after the restart


def test_a_run_with_weights_but_no_config_is_not_restarted(store, tmp_path, capsys):
    out = tmp_path / "run"
    killed_before_the_first_checkpoint(store, out)
    (out / "model.safetensors").write_bytes(b"weights")
    capsys.readouterr()
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 2
    assert (out / "model.safetensors").read_bytes() == b"weights"


def test_a_mistyped_out_loses_no_hidden_file(store, tmp_path, capsys):
    project = tmp_path / "project"
    (project / ".photos.old").mkdir(parents=True)
    (project / ".photos.old" / "a.jpg").write_bytes(b"jpeg")
    (project / ".cache.tmp").write_text("mine")
    assert main(["train", str(store), "--out", str(project), "--max-steps", "1", *SMALL]) == 2
    assert (project / ".photos.old" / "a.jpg").exists() and (project / ".cache.tmp").exists()


def test_sigterm_stops_a_training_after_its_step_with_a_checkpoint(store, tmp_path):
    from tests.train.test_interruptions import run_killed

    out = tmp_path / "run"
    code = """
        import signal
        from sparc.train.trainer import Trainer
        step = Trainer.step
        def terminated(self, batch):
            out = step(self, batch)
            if self.step_count == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return out
        Trainer.step = terminated
    """
    done = run_killed(code, "train", str(store), "--out", str(out), "--epochs", "3", "--log-every", "1", *SMALL)
    assert done.returncode == 130 and "interrupted at step 4" in done.stderr and "--resume" in done.stderr
    state = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert state["step"] == 4 and (out / "checkpoint").is_dir()
    assert main(["train", str(store), "--out", str(out), "--resume"]) == 0


def test_a_users_folder_with_a_settings_file_is_still_not_restarted(store, tmp_path, capsys):
    out = tmp_path / "run"
    killed_before_the_first_checkpoint(store, out)
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 2
    assert "not empty" in one_line(capsys.readouterr().err) and (out / "notes.txt").exists()


# ---------------------------------------------------------------- 4. sizes from untrusted configs


@pytest.mark.parametrize("n_latents", [10**12, 5 * 10**7])
def test_a_config_cannot_make_sparc_allocate_what_the_weights_do_not_hold(store, tmp_path, n_latents):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["config"]["n_latents"] = n_latents
    (out / "config.json").write_text(json.dumps(cfg))
    import resource
    import subprocess
    import sys

    def limit():  # 8 GiB of address space: far below what the config asks for
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))

    done = subprocess.run([sys.executable, "-m", "sparc.cli.main", "info", str(out)], capture_output=True,
                          text=True, preexec_fn=limit, timeout=120)
    line = one_line(done.stderr)
    assert done.returncode == 2 and "tensor W_enc has shape (32," in line and "do not belong together" in line


# ---------------------------------------------------------------- 6. NaN in a store's features


def test_nan_in_the_features_is_named_as_such_not_as_a_divergence(tmp_path, capsys):
    import numpy as np

    from sparc.data import FeatureStore

    path = make_store(tmp_path / "store", n_rows=200)
    store = FeatureStore.open(path)
    feats = next(p for p in (path / "features").iterdir() if p.name.startswith("clip_img"))
    x = np.load(feats, mmap_mode="r+")
    x[:, 3] = np.nan  # every row of one stream
    x.flush()
    del x
    assert store.n_rows == 200
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "--max-steps", "2", *SMALL])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "features hold NaN or Inf at step 1" in line and "stream clip_img" in line
    assert "store rows" in line and "diverged" not in line and "--drop-nonfinite" in line


# ---------------------------------------------------------------- 5. images just under Pillow's limit


def blank_png(path, width: int, height: int) -> None:
    """A white RGB PNG of any size, written row by row (a few hundred KB on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\0" + b"\xff" * (3 * width)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def peak_rss_of_read_image(path) -> tuple[int, str]:
    """(growth of the peak RSS in MB while reading ``path``, what came out), in a fresh process."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "from sparc.errors import SparcError\n"
        "from sparc.explore.sources import read_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    out = 'size %dx%d' % read_image(sys.argv[1]).size\n"
        "except SparcError as e:\n"
        "    out = str(e)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
        "print(out)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grew, out = done.stdout.strip().splitlines()
    return int(grew), out


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path):
    big = tmp_path / "big.png"
    blank_png(big, 12000, 12000)  # 144 Mpx, under Pillow's own limit; 432 MB decoded
    assert big.stat().st_size < 1 << 20
    grew, out = peak_rss_of_read_image(big)
    assert "12000×12000 (144 Mpx), over the limit of 40 Mpx" in out and "SPARC_MAX_IMAGE_PIXELS" in out
    assert grew < 100, f"reading the header grew the peak memory by {grew} MB"


def test_a_large_image_under_the_limit_is_scaled_down_with_bounded_memory(tmp_path):
    large = tmp_path / "large.png"
    blank_png(large, 6000, 5000)  # 30 Mpx: 90 MB decoded
    grew, out = peak_rss_of_read_image(large)
    assert out == "size 2048x1707"
    assert grew < 3 * 30 * 2 + 50, f"reading a 30 Mpx image grew the peak memory by {grew} MB"


def test_the_pixel_limit_is_configurable_and_checked(tmp_path, monkeypatch):
    from sparc.explore.sources import read_image

    small = tmp_path / "small.png"
    blank_png(small, 300, 200)
    monkeypatch.setenv("SPARC_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(SparcError, match="over the limit of 0.05 Mpx"):
        read_image(small)
    monkeypatch.setenv("SPARC_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(SparcError, match="^SPARC_MAX_IMAGE_PIXELS must be an integer, got 'lots'$"):
        read_image(small)
    monkeypatch.setenv("SPARC_MAX_IMAGE_PIXELS", "0")
    with pytest.raises(SparcError, match="^SPARC_MAX_IMAGE_PIXELS must be a positive number of pixels, got 0$"):
        read_image(small)
    monkeypatch.delenv("SPARC_MAX_IMAGE_PIXELS")
    assert read_image(small).size == (300, 200) and read_image(small, max_side=100).size == (100, 67)


# ---------------------------------------------------------------- 6. temporaries of killed writers


def test_a_killed_reports_temporary_folder_is_removed_by_the_next_report(world, run, tmp_path):
    out = tmp_path / "report"
    left = tmp_path / ".report.k1ll3d.tmp"  # what SIGKILL leaves mid-write
    (left / "data").mkdir(parents=True)
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)
    write_report(ex, out, ReportSettings(progress=False))
    assert not left.exists() and (out / "index.html").exists()
    assert not list(tmp_path.glob(".report.*"))  # no temporary and no lock left


def test_sigterm_during_a_report_leaves_no_temporary(world, run, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "report"
    code = (
        "import os, signal, sys\n"
        "import sparc.explore.report.build as b\n"
        "real = b._thumbnails\n"
        "def stop(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "b._thumbnails = stop\n"
        "from sparc.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, "report", str(run), "--store", str(world["store"]), "--out",
                           str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 130 and "interrupted" in done.stderr, done.stderr
    assert not out.exists() and not list(tmp_path.glob(".report.*"))


# ---------------------------------------------------------------- 2. what `sparc push` publishes


def test_push_publishes_no_file_linked_from_outside_the_run(store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(store), "--out", str(out), "--max-steps", "1", *SMALL]) == 0
    assert main(["eval", str(out), "--no-plots", "--no-progress", "--retrieval-queries", "20"]) == 0
    secret = tmp_path / "id_rsa"
    secret.write_text("private key")
    (out / "eval-test" / "plots").mkdir()
    (out / "eval-test" / "plots" / "firing.png").symlink_to(secret)
    capsys.readouterr()
    assert main(["push", str(out), "someone/sparc-tiny"]) == 2  # refused before any network call
    line = one_line(capsys.readouterr().err)
    assert "eval-test/plots/firing.png" in line and "outside" in line


def test_stats_remove_a_killed_writers_temporaries(world, run):
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)  # computes and saves them
    directory = next(run.glob("explore-*"))
    left = directory / ".stats.safetensors.k1ll3d.tmp"
    left.write_bytes(b"half")
    ex.stats.save(directory)
    assert not left.exists() and not list(run.glob(".explore-*.lock"))


def test_import_checkpoint_overwrite_spares_a_folder_it_did_not_make(tmp_path, capsys):
    import torch

    from sparc.model import SPARC, SPARCConfig
    from sparc.model.reference import to_reference

    torch.save(to_reference(SPARC({"a": 6, "b": 5}, SPARCConfig(n_latents=16, k=2))), tmp_path / "msae_checkpoint.pth")
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "clip"}))
    args = ["import-checkpoint", str(tmp_path / "msae_checkpoint.pth"), "--topk", "global", "--k", "2", "--out"]
    assert main([*args, str(hf), "--overwrite"]) == 2
    assert "no sparc marker" in one_line(capsys.readouterr().err)
    assert json.loads((hf / "config.json").read_text()) == {"model_type": "clip"}
    assert main([*args, str(tmp_path / "m")]) == 0 and main([*args, str(tmp_path / "m"), "--overwrite"]) == 0
