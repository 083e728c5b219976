"""open_clip and timm image towers (and open_clip's text tower): in-process where they
import, else in a subprocess with the test-only torchvision stand-in."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extract.backbones.oc_timm_checks import importable
from tests.localize import vit_stubbed

HERE = Path(__file__).parent


def test_open_clip_and_timm_vits():
    problems = {m: importable(m, e, p) for m, e, p in [("open_clip", "open-clip", "open_clip_torch"),
                                                      ("timm", "timm", "timm")]}
    if all(p is None for p in problems.values()):
        for name in vit_stubbed.CHECKS:
            getattr(vit_stubbed, name)()
        return
    missing = [m for m in problems if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    if any(p is not None and "torchvision" not in p for p in problems.values()):
        pytest.skip(f"open_clip / timm fail for another reason than torchvision: {problems}")
    run = subprocess.run([sys.executable, str(HERE / "vit_stubbed.py"), *vit_stubbed.CHECKS],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
