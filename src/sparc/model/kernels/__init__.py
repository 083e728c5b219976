"""Sparse kernels of the efficient formulation (docs/method.md §4): one interface,
:class:`~sparc.model.kernels.base.Kernels`, and one implementation per path.

- ``fused`` — :class:`.fused.FusedKernels`, parallel numba kernels for float32/float64
  on the CPU (:mod:`.numba_sparse`, :mod:`.numba_bf16`, :mod:`.numba_adam`);
- ``triton`` — :class:`.triton.TritonKernels`, Triton kernels for float32/bfloat16/float16
  on a CUDA GPU when Triton imports (``pip install 'sparc-sae[gpu]'``); imported only
  then, so a CPU-only process never imports Triton;
- ``pytorch`` — :class:`.pytorch.PyTorchKernels`, PyTorch ops: every device and dtype,
  and the oracle the other paths are tested against.

A path is a property of a model, not of the process: :func:`resolve` decides it from a
*choice* (``auto``, ``fused``, ``triton``, ``pytorch``), the weights' device and dtype,
and what imports here; a model keeps its choice (:meth:`sparc.model.SPARC.use_kernels`),
a run records the path it resolved to (:mod:`sparc.train.backend`). ``SPARC_KERNELS``
only supplies the default choice of a model built without one. ``fused`` or ``triton``
chosen where it cannot run is a one-line error where the choice is used (:func:`check`:
``SPARC.use_kernels``, a run's backend); ``auto`` falls back to
the PyTorch kernels (with a one-line notice when numba is missing). With ``triton``
chosen and Triton's interpreter on (``TRITON_INTERPRET=1``, for tests), CPU tensors take
the Triton kernels.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import torch

from sparc.errors import SparcError
from sparc.model.kernels.base import Kernels, TableStep
from sparc.model.kernels.pytorch import PyTorchKernels, block_bounds, csr_tensor, row_mask, uniform_crow
from sparc.options import env_choice

__all__ = ["Kernels", "TableStep", "CHOICES", "default_choice", "resolve", "check", "implementation",
           "kernels_for", "csr_tensor", "uniform_crow", "block_bounds", "row_mask"]

CHOICES = ("auto", "fused", "pytorch", "triton")
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_FUSED_DTYPES = (torch.float32, torch.float64)


def default_choice() -> str:
    """The choice of a model built without one: ``SPARC_KERNELS``, else ``auto``."""
    return env_choice("SPARC_KERNELS", CHOICES)


@functools.cache
def _load(path: str) -> tuple[type | None, str]:
    """(the implementation class of ``path``, "") or (None, why in one line): numba or
    Triton may be missing or fail to initialise. Tried once per process."""
    module, cls = {"fused": ("sparc.model.kernels.fused", "FusedKernels"),
                   "triton": ("sparc.model.kernels.triton", "TritonKernels")}[path]
    try:
        return getattr(importlib.import_module(module), cls), ""
    except Exception as e:  # ImportError, or the library failing to initialise
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        if path == "fused" and default_choice() != "pytorch":
            print(f"sparc: fused CPU kernels unavailable ({why}); using the slower PyTorch kernels "
                  "(pip install numba)", file=sys.stderr)
        return None, why


def _triton_runs(kind: str, choice: str) -> tuple[bool, str]:
    """Whether the Triton kernels run on device type ``kind`` (and why not): a CUDA GPU,
    or the CPU under Triton's interpreter with ``triton`` chosen (for tests). The checks
    come before the import, so a CPU-only process never imports Triton unless asked to."""
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False, "no CUDA GPU"
        cls, why = _load("triton")
        return cls is not None, why
    if kind == "cpu" and choice == "triton" and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        cls, why = _load("triton")
        if cls is None:
            return False, why
        from sparc.model.kernels import triton_gpu

        return triton_gpu.INTERPRETED, "Triton's interpreter is off"
    return False, "no CUDA GPU"


def resolve(choice: str, device: torch.device | str, dtype: torch.dtype) -> str:
    """``"fused"``, ``"triton"`` or ``"pytorch"``: the path that runs for weights on
    ``device`` of ``dtype`` under ``choice`` (CPU float32/float64 get the fused kernels
    where numba loads, CUDA float32/bfloat16/float16 the Triton kernels where Triton
    imports; a forced path that cannot serve these weights gives the next that can)."""
    if choice not in CHOICES:
        raise SparcError(f"kernels must be one of {', '.join(CHOICES)}, got {choice!r}")
    kind = torch.device(device).type
    if choice != "pytorch" and dtype in _TRITON_DTYPES and _triton_runs(kind, choice)[0]:
        return "triton"
    if choice == "pytorch" or kind != "cpu" or dtype not in _FUSED_DTYPES or _load("fused")[0] is None:
        return "pytorch"
    return "fused"


def check(choice: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """:func:`resolve`, or a one-line error when ``fused`` or ``triton`` is chosen and
    cannot run for these weights."""
    path = resolve(choice, device, dtype)
    if choice in ("fused", "triton") and path != choice:
        kind = torch.device(device).type
        if choice == "fused":
            why = _load("fused")[1] or f"they run on CPU float32/float64 weights, not {kind} {dtype}"
            raise SparcError(f"the fused CPU kernels cannot run here ({why}); install numba "
                             "(pip install numba) or choose the pytorch kernels")
        why = _triton_runs(kind, choice)[1] if dtype in _TRITON_DTYPES else f"not for {dtype}"
        raise SparcError(f"the Triton GPU kernels cannot run here ({why}); they need a CUDA GPU and: "
                         "pip install 'sparc-sae[gpu]'")
    return path


@functools.cache
def implementation(path: str) -> Kernels:
    """The kernels of ``path`` (as :func:`resolve` gives it); stateless, so one per process."""
    if path == "pytorch":
        return PyTorchKernels()
    cls, why = _load(path)
    if cls is None:
        raise SparcError(f"the {path} kernels cannot load ({why})")
    return cls()


def kernels_for(device: torch.device | str, dtype: torch.dtype, choice: str | None = None) -> Kernels:
    """The kernels that run for weights on ``device`` of ``dtype`` under ``choice``
    (default: :func:`default_choice`)."""
    return implementation(resolve(default_choice() if choice is None else choice, device, dtype))
