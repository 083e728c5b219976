"""The SPARC model: config, module, typed outputs and the sparse kernels it runs on."""

from sparc.model.config import SPARCConfig
from sparc.model.outputs import ForwardOutput, Losses, SparseCode, nmse
from sparc.model.sparc import SPARC

__all__ = ["SPARC", "SPARCConfig", "ForwardOutput", "Losses", "SparseCode", "nmse"]
