"""The thread budget (sparc/threads.py): the CPUs a process may use — its affinity and
its cgroup's quota — size every compute pool; --threads and the environment override."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparc import threads
from sparc.errors import SparcError
from tests.synthetic import make_store


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_smallest_on_the_path_to_the_root(tmp_path):
    write(tmp_path / "cpu.max", "max 100000\n")
    write(tmp_path / "pod" / "cpu.max", "150000 100000\n")  # 1.5 CPUs for the pod
    write(tmp_path / "pod" / "job" / "cpu.max", "max 100000\n")  # no limit of its own
    assert threads.quota_cpus(tmp_path, ["0::/pod/job"]) == 1.5
    write(tmp_path / "pod" / "job" / "cpu.max", "50000 100000\n")
    assert threads.quota_cpus(tmp_path, ["0::/pod/job"]) == 0.5
    assert threads.quota_cpus(tmp_path, ["0::/"]) is None  # the root has none


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    write(tmp_path / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cpu,cpuacct" / "docker" / "cpu.cfs_period_us", "100000\n")
    lines = ["12:memory:/docker", "4:cpu,cpuacct:/docker"]
    assert threads.quota_cpus(tmp_path, lines) == 3.0
    write(tmp_path / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us", "-1\n")
    assert threads.quota_cpus(tmp_path, lines) is None
    assert threads.quota_cpus(tmp_path / "absent", lines) is None


def test_budget_order_flag_then_environment_then_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "WRITTEN", {})  # as in a fresh process
    for var in ("SPARC_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    write(tmp_path / "cpu.max", "max 100000\n")
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 6)
    monkeypatch.setattr(threads, "_group_paths", lambda root, lines: [tmp_path])
    assert threads.budget() == 6
    write(tmp_path / "cpu.max", "250000 100000\n")  # 2.5 CPUs: 3 threads
    assert threads.budget() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.budget() == 2
    monkeypatch.setenv("SPARC_THREADS", "4")
    assert threads.budget() == 4
    assert threads.budget(1) == 1
    with pytest.raises(SparcError, match="threads must be at least 1"):
        threads.budget(0)
    monkeypatch.setenv("SPARC_THREADS", "two")
    with pytest.raises(SparcError, match="SPARC_THREADS"):
        threads.budget()


def test_cgroup_v1_without_a_namespace_reads_the_controllers_own_folder(tmp_path):
    # /proc/self/cgroup names the host's path, but the container sees its own group at
    # the controller's mount point (Docker's default on cgroup v1 hosts).
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert threads.quota_cpus(tmp_path, ["4:cpu,cpuacct:/docker/0123abcd"]) == 2.0


def test_the_environment_as_people_and_launchers_write_it(monkeypatch):
    monkeypatch.setattr(threads, "WRITTEN", {})  # as in a fresh process
    for var in ("SPARC_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 6)
    monkeypatch.setattr(threads, "quota_cpus", lambda root: None)
    monkeypatch.setenv("OMP_NUM_THREADS", "4,1")  # OpenMP's nested form: the outer level counts
    assert threads.budget() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", " 3 ")
    assert threads.budget() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")  # OpenMP's own business, not an error of ours
    assert threads.budget() == 6
    # torchrun sets OMP_NUM_THREADS=1 for its ranks: they share the machine instead.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.budget() == 3
    monkeypatch.setenv("SPARC_THREADS", "5")
    assert threads.budget() == 5


def test_what_sparc_wrote_is_not_taken_for_the_users_setting(monkeypatch):
    monkeypatch.setattr(threads, "WRITTEN", {})  # as in a fresh process
    import torch

    for var in ("SPARC_THREADS", "LOCAL_WORLD_SIZE", *threads.POOL_VARIABLES):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own: kept
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 6)
    monkeypatch.setattr(threads, "quota_cpus", lambda root: None)
    before = torch.get_num_threads()
    try:
        threads.apply_budget(1)  # as `sparc train --threads 1` does
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "3"
        assert torch.get_num_threads() == 1
        assert threads.budget() == 6  # the next command in this process: not the 1 written above
    finally:
        torch.set_num_threads(before)


POOLS = """
import json, os, sys
from sparc.cli.main import main
code = main(sys.argv[1:])
import numba, torch
print(json.dumps({"code": code, "torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
                  "numba_pool": numba.config.NUMBA_NUM_THREADS, "omp": os.environ.get("OMP_NUM_THREADS"),
                  "mkl": os.environ.get("MKL_NUM_THREADS")}))
"""


def pools_after_training(tmp_path: Path, store: Path, *extra: str, cpus: set[int] | None = None) -> dict:
    """Train two steps in a fresh process (on ``cpus`` only, if given) and report each pool's size."""
    env = {k: v for k, v in os.environ.items() if k not in threads.POOL_VARIABLES + ("SPARC_THREADS",)}
    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    done = subprocess.run(
        [sys.executable, "-c", POOLS, "train", str(store), "--out", str(out), "--n-latents", "32", "--k", "4",
         "--batch-size", "32", "--max-steps", "2", "--no-progress", "--kernels", "fused", *extra],
        env=env, capture_output=True, text=True, timeout=600,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_affinity_of_one_cpu_gives_one_thread_in_every_pool(tmp_path):
    pytest.importorskip("numba")
    store = make_store(tmp_path / "store", n_rows=200)
    runs = tmp_path / "runs"
    runs.mkdir()
    one = pools_after_training(runs, store, cpus={min(os.sched_getaffinity(0))})
    assert one == {"code": 0, "torch": 1, "numba": 1, "numba_pool": 1, "omp": "1", "mkl": "1"}
    flag = pools_after_training(runs, store, "--threads", "1")
    assert flag == one
    n = len(os.sched_getaffinity(0))
    if n > 1:  # the whole machine: one thread per CPU it lets this process use
        full = pools_after_training(runs, store)
        assert full == {"code": 0, "torch": n, "numba": n, "numba_pool": n, "omp": str(n), "mkl": str(n)}
