"""The SPARC model: config, module, typed outputs and the sparse kernels it runs on.

:class:`SPARC` is the only code that knows its parameter layout; everything else goes
through its public methods (``logits``/``select``/``encode``, ``decode``/``decode_all``,
``dead_mask``, ``reinit_latents_``, ``set_pre_bias_``, the decoder constraint).
"""

from sparc.lazy import lazy_exports
from sparc.model.config import SPARCConfig

# SPARC and its outputs load PyTorch: imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {
    "sparc.model.sparc": ["SPARC"],
    "sparc.model.outputs": ["ForwardOutput", "Losses", "SparseCode", "StreamLogits", "nmse", "row_nmse"],
})

__all__ = ["SPARC", "SPARCConfig", "ForwardOutput", "Losses", "SparseCode", "StreamLogits", "nmse", "row_nmse"]
