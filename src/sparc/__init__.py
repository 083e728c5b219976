"""sparc: concept-aligned sparse autoencoders (SPARC) across models and modalities.

The subpackages, in the order data flows through them (the method: docs/method.md):

- :mod:`sparc.extract` — the input pipeline: datasets, backbones, extraction into a store
- :mod:`sparc.data`    — the feature store, splits, batch loader, HDF5 import
- :mod:`sparc.model`   — the SPARC module, its config and typed outputs, sparse kernels
- :mod:`sparc.train`   — the run workflow, the trainer, its config, the dead-latent policy
- :mod:`sparc.eval`    — the paper's metrics, ``sparc eval`` and ``sparc compare``
- :mod:`sparc.cli`     — the ``sparc`` command

Importing sparc changes no process-wide state. The ``sparc`` command backs large CPU
tensors with transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, unless already set; see
:func:`sparc.cli.main.main`); library users who train on the CPU can set that variable
themselves before PyTorch's first allocation.
"""

from sparc.errors import SparcError
from sparc.lazy import lazy_exports

__version__ = "0.1.0"

# The model's names load PyTorch: imported on first use, so that `import sparc` (and the
# `sparc` command's start, which a Ctrl-C may interrupt) stays light (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {"sparc.model": ["SPARC", "SPARCConfig", "SparseCode", "ForwardOutput", "Losses"]})


__all__ = ["SPARC", "SPARCConfig", "SparseCode", "ForwardOutput", "Losses", "SparcError", "__version__"]
