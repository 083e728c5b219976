"""Helpers for the data tests: small random stores and leftover-file checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparc.data import RowMeta, StoreWriter
from sparc.errors import SparcError

DIMS = {"dino": 6, "clip_img": 4, "clip_txt": 4}


def random_features(n: int, dims: dict[str, int] = DIMS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(n, d)).astype(np.float32) for name, d in dims.items()}


def simple_meta(n: int, rows_per_group: int = 3) -> list[RowMeta]:
    return [
        RowMeta(f"r{i}", group_id=f"g{i // rows_per_group}", image=f"img{i // rows_per_group}.jpg",
                caption=f"caption {i}", labels=("cat",) if i % 2 else ("dog", "cat") if i % 3 == 0 else ())
        for i in range(n)
    ]


def write(path: Path, feats: dict[str, np.ndarray], meta: list[RowMeta], batch: int = 7, **kw) -> Path:
    """Write a store in several appends of ``batch`` rows."""
    dims = {name: x.shape[1] for name, x in feats.items()}
    with StoreWriter(path, dims, **kw) as w:
        for a in range(0, len(meta), batch):
            w.append({name: x[a : a + batch] for name, x in feats.items()}, meta[a : a + batch])
    return path


def assert_clean_failure(
    excinfo: pytest.ExceptionInfo[SparcError], target: Path, before: set[str] | None = None
) -> None:
    """The error is a one-line SparcError and nothing (not even a temp dir) was left."""
    assert isinstance(excinfo.value, SparcError)
    assert "\n" not in str(excinfo.value) and str(excinfo.value)
    parent = target.parent
    left = {p.name for p in parent.iterdir()} - (before or set())
    assert not any(name.startswith(f".{target.name}.") for name in left), left
    if before is None or target.name not in before:
        assert not target.exists()
