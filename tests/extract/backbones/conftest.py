"""Set-up of the backbone tests: one torch thread, no network, small models."""

from __future__ import annotations

import os

import pytest
import torch

# Nothing in these tests may reach a model hub: subprocesses inherit these, and the
# Hugging Face libraries read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small models on a shared 2-core machine: one intra-op thread avoids the thread
    pool's spinning, which makes small matmuls many times slower when cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
