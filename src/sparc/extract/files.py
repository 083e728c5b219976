"""File checks shared by the dataset adapters and the backbones."""

from __future__ import annotations

import os
from pathlib import Path

from sparc.errors import SparcError


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` (``~`` expanded), or a SparcError ``<what> not found: '<path>'``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SparcError(f"{what} not found: '{p}'")
    return p


def existing_dir(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` (``~`` expanded), or a SparcError ``<what> is not a directory: '<path>'``."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SparcError(f"{what} is not a directory: '{p}'")
    return p
