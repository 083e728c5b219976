"""Set-up of the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

_HERE = Path(__file__).parent


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than a thread pool, whose spinning
    workers make tiny matmuls ~1000x slower when the cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(items):
    # Tests here build CSR tensors directly too; kernels.csr_tensor silences the notice
    # only around its own calls.
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"))
