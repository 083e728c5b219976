"""How many threads sparc's compute pools start: the CPUs this process may use.

A process confined by ``taskset`` (its CPU affinity) or by a container's CPU quota
(cgroup ``cpu.max``; ``cpu.cfs_quota_us`` under cgroup v1) that starts one thread per
core of the machine oversubscribes what it was given: its threads wait on each other
at every parallel region. So the budget is the smaller of the CPUs in the affinity mask
and the quota rounded up, and every pool — PyTorch's intra-op threads, the OpenMP
runtime they and numba's kernels share, MKL's — is sized to it.

``sparc train --threads N`` (or ``SPARC_THREADS``, or the usual ``OMP_NUM_THREADS``)
overrides the budget. The ``sparc`` command applies the budget at its
start, before the libraries read their settings (:func:`apply_budget`); library users
call it themselves (importing sparc changes no process state). README, "Running beside
other work".
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
"""The environment variables that size the pools when the libraries start."""


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all of the machine's where it cannot be read)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quota_cpus(root: Path = CGROUP_ROOT, cgroup_lines: list[str] | None = None) -> float | None:
    """CPUs this process's cgroups let it use (quota / period, the smallest along its
    group's path up to ``root``), or None without a quota: cgroup v2's ``cpu.max``
    ("max 100000" or "150000 100000"), else v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.
    ``cgroup_lines``: the lines of ``/proc/self/cgroup`` (read when not given)."""
    quotas = [q for group in _group_paths(root, cgroup_lines) if (q := _quota_of(group)) is not None]
    return min(quotas) if quotas else None


def _quota_of(group: Path) -> float | None:
    try:
        fields = (group / "cpu.max").read_text().split()
    except OSError:
        fields = []
    if fields:
        return None if fields[0] == "max" else _ratio(fields[0], fields[1] if len(fields) > 1 else "100000")
    try:
        return _ratio((group / "cpu.cfs_quota_us").read_text(), (group / "cpu.cfs_period_us").read_text())
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None  # v1 writes -1 for no quota


def _group_paths(root: Path, lines: list[str] | None) -> list[Path]:
    """This process's cpu cgroup folders under ``root`` and every folder above them up to
    the hierarchy's root (a parent's quota limits its children)."""
    if lines is None:
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            lines = []
    paths: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers and "cpu" not in controllers.split(","):
            continue
        for base in (root, root / "cpu", root / "cpu,cpuacct") if controllers else (root,):
            leaf = base / path.lstrip("/")
            if not leaf.is_dir():
                continue
            for folder in (leaf, *leaf.parents):
                if folder not in paths:
                    paths.append(folder)
                if folder == base:
                    break
    if not paths and root.is_dir():
        paths.append(root)
    return paths


def budget(requested: int | None = None, *, root: Path = CGROUP_ROOT) -> int:
    """Threads per pool: ``requested`` (``--threads``), else ``SPARC_THREADS``, else
    ``OMP_NUM_THREADS``, else the CPUs of the affinity mask capped by the cgroup quota
    (rounded up), at least 1."""
    from sparc.options import env_value

    for var in ("SPARC_THREADS", "OMP_NUM_THREADS"):
        if requested is None:
            requested = env_value(var, int | None, None)
    if requested is not None:
        if requested < 1:
            from sparc.errors import SparcError

            raise SparcError(f"threads must be at least 1, got {requested}")
        return requested
    cpus = affinity_cpus()
    quota = quota_cpus(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def apply_budget(n: int) -> None:
    """Size every pool to ``n`` threads: through the environment for libraries not yet
    loaded (and the processes this one starts), and directly for PyTorch and numba if
    they are."""
    for var in POOL_VARIABLES:
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba's pool is started; set_num_threads below masks it
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
