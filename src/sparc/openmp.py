"""One OpenMP runtime, waiting passively: training stays fast beside other work.

A process that trains on the CPU holds two OpenMP thread pools: PyTorch's, on its own
copy of GNU OpenMP (``torch/lib/libgomp.so.1``), and numba's ``omp`` threading layer,
whose ``omppool`` asks the loader for the system's ``libgomp.so.1.0.0`` by that file
name — a second runtime with a second team of threads. GNU OpenMP's threads busy-wait at
every barrier, so beside another busy process the two teams spin while the threads they
wait for are descheduled: training ran up to 10× slower (BENCHMARKS.md, "Beside other
work"). What the measurements there chose:

- **one runtime for both pools**: a folder holding a link named as numba asks
  (``libgomp.so.1.0.0``) to PyTorch's copy, first on ``LD_LIBRARY_PATH``; the loader then
  finds that file already mapped and both pools share one runtime and one team;
- **passive waiting** (``OMP_WAIT_POLICY=PASSIVE``): a waiting thread sleeps instead of
  spinning, so a busy neighbour takes its core instead of stalling us.

Both are read when the process starts, so the ``sparc`` command starts itself again with
them (:func:`restart_with_one_runtime`) before anything is loaded. A setting the user made
stays (their ``OMP_WAIT_POLICY``); ``SPARC_OPENMP=as-is`` leaves the process as it was
started. A library user sets the variables before starting Python: ``python -m
sparc.openmp`` prints them as shell lines. README, "Running beside other work".
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

from sparc.cache import cache_root

OPT_OUT = "SPARC_OPENMP"
"""Set to ``as-is`` to keep the OpenMP runtimes and waiting the process started with."""
RESTARTED = "SPARC_OPENMP_RESTARTED"
"""Set in the restarted process, so that it never restarts twice."""


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def torch_runtime() -> Path | None:
    """PyTorch's own GNU OpenMP library (wheels for Linux ship one), or None."""
    folder = _package_dir("torch")
    if folder is None:
        return None
    found = sorted((folder / "lib").glob("libgomp*.so*"))
    return found[0] if found else None


def numba_runtime_name() -> str | None:
    """The file name numba's OpenMP pool asks the loader for (``libgomp.so.1.0.0`` in the
    wheels on PyPI), or None when numba or its OpenMP pool is absent or uses another runtime."""
    folder = _package_dir("numba")
    if folder is None:
        return None
    for pool in sorted((folder / "np" / "ufunc").glob("omppool*.so")):
        for name in needed_libraries(pool.read_bytes()):
            if name.startswith("libgomp"):
                return name
    return None


def needed_libraries(elf: bytes) -> list[str]:
    """The libraries a 64-bit little-endian ELF file names as needed (its DT_NEEDED
    entries, what ``readelf -d`` lists); empty for anything else."""
    import struct

    if elf[:6] != b"\x7fELF\x02\x01":
        return []
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 1:  # PT_LOAD: how addresses map to the file
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entries = [struct.unpack_from("<qQ", elf, dynamic[0] + j) for j in range(0, dynamic[1], 16)]
    strtab = next((value for tag, value in entries if tag == 5), None)  # DT_STRTAB, an address
    base = next((off + strtab - vaddr for vaddr, off, size in loads if vaddr <= (strtab or -1) < vaddr + size), None)
    if base is None:
        return []
    return [elf[base + value:elf.index(b"\x00", base + value)].decode() for tag, value in entries if tag == 1]


def link_folder(root: Path | None = None) -> Path | None:
    """A folder whose file named as numba asks is a link to PyTorch's runtime (made once,
    under sparc's cache), or None when the two already share one or either is absent."""
    torch_lib, wanted = torch_runtime(), numba_runtime_name()
    if torch_lib is None or wanted is None or wanted in (torch_lib.name, "libgomp.so.1"):
        return None  # nothing to join (a request for libgomp.so.1 finds PyTorch's by its soname)
    folder = (root or cache_root()) / "openmp" / _tag(torch_lib)
    link = folder / wanted
    try:
        if link.resolve() != torch_lib.resolve():
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{wanted}.{os.getpid()}"
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(torch_lib)
            os.replace(temporary, link)  # atomic: a concurrent start sees the old link or the new
    except OSError:
        return None  # a read-only cache: two runtimes, as without sparc
    return folder


def _tag(path: Path) -> str:
    """A folder name per PyTorch install (two environments, two links)."""
    import hashlib

    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def environment(root: Path | None = None) -> dict[str, str]:
    """The variables :func:`restart_with_one_runtime` sets: ``LD_LIBRARY_PATH`` with the
    link folder first (when there is one to make), ``OMP_WAIT_POLICY=PASSIVE`` unless the
    user chose a policy. Only the changes from this process's environment."""
    changes: dict[str, str] = {}
    folder = link_folder(root)
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if folder is not None and (not paths or paths[0] != str(folder)):
        changes["LD_LIBRARY_PATH"] = ":".join([str(folder), *(p for p in paths if p != str(folder))])
    if not os.environ.get("OMP_WAIT_POLICY", "").strip():
        changes["OMP_WAIT_POLICY"] = "PASSIVE"
    return changes


def restart_with_one_runtime() -> None:
    """Start this process again (same interpreter, same arguments, same PID) with
    :func:`environment`'s settings, unless they are in place, the user opted out
    (``SPARC_OPENMP=as-is``), it is not Linux, or PyTorch or numba are loaded already
    (their runtimes then are what they are). Returns only when nothing is to be done."""
    if (sys.platform != "linux" or os.environ.get(RESTARTED) or os.environ.get(OPT_OUT, "").strip() == "as-is"
            or "torch" in sys.modules or "numba" in sys.modules):
        return
    changes = environment()
    if not changes:
        return
    argv = list(getattr(sys, "orig_argv", []))
    if not argv or sys.argv[0] in ("", "-"):
        return  # an interactive session or a script read from stdin cannot be started again
    env = {**os.environ, **changes, RESTARTED: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # run as started


def loaded_runtimes() -> list[str]:
    """The OpenMP libraries mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            names = {line.split()[-1] for line in maps if re.search(r"lib(g|i)?omp[^/]*\.so", line)}
    except OSError:
        return []
    return sorted(names)


def describe() -> str:
    """One line on this process's OpenMP: the runtimes loaded and the waiting policy."""
    runtimes = loaded_runtimes()
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip() or "active (OpenMP's default)"
    return f"OpenMP runtimes loaded: {len(runtimes)} ({', '.join(runtimes) or 'none'}); waiting: {policy.lower()}"


def main() -> None:
    """Print the settings as shell lines (``eval "$(python -m sparc.openmp)"``)."""
    import shlex

    for name, value in environment().items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
