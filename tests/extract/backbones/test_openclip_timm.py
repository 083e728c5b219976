"""open-clip and dinov2-timm on random-weight architectures built offline.

open_clip and timm import torchvision when they are imported. Where they import, the
checks run here, in-process (and compare our pixels with open_clip's own transform).
Where they are installed but cannot be imported because torchvision is missing or does
not match torch (as with the CPU torch wheel and PyPI's CUDA torchvision wheel), the
same checks run in a subprocess with a test-only torchvision stand-in (see
``torchvision_stub.py``): building the models, tokenising and the forward passes
never touch torchvision, so this still runs sparc's code path on the real libraries.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extract.backbones import oc_timm_checks as checks
from tests.extract.backbones.oc_timm_checks import importable

HERE = Path(__file__).parent


OPEN_CLIP_PROBLEM = importable("open_clip", "open-clip", "open_clip_torch")
TIMM_PROBLEM = importable("timm", "timm", "timm")


def torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.skipif(OPEN_CLIP_PROBLEM is not None, reason=f"open_clip cannot be imported here: {OPEN_CLIP_PROBLEM}")
@pytest.mark.parametrize("check", checks.OPEN_CLIP_CHECKS)
def test_open_clip(check, tmp_path):
    getattr(checks, check)(tmp_path, real_torchvision=torchvision_works())


@pytest.mark.skipif(TIMM_PROBLEM is not None, reason=f"timm cannot be imported here: {TIMM_PROBLEM}")
@pytest.mark.parametrize("check", checks.TIMM_CHECKS)
def test_timm(check, tmp_path):
    getattr(checks, check)(tmp_path, real_torchvision=torchvision_works())


def _stub_reason(problem: str | None, dist_module: str, dist: str) -> str | None:
    """Why the stubbed run does not apply (None: run it)."""
    if problem is None:
        return f"{dist_module} imports here; the in-process tests cover it"
    if importlib.util.find_spec(dist_module) is None:
        return f"{dist} is not installed"
    if "torchvision" not in problem:
        return f"{dist_module} fails for another reason than torchvision: {problem}"
    return None


def test_with_torchvision_stub(tmp_path):
    """Both libraries' checks in one subprocess (their imports cost seconds each)."""
    names: list[str] = []
    reasons: list[str] = []
    for group, problem, module, dist in [
        (checks.OPEN_CLIP_CHECKS, OPEN_CLIP_PROBLEM, "open_clip", "open_clip_torch"),
        (checks.TIMM_CHECKS, TIMM_PROBLEM, "timm", "timm"),
    ]:
        reason = _stub_reason(problem, module, dist)
        if reason is None:
            names += group
        else:
            reasons.append(reason)
    if not names:
        pytest.skip("; ".join(reasons))
    run = subprocess.run(
        [sys.executable, str(HERE / "run_stubbed.py"), str(tmp_path), *names],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count("PASS ") == len(names)
