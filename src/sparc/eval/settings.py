"""What ``sparc eval`` measures and how: one frozen dataclass, recorded in eval.json."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sparc.errors import SparcError, require_at_least


@dataclass(frozen=True)
class EvalSettings:
    """Settings of an evaluation. Every figure in eval.json is measured under these."""

    split: str = "test"
    """Split of the store to evaluate on (probes fit on train and select on val, so they run only for test)."""

    chunk_rows: int = 2048
    """Rows encoded at a time; memory grows with it (about chunk_rows × n_latents × 4 bytes × streams)."""

    depths: tuple[int, ...] | None = None
    """Label-hierarchy depths (0 = roots) to lift labels to for the concept Jaccard, besides the labels as given; default: every depth of the store's hierarchy."""

    retrieval_queries: int = 5000
    """Query rows sampled (seeded) for retrieval; 0 = every row. The gallery is always the whole split, so R@K estimates the full-gallery figure."""

    retrieval_block: int = 4096
    """Gallery rows (and query rows) scored at a time."""

    tie_tol: float = 1e-5
    """Retrieval: a wrong item scoring within this of the best correct match counts as ranked above it (pessimistic ties)."""

    probes: bool = True
    """Train the multi-label and 1D probes (only when evaluating the test split)."""

    probe_fit_rows: int = 10000
    """Most rows of the train split the probes are fitted on (whole groups, seeded; 0 = all)."""

    probe_select_rows: int = 5000
    """Most rows of the val split the probes select their epoch / latent on (0 = all)."""

    probe_report_rows: int = 20000
    """Most rows of the evaluated split the probes are scored on (0 = all)."""

    probe_epochs: int = 10
    """Epochs of the multi-label probe; the epoch with the lowest val loss is kept."""

    probe_batch_size: int = 256
    """Minibatch of the multi-label probe."""

    probe_lr: float = 1e-3
    """Adam learning rate of the multi-label probe."""

    one_d_min_positives: int = 50
    """1D probe: classes need more than this many positives among the train rows."""

    one_d_candidates: int = 8
    """1D probe: latents (largest train mean-activation gap) fitted per class before selecting on val."""

    null_shuffles: int = 5
    """Seeded draws of the permutation nulls beside every Jaccard (labels shuffled across rows, whole groups together; per-sample: a random row of another group); 0 = none."""

    presence_basis: Literal["firing", "activation"] = "firing"
    """Stream presence of the latents (docs/method.md §5.9; independent encoding): the share that classifies a latent — its firings (rows × streams where it is nonzero) or its summed activation, split over the streams."""

    presence_mostly: float = 0.9
    """A latent one stream holds at least this share of (below presence_only) is 'mostly one stream'; one that fires below it in every stream is 'shared'. In (0.5, 1]."""

    presence_only: float = 0.99
    """A latent one stream holds at least this share of is 'one stream only' (1 = strictly never elsewhere). In [presence_mostly, 1]."""

    plots: bool = True
    """Draw PNG plots (needs matplotlib)."""

    seed: int = 0
    """Seed of every sample (retrieval queries, probe rows, balanced negatives) and of the probes."""

    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:1, ..."""

    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "chunk_rows", "retrieval_block", "probe_epochs", "probe_batch_size",
                         "one_d_candidates")
        require_at_least(self, 0, "retrieval_queries", "probe_fit_rows", "probe_select_rows", "probe_report_rows",
                         "one_d_min_positives", "null_shuffles")
        if not (math.isfinite(self.tie_tol) and self.tie_tol >= 0):
            raise SparcError(f"tie_tol must be a number >= 0, got {self.tie_tol}")
        if not (math.isfinite(self.probe_lr) and self.probe_lr > 0):
            raise SparcError(f"probe_lr must be a positive number, got {self.probe_lr}")
        if not (0.5 < self.presence_mostly <= self.presence_only <= 1):
            raise SparcError(f"presence thresholds need 0.5 < presence_mostly <= presence_only <= 1, got "
                             f"{self.presence_mostly} and {self.presence_only}")
        if self.presence_basis not in ("firing", "activation"):
            raise SparcError(f"presence_basis must be firing or activation, got {self.presence_basis!r}")
        if self.depths is not None and any(d < 0 for d in self.depths):
            raise SparcError(f"depths must be >= 0 (0 = root labels), got {list(self.depths)}")
