"""Reading PyTorch ``.pth``/``.pt`` files without running code from them.

``torch.load(..., weights_only=True)`` unpickles only tensors and plain containers; a
file that asks for anything else (e.g. ``posix.system``: a pickle that would run a
command) is refused. This module turns each way the load can fail into one line that
says why.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from sparc.errors import SparcError


def load_weights_only(path: str | Path, what: str) -> Any:
    """The tensors and containers in ``path``; a one-line SparcError saying why not.

    ``what`` names the file for messages ("checkpoint", "trainer state", ...).
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SparcError(f"{what} {path} does not exist") from None
    except pickle.UnpicklingError as e:
        found = re.search(r"unsupported GLOBAL (\S+)", str(e)) or re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if "Weights only load failed" in str(e) and found:
            raise SparcError(
                f"refusing {what} {path}: it asks to run Python code ({found.group(1)}), not only to load "
                "tensors; load files only from sources you trust, and never this one") from None
        raise SparcError(f"cannot read {what} {path}: it is not a PyTorch file of tensors or it is cut off "
                         f"({type(e).__name__})") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise SparcError(f"cannot read {what} {path}: it is not a PyTorch file or it is cut off "
                         f"({type(e).__name__})") from None
