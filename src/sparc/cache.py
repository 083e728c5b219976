"""Where sparc keeps what it can make again (rendered images, the OpenMP link)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SPARC_CACHE`` or ``$XDG_CACHE_HOME/sparc`` or ``~/.cache/sparc``."""
    if os.environ.get("SPARC_CACHE"):
        return Path(os.environ["SPARC_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sparc"
