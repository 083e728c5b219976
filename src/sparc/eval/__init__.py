"""Evaluation of SPARC models: the paper's metrics, measured without its leaks.

``evaluate(model, store, EvalSettings(...))`` streams over one split of a feature store
and returns an :class:`EvalReport` (reconstruction, dead latents, concept and per-sample
Jaccard under joint and independent encoding, cross-stream retrieval, probes, each
latent's presence per stream);
``write_eval`` writes it as eval.json + eval.md + plots, and ``compare`` lines several
evaluations up in the shape of the paper's table. See ``README.md`` beside this file.
"""

from sparc.eval.settings import EvalSettings
from sparc.lazy import lazy_exports

# The rest loads PyTorch (or matplotlib): imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {
    "sparc.eval.output.compare": ["Comparison", "ComparisonRow", "Floor", "compare", "render_comparison"],
    "sparc.eval.output.markdown": ["render_eval"],
    "sparc.eval.output.write": ["write_eval"],
    "sparc.eval.results": ["ConceptJaccard", "CrossNMSE", "DeadLatents", "EncodingReport", "EvalReport",
                           "LatentPresence", "OneDProbe", "PairActiveSets", "PairJaccard", "ProbeReport",
                           "ProbeResult", "RankFigures", "Reconstruction", "RetrievalReport", "RetrievalResult"],
    "sparc.eval.streaming": ["evaluate"],
})

__all__ = [
    "Comparison",
    "ComparisonRow",
    "ConceptJaccard",
    "CrossNMSE",
    "DeadLatents",
    "EncodingReport",
    "EvalReport",
    "EvalSettings",
    "Floor",
    "LatentPresence",
    "OneDProbe",
    "PairActiveSets",
    "PairJaccard",
    "ProbeReport",
    "ProbeResult",
    "RankFigures",
    "Reconstruction",
    "RetrievalReport",
    "RetrievalResult",
    "compare",
    "evaluate",
    "render_comparison",
    "render_eval",
    "write_eval",
]
