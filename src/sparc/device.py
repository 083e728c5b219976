"""Checking a device name before any work starts."""

from __future__ import annotations

import torch

from sparc.errors import SparcError


def check_device(name: str) -> str:
    """``name`` if it is a torch device this machine has; else a one-line SparcError."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SparcError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SparcError(f"device {name!r} asked for, but this machine has no CUDA GPU usable by "
                             f"PyTorch {torch.__version__}; use --device cpu or a CUDA build of PyTorch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SparcError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                             "CUDA GPU(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise SparcError(f"device {name!r} asked for, but MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise SparcError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
    return name
