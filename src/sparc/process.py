"""Process-wide memory settings for CPU training, made by the ``sparc`` command at its
start (never on import: importing sparc changes no process state, tests/test_import.py).

A training step frees and allocates the same large tensors every step (logits, decodes,
their gradients: tens of MB each). glibc hands blocks over 128 KiB–32 MiB back to the
kernel with ``munmap`` and maps fresh pages for the next step, which the kernel must
zero on first touch: tens of milliseconds per step on a 2-core machine, and worse with
huge pages under ``defrag=madvise`` (the kernel compacts memory synchronously on the
fault). Raising glibc's mmap and trim thresholds keeps freed blocks in the heap for
reuse, so a steady training loop touches no fresh pages (BENCHMARKS.md, "Training step").
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # blocks up to 1 GiB come from (and return to) the heap


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks of up to 1 GiB for reuse instead of unmapping them.
    Returns whether it took effect (False on other C libraries)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
