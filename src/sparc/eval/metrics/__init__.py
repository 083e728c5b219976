"""The metrics of ``sparc eval``, one module each (docs/method.md §5): reconstruction,
dead latents, concept Jaccard, per-sample active sets, cross-stream retrieval (with its
ranking) and the probes. Each turns codes into the typed results of
:mod:`sparc.eval.results`; :func:`sparc.eval.evaluate` runs them all."""
