"""Shared test set-up: tests/ on sys.path for the oracle and the synthetic data."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_sessionstart(session):
    """Say which instruction set the kernels run with (CI runs the kernel tests natively
    and capped to AVX2, sparc.model.isa), even under -q."""
    from sparc.model import isa

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"instruction set: {isa.summary()}")
