"""One OpenMP runtime, waiting passively (sparc/openmp.py): the ``sparc`` command starts
itself again so that numba's pool runs on PyTorch's runtime and waiting threads sleep."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sparc import openmp

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the loader's search path is Linux's")


def tiny_elf(needed: list[str]) -> bytes:
    """A 64-bit ELF file with one PT_LOAD, one PT_DYNAMIC and the DT_NEEDED entries given."""
    strtab = b"\x00" + b"".join(n.encode() + b"\x00" for n in needed)
    phoff, phnum = 64, 2
    dyn_off = phoff + 56 * phnum
    offsets, at = [], 1
    for n in needed:
        offsets.append(at)
        at += len(n) + 1
    entries = [(1, o) for o in offsets] + [(5, 0x1000 + dyn_off + 16 * (len(needed) + 2)), (0, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in entries)
    size = dyn_off + len(dynamic) + len(strtab)
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, phnum)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x1000, 0x1000, size, size, 0x1000)
    dyn = struct.pack("<IIQQQQQQ", 2, 6, dyn_off, 0x1000 + dyn_off, 0x1000 + dyn_off, len(dynamic), len(dynamic), 8)
    return bytes(header) + load + dyn + dynamic + strtab


def test_needed_libraries_read_from_the_dynamic_section_only():
    # A string that looks like a library elsewhere in the file is not a DT_NEEDED entry.
    elf = tiny_elf(["libdl.so.2", "libgomp.so.1.0.0"]) + b"\x00libgomp.so.1\x00"
    assert openmp.needed_libraries(elf) == ["libdl.so.2", "libgomp.so.1.0.0"]
    assert openmp.needed_libraries(b"not an ELF file") == []


def test_needed_libraries_of_a_real_library_as_readelf_lists_them():
    import shutil

    lib = openmp.torch_runtime()
    if lib is None or shutil.which("readelf") is None:
        pytest.skip("no PyTorch OpenMP library or no readelf here")
    listed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    expected = [line.split("[")[1].split("]")[0] for line in listed.splitlines() if "(NEEDED)" in line]
    assert openmp.needed_libraries(lib.read_bytes()) == expected


def test_environment_links_once_and_keeps_the_users_policy(tmp_path, monkeypatch):
    torch_lib = tmp_path / "torch" / "lib" / "libgomp.so.1"
    torch_lib.parent.mkdir(parents=True)
    torch_lib.write_bytes(b"")
    monkeypatch.setattr(openmp, "torch_runtime", lambda: torch_lib)
    monkeypatch.setattr(openmp, "numba_runtime_name", lambda: "libgomp.so.1.0.0")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    changes = openmp.environment(tmp_path / "cache")
    folder = Path(changes["LD_LIBRARY_PATH"].split(":")[0])
    assert changes == {"LD_LIBRARY_PATH": f"{folder}:/opt/lib", "OMP_WAIT_POLICY": "PASSIVE"}
    assert (folder / "libgomp.so.1.0.0").resolve() == torch_lib.resolve()
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    assert openmp.environment(tmp_path / "cache") == {}  # in place: nothing more to do
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stays
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/lib")
    assert openmp.environment(tmp_path / "cache") == {"LD_LIBRARY_PATH": f"{folder}:/opt/lib"}
    # Runtimes that already are one (numba asking for PyTorch's soname): no link.
    monkeypatch.setattr(openmp, "numba_runtime_name", lambda: "libgomp.so.1")
    assert openmp.link_folder(tmp_path / "cache") is None


CHILD = """
import json, os, sys
from sparc.openmp import restart_with_one_runtime, loaded_runtimes
restart_with_one_runtime()
import torch
from sparc.model import SPARC, SPARCConfig
model = SPARC({"a": 8, "b": 6}, SPARCConfig(n_latents=16, k=2), kernels="fused")
model({"a": torch.randn(4, 8), "b": torch.randn(4, 6)}).losses.total.backward()  # numba's pool runs
print(json.dumps({"runtimes": loaded_runtimes(), "policy": os.environ.get("OMP_WAIT_POLICY"),
                  "args": sys.argv[1:]}))
"""


def run_child(*args: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", openmp.OPT_OUT, openmp.RESTARTED, "LD_LIBRARY_PATH")}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@linux_only
def test_a_restarted_process_holds_one_runtime_and_waits_passively():
    pytest.importorskip("numba")
    if openmp.link_folder() is None:
        pytest.skip("numba's OpenMP pool and PyTorch's runtime are one already, or either is absent")
    joined = run_child("--flag", "value with spaces")
    assert joined["args"] == ["--flag", "value with spaces"]  # the same arguments, once
    assert joined["policy"] == "PASSIVE"
    assert len(joined["runtimes"]) == 1 and Path(joined["runtimes"][0]).resolve() == openmp.torch_runtime().resolve()
    as_is = run_child(**{openmp.OPT_OUT: "as-is"})
    assert as_is["policy"] is None and len(as_is["runtimes"]) == len(set(as_is["runtimes"]))


@linux_only
def test_sparc_info_names_the_runtime_of_the_command():
    pytest.importorskip("numba")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", openmp.OPT_OUT, openmp.RESTARTED)}
    done = subprocess.run([sys.executable, "-m", "sparc.cli.main", "info"], env=base, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("OpenMP runtimes loaded"))
    expected = 1 if openmp.link_folder() is not None or openmp.numba_runtime_name() is None else None
    if expected is not None:
        assert line.startswith(f"OpenMP runtimes loaded: {expected} ")
    assert line.endswith("waiting: passive")
    assert "threading layer omp" in done.stdout
