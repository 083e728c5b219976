"""Fixtures for the dataset adapter tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.extract.datasets.helpers import make_image


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """tmp/imgs with a.png, b.png, sub/c.png."""
    root = tmp_path / "imgs"
    make_image(root / "a.png", (255, 0, 0))
    make_image(root / "b.png", (0, 255, 0))
    make_image(root / "sub" / "c.png", (0, 0, 255))
    return root
