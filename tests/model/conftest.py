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
def kernel_path(request, monkeypatch):
    """Every kernel path in turn: the PyTorch kernels, the fused (numba) kernels, and the
    fused kernels writing the weight gradients into persistent buffers (a training
    engine's; tests call :func:`use_path` on their models for it). The path is the
    default of the models a test builds (``SPARC_KERNELS``, which only supplies defaults)."""
    monkeypatch.setenv("SPARC_KERNELS", request.param.split("+")[0])
    return request.param


def use_path(model, kernel_path: str):
    """``model`` on the path, and the training engine to pass to its forward (None unless
    the path asks for gradient buffers)."""
    from sparc.model.engine import StepEngine

    model.use_kernels(kernel_path.split("+")[0])
    return StepEngine(model) if kernel_path.endswith("+buffers") else None


def kernels_of(kernel_path: str):
    """The kernels of ``kernel_path`` for CPU weights."""
    from sparc.model import kernels

    return kernels.kernels_for("cpu", torch.float32, kernel_path.split("+")[0])
