"""Looking inside the concept space: latent statistics, concept names, queries and a
browsable report (README.md beside this file).

- :mod:`.stats` — one pass over a split: per latent and stream firing, mean/max, top and
  quantile rows, histograms; agreement across streams; per-latent concept Jaccard;
  saved beside the run (``RUN/explore-<split>/``) and reused;
- :mod:`.naming` — names from labels (the original's protocol) and from a vocabulary
  through a text stream, measured against each other;
- :mod:`.explorer` — :class:`Explorer`: a run with its store, statistics and names;
  text / image / row queries through the stores' own backbones;
- :mod:`.report` — the static site of ``sparc report``;
- :mod:`.serve` — ``sparc serve``: the report on a local web server, with live queries.
"""

from sparc.explore.settings import ENCODINGS, NamingSettings, StatsSettings
from sparc.lazy import lazy_exports

# The rest loads PyTorch: imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {
    "sparc.explore.explorer": ["Explorer", "QueryResult"],
    "sparc.explore.naming": ["Names", "name_latents", "names_for_run"],
    "sparc.explore.stats": ["LatentStats", "compute_stats", "stats_for_run"],
})

__all__ = ["ENCODINGS", "Explorer", "LatentStats", "Names", "NamingSettings", "QueryResult", "StatsSettings",
           "compute_stats", "name_latents", "names_for_run", "stats_for_run"]
