"""The report tests' browser: headless Chromium (Debian's package) driven by Playwright.

Outside CI a test that needs it is skipped when no browser is found; in CI (CI=true) it
must run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _chromium() -> str | None:
    for candidate in (os.environ.get("SPARC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    return None


@pytest.fixture(scope="module")
def browser():
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci:
            pytest.fail("CI must run the browser test: pip install playwright (the test extra)")
        pytest.skip("no browser test: Playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        if in_ci:
            pytest.fail("CI must run the browser test: install Chromium (apt-get install chromium)")
        pytest.skip("no browser test: no Chromium found (apt-get install chromium, or set SPARC_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()
