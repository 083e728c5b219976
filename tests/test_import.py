"""Importing sparc changes no process-wide state; the ``sparc`` command turns huge pages on."""

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import os, warnings
import numpy, torch, tqdm.auto, tyro  # their own import-time filters are not sparc's
before = list(warnings.filters)
env = os.environ.get("THP_MEM_ALLOC_ENABLE")
import sparc, sparc.cli.main, sparc.eval, sparc.extract, sparc.train
assert os.environ.get("THP_MEM_ALLOC_ENABLE") == env, "import changed the environment"
assert warnings.filters == before, "import changed the warning filters"
"""

HUGE = """
import sparc.cli.main
assert sparc.cli.main.main(["info", "/nonexistent"]) == 2  # main() sets the variable first
import torch
x = torch.ones(8192, 2560)
print(sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")))
"""


def test_import_changes_no_process_state():
    subprocess.run([sys.executable, "-c", CHECK], check=True, env={"PATH": "/usr/bin:/bin"})


def test_the_command_sets_huge_pages_before_the_first_allocation():
    # PyTorch reads THP_MEM_ALLOC_ENABLE at its first CPU allocation: the CLI's imports
    # must not allocate, or setting it in main() would come too late.
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are off on this machine")
    out = subprocess.run([sys.executable, "-c", HUGE], check=True, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout
    assert int(out.split()[-1]) > 0
