"""What the report shows: its settings, declared once for :func:`write_report
<sparc.explore.report.write_report>` and the ``sparc report`` flags."""

from __future__ import annotations

from dataclasses import dataclass

from sparc.errors import SparcError, require_at_least
from sparc.explore.settings import Encoding


@dataclass(frozen=True)
class ReportSettings:
    """What the report shows."""

    encoding: Encoding = "joint"
    """Codes whose statistics the report shows: joint (all streams together, the original's analysis) or independent (each stream alone)."""

    top_rows: int = 10
    """Top activating rows shown per latent and stream."""

    bin_rows: int = 1
    """Rows shown per activation quantile bin, per latent and stream."""

    query_rows: int = 5000
    """Rows of the split (seeded sample; 0 = all) whose codes the report carries for its offline query box."""

    thumb_px: int = 96
    """Thumbnail size in pixels (longest side)."""

    chunk_latents: int = 256
    """Latents per data file (the page loads one file per latent shown)."""

    neighbours: int = 5
    """Nearest latents (decoder cosine) shown per stream."""

    workers: int = 4
    """Threads making thumbnails."""

    seed: int = 0
    """Seed of the sample of query rows."""

    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "top_rows", "thumb_px", "chunk_latents", "neighbours", "workers")
        require_at_least(self, 0, "bin_rows", "query_rows")
        if self.encoding not in ("joint", "independent"):
            raise SparcError(f"encoding must be joint or independent, got {self.encoding!r}")
