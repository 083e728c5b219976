"""sparc: concept-aligned sparse autoencoders (SPARC) across models and modalities.

The subpackages, in the order data flows through them:

- :mod:`sparc.data`  — the feature store, splits, batch loader, HDF5 import
- :mod:`sparc.model` — the SPARC module, its config and typed outputs, sparse kernels
- :mod:`sparc.train` — the trainer, its config, the dead-latent policy
- :mod:`sparc.cli`   — the ``sparc`` command
"""

import os

# Back large CPU tensors with transparent huge pages (PyTorch reads this once, at its
# first allocation): fresh gradient buffers of the 8192×2560 weights then cost a few
# page faults instead of ~20,000, about 25 ms per buffer on a 2-core machine.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from sparc.errors import SparcError  # noqa: E402
from sparc.model import SPARC, ForwardOutput, Losses, SPARCConfig, SparseCode  # noqa: E402

__version__ = "0.1.0"

__all__ = ["SPARC", "SPARCConfig", "SparseCode", "ForwardOutput", "Losses", "SparcError", "__version__"]
