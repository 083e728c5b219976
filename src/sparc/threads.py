"""How many threads sparc's compute pools start: the CPUs this process may use.

A process confined by ``taskset`` (its CPU affinity) or by a container's CPU quota
(cgroup ``cpu.max``; ``cpu.cfs_quota_us`` under cgroup v1) that starts one thread per
core of the machine oversubscribes what it was given: its threads wait on each other
at every parallel region. So the budget is the smaller of the CPUs in the affinity mask
and the quota rounded up, and every pool — PyTorch's OpenMP threads, numba's pool (the
system's OpenMP runtime, a second one in the process), MKL's — is sized to it; the ranks
that torchrun starts on one machine share it.

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
        # v2: one hierarchy at the root; v1: the cpu controller's own mount.
        for base in (root / "cpu", root / "cpu,cpuacct", root / controllers) if controllers else (root,):
            leaf = base / path.lstrip("/")
            if not leaf.is_dir():
                # cgroup v1 without a cgroup namespace (Docker's default there): the
                # container sees its own group mounted at the controller's folder.
                if controllers and base.is_dir() and base not in paths:
                    paths.append(base)
                continue
            for folder in (leaf, *leaf.parents):
                if folder not in paths:
                    paths.append(folder)
                if folder == base:
                    break
    if not paths and root.is_dir():
        paths.append(root)
    return paths


WRITTEN: dict[str, str] = {}
"""The pool variables :func:`apply_budget` set in this process, so that a later budget
(the ``sparc`` command run again in one process) does not take them for the user's."""


def _users(var: str) -> str | None:
    """``var`` as the user set it: None when unset, empty, or last written by sparc."""
    value = os.environ.get(var, "").strip()
    return None if not value or WRITTEN.get(var) == value else value


def budget(requested: int | None = None, *, root: Path = CGROUP_ROOT) -> int:
    """Threads per pool: ``requested`` (``--threads``), else ``SPARC_THREADS``, else
    ``OMP_NUM_THREADS`` (its first number: OpenMP's nested form ``8,1`` counts 8), else
    the CPUs of the affinity mask capped by the cgroup quota (rounded up) — shared by the
    ranks that torchrun starts on this machine (``LOCAL_WORLD_SIZE``), whose own
    ``OMP_NUM_THREADS=1`` is not taken for a request — at least 1."""
    from sparc.errors import SparcError
    from sparc.options import env_value

    if requested is None and _users("SPARC_THREADS") is not None:
        requested = env_value("SPARC_THREADS", int, 0)
    ranks = _local_ranks()
    if requested is None and ranks == 1 and (omp := _users("OMP_NUM_THREADS")) is not None:
        first = omp.split(",")[0].strip()
        requested = int(first) if first.isdigit() and int(first) > 0 else None  # otherwise OpenMP's business
    if requested is not None:
        if requested < 1:
            raise SparcError(f"threads must be at least 1, got {requested}")
        return requested
    cpus = affinity_cpus()
    quota = quota_cpus(root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus // ranks)


def _local_ranks() -> int:
    """Processes torchrun starts on this machine (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def apply_budget(n: int) -> None:
    """Size every pool to ``n`` threads: through the environment for libraries not yet
    loaded (and the processes this one starts; a pool variable the user set stays), and
    directly for PyTorch and numba if they are loaded."""
    for var in POOL_VARIABLES:
        if _users(var) is not None and (var != "OMP_NUM_THREADS" or _local_ranks() == 1):
            continue  # the user's own (torchrun's OMP_NUM_THREADS=1 gives way to the ranks' share)
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba's pool is started; set_num_threads below masks it
        os.environ[var] = WRITTEN[var] = str(n)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        # After numba: starting numba's pool sets the OpenMP thread count PyTorch reads.
        sys.modules["torch"].set_num_threads(n)
