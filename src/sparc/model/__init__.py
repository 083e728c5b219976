"""The SPARC model: config, module, typed outputs and the sparse kernels it runs on.

:class:`SPARC` is the only code that knows its parameter layout; everything else goes
through its public methods (``logits``/``select``/``encode``, ``decode``/``decode_all``,
``dead_mask``, ``reinit_latents_``, ``set_pre_bias_``, the decoder constraint).
"""

from sparc.model.config import SPARCConfig
from sparc.model.outputs import ForwardOutput, Losses, SparseCode, StreamLogits, nmse, row_nmse
from sparc.model.sparc import SPARC

__all__ = ["SPARC", "SPARCConfig", "ForwardOutput", "Losses", "SparseCode", "StreamLogits", "nmse", "row_nmse"]
