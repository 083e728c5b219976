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


def _numba_installed() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


needs_numba = pytest.mark.skipif(not _numba_installed(), reason="numba is not installed: no fused CPU kernels")


@pytest.fixture(params=["pytorch", pytest.param("fused", marks=needs_numba),
                        pytest.param("fused+buffers", marks=needs_numba)])
def kernel_path(request):
    """Every kernel path in turn: the PyTorch kernels, the fused (numba) kernels, and the
    fused kernels writing the weight gradients into persistent buffers (tests call
    :func:`use_path` on their models for the last)."""
    from sparc.model import kernels

    kernels.set_kernels(request.param.split("+")[0])
    yield request.param
    kernels.set_kernels("auto")


def use_path(model, kernel_path: str):
    """Switch ``model`` to the gradient buffers when the path asks for them."""
    if kernel_path.endswith("+buffers"):
        model.use_gradient_buffers()
    return model
