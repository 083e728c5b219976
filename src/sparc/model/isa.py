"""The instruction set the kernels run with, as capped by the environment.

Results must not depend on it (docs/method.md §4.3), and CI proves it by running the
kernel tests twice: natively and with every library capped to AVX2 (``.ci/run``):

- numba compiles for ``NUMBA_CPU_NAME`` with ``NUMBA_CPU_FEATURES`` (empty: that CPU's
  own features; unset: the host's, AVX-512 included);
- PyTorch's vectorised kernels follow ``ATEN_CPU_CAPABILITY``;
- oneDNN, which runs bf16 products on the CPU, follows ``ONEDNN_MAX_CPU_ISA``;
- MKL's float32 products follow ``MKL_ENABLE_INSTRUCTIONS``.

:func:`summary` says which took effect (the test run prints it in its header).
"""

from __future__ import annotations

import os

import torch

_ONEDNN_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def onednn_cap() -> str | None:
    """oneDNN's instruction-set cap from the environment (upper case), or None."""
    for var in _ONEDNN_CAP_VARS:
        value = os.environ.get(var, "").strip().upper()
        if value:
            return value
    return None


def onednn_allows_bf16() -> bool:
    """Whether oneDNN may use bf16 dot-product instructions (AVX512-BF16, AMX): no cap,
    or a cap at or above AVX512_CORE_BF16 (its later names: FP16, AMX, AVX10)."""
    cap = onednn_cap()
    return cap is None or cap == "ALL" or any(tag in cap for tag in ("BF16", "FP16", "AMX", "AVX10"))


def numba_target() -> str:
    """numba's target CPU and whose features it compiles for, or why there is none."""
    try:
        from numba.core import config
    except ImportError:
        return "numba not installed"
    import llvmlite.binding as llvm

    name = config.CPU_NAME or llvm.get_host_cpu_name()
    if config.CPU_FEATURES is None:
        features = llvm.get_host_cpu_features().flatten().split(",")
        avx512 = "+avx512f" in features
        return f"{name} (host features, {'with' if avx512 else 'no'} AVX-512)"
    return f"{name} ({'its own features' if not config.CPU_FEATURES else 'features ' + config.CPU_FEATURES})"


def summary() -> str:
    """One line: what each library runs with on this CPU under this environment."""
    from sparc.model import certified

    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "") or "none"
    return (f"numba target {numba_target()}; ATen {torch.backends.cpu.get_cpu_capability()}; "
            f"oneDNN cap {onednn_cap() or 'none'}; MKL cap {mkl}; "
            f"bf16 selection auto: {certified.resolve('auto', 'cpu')}")
