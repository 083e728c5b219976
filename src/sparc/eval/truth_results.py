"""The typed results of scoring a model against a planted store's truth (eval.json's
``truth``; docs/method.md §5.10). Every fraction is NaN (``null``) when there is nothing
to count, e.g. the exclusive concepts of a store that has none."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamRecovery:
    """How well one stream's decoder rows find the true directions of the concepts present there."""

    stream: str
    n_concepts: int
    """Concepts present in the stream."""
    recovered: float
    """Fraction whose best decoder row (largest cosine over the latents) is at cos ≥ the threshold."""
    median_best_cos: float
    """Median over the concepts of that best cosine."""
    matched_recovered: float
    """The same under a one-to-one matching of concepts to latents (Hungarian, largest total cosine):
    no latent counts for two concepts. NaN without SciPy."""
    matched_mean_cos: float
    """Mean cosine of the one-to-one matched pairs. NaN without SciPy."""
    n_exclusive: int
    """Concepts exclusive to this stream."""
    exclusive_recovered: float
    """Fraction of those recovered (best cosine ≥ the threshold)."""


@dataclass(frozen=True)
class LatentClassification:
    """Calling a latent stream-exclusive by one rule, against what its best-matching concept is."""

    rule: str
    """``firing``: ≥ ``share`` of its firings (independent encoding, evaluated rows) are in one stream;
    ``decoder``: ≥ ``share`` of its decoder-row norms (summed over streams) are in one stream."""
    share: float
    n_predicted: int
    """Matched latents called exclusive to some stream by the rule."""
    n_true: int
    """Matched latents whose concept is exclusive."""
    n_correct: int
    """Called exclusive to the very stream their concept is exclusive to."""
    precision: float
    """n_correct / n_predicted."""
    recall: float
    """n_correct / n_true."""


@dataclass(frozen=True)
class ParentAbsorption:
    """Whether a parent's latent keeps firing when one of its children is active, in one stream."""

    stream: str
    parent: int
    """The parent concept's index in truth.npz."""
    latent: int
    """The parent's latent: the one whose decoder row in this stream is closest (cosine) to the parent's
    true direction."""
    rows_alone: int
    """Evaluated rows with the parent active and none of its children."""
    rows_with_child: int
    """Evaluated rows with the parent and one of its children active."""
    fires_alone: float
    """Fraction of the first on which the parent's latent fires."""
    fires_with_child: float
    """Fraction of the second on which it fires."""
    drop: float
    """max(0, fires_alone − fires_with_child) / fires_alone: how much of its firing a child takes away
    (NaN when it never fires alone)."""
    absorbed: float
    """Fraction of the rows with a child on which the parent's latent is silent while another latent
    that fires has a decoder row at cos ≥ ``absorb_cos`` to the parent's direction: the parent's
    direction carried by another (the child's) latent — absorption as SAEBench counts it."""


@dataclass(frozen=True)
class TruthReport:
    """A model scored against the planted truth of the store (docs/method.md §5.10)."""

    n_concepts: int
    n_shared: int
    """Concepts present in every evaluated stream (shared, parents, children)."""
    n_exclusive: int
    threshold: float
    """Cosine at which a decoder row recovers a true direction (0.9)."""
    align_threshold: float
    """Cosine at which one latent aligns a shared concept in every stream (0.8)."""
    recovered: float
    """Fraction of (stream, concept present) pairs whose best decoder row is at cos ≥ threshold."""
    median_best_cos: float
    """Median of the best cosine over the same pairs."""
    matched_recovered: float
    """``recovered`` under a one-to-one concept ↔ latent matching per stream (NaN without SciPy)."""
    shared_aligned: float
    """Fraction of the shared concepts with one latent whose decoder rows are at cos ≥ align_threshold
    to the concept in every stream (the specification's §8 'aligned')."""
    shared_aligned_matched: float
    """The same with each latent used for one concept at most (Hungarian on the smallest cosine over
    the streams; NaN without SciPy)."""
    shared_aligned_firing: float
    """Fraction of the shared concepts (active on some evaluated row) for which one latent fires in
    every stream, each encoded alone, when the concept is active and seldom otherwise: the latent's
    true-positive minus false-positive rate of 'fires in every stream' ≥ align_threshold."""
    firing_alignment: float
    """Mean over those concepts of that best true-positive − false-positive rate."""
    exclusive_recovered: float
    """Fraction of the exclusive concepts whose best decoder row in their own stream is at cos ≥ threshold."""
    streams: list[StreamRecovery]
    classification: list[LatentClassification]
    n_matched_shared: int
    """Latents whose best (stream, concept) cosine is ≥ threshold and whose concept is present in every stream."""
    n_matched_exclusive: int
    """Latents whose best (stream, concept) cosine is ≥ threshold and whose concept is exclusive."""
    absorption: list[ParentAbsorption]
    """One per (stream, parent) with rows both alone and with a child; empty without parents."""
    absorb_cos: float = 0.5
    matching: str = ""
    """How the one-to-one matchings were made (``scipy.optimize.linear_sum_assignment``), or why not."""
    notes: list[str] = field(default_factory=list)

    def mean_drop(self) -> float:
        """Mean ``drop`` over the parents and streams."""
        return _mean(a.drop for a in self.absorption)

    def mean_absorbed(self) -> float:
        """Mean ``absorbed`` over the parents and streams."""
        return _mean(a.absorbed for a in self.absorption)

    def classification_by(self, rule: str) -> LatentClassification | None:
        return next((c for c in self.classification if c.rule == rule), None)


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan
