"""Looking inside the concept space: latent statistics, concept names, queries and a
browsable report (README.md beside this file)."""

from sparc.explore.stats import ENCODINGS, LatentStats, StatsSettings, compute_stats, stats_for_run

__all__ = ["ENCODINGS", "LatentStats", "StatsSettings", "compute_stats", "stats_for_run"]
