"""Fixtures for the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.data.helpers import DIMS, random_features, simple_meta, write


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_store(n, name="store", **writer_kwargs)`` -> store path."""

    def make(n: int = 50, name: str = "store", dims: dict[str, int] = DIMS, seed: int = 0, **kw) -> Path:
        return write(tmp_path / name, random_features(n, dims, seed), simple_meta(n), **kw)

    return make
