"""The typed results of an evaluation (everything eval.json holds).

Stream pairs are explicit fields (``a``/``b``, ``target``/``source``, ``query``/``gallery``)
rather than composite keys, so the JSON reads without conventions. ``NaN`` (written as
``null``) marks a figure that could not be measured, e.g. an NMSE over zero rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from sparc.errors import SparcError
from sparc.eval.settings import EvalSettings
from sparc.eval.truth_results import TruthReport
from sparc.jsonio import from_json, to_json
from sparc.model import SPARCConfig

FORMAT = "sparc-eval"
VERSION = 2
"""2: retrieval headline on the same image, group-aware figure beside it; Jaccard floors."""

Encoding = Literal["joint", "independent"]
"""``joint``: all streams of a row encoded together (the model's forward; under global TopK
they share the selected latents). ``independent``: each stream encoded alone, as at query
time when only one modality is at hand."""

Representation = Literal["latents", "cross_recon", "raw"]

T = TypeVar("T")


# ----------------------------------------------------------------------------- reconstruction


@dataclass(frozen=True)
class CrossNMSE:
    """NMSE of stream ``target`` reconstructed from the code of stream ``source``."""

    target: str
    source: str
    nmse: float


@dataclass(frozen=True)
class Reconstruction:
    """Reconstruction error and sparsity of one encoding."""

    nmse: dict[str, float]
    """Per stream: mean over rows of ‖x̂ − x‖² / ‖x‖² (reconstruction from its own code)."""
    cross: list[CrossNMSE]
    """Every ordered pair target ≠ source."""
    l0: dict[str, float]
    """Per stream: mean number of nonzero code entries per row (not the mask size k)."""
    zero_rows: dict[str, int]
    """Per stream: rows whose features are all zero, left out of the NMSE (undefined there)."""

    def cross_nmse(self, target: str, source: str) -> float:
        c = _find(self.cross, target=target, source=source)
        if c is None:
            raise KeyError((target, source))
        return c.nmse

    def mean_nmse(self) -> float:
        return _mean(self.nmse.values())

    def mean_cross(self) -> float:
        return _mean(c.nmse for c in self.cross)


# ----------------------------------------------------------------------------- firing


@dataclass(frozen=True)
class DeadLatents:
    """Latents that never fire (value > 0) on any evaluated row."""

    n_latents: int
    dead: dict[str, int]
    """Per stream."""
    dead_in_all: int
    """Dead in every stream."""
    dead_in_some: int
    """Dead in at least one stream but not all."""
    alive_in_all: int
    """Fire in every stream."""


@dataclass(frozen=True)
class FiringHistogram:
    """How many latents fire on what fraction of the rows, per stream (dead ones apart)."""

    edges: list[float]
    """Bin edges of the firing fraction (log-spaced, from 1/n_rows to 1)."""
    counts: dict[str, list[int]]
    """Per stream: latents per bin (len(edges) − 1 bins); dead latents are not in any bin."""


PresenceClass = Literal["shared", "mostly", "only", "dead"]
"""A latent's stream presence (docs/method.md §5.10): ``shared`` (fires in several streams, none
holding ``presence_mostly`` of it), ``mostly`` (one stream holds at least ``presence_mostly``),
``only`` (one stream holds at least ``presence_only``), ``dead`` (fires in no stream)."""

PRESENCE_CLASSES: tuple[PresenceClass, ...] = ("shared", "mostly", "only", "dead")


@dataclass(frozen=True)
class LatentPresence:
    """In which streams each latent is used, under the independent encoding (each stream
    encoded alone, so a latent is present in a stream only if that stream's input selects
    it), and the taxonomy it gives (docs/method.md §5.10; thresholds in :class:`EvalSettings`).

    The per-latent values (``fires``, ``activation``, ``classes``, ``main_stream``) are
    what the report's latent pages show; the shares derive from them."""

    basis: Literal["firing", "activation"]
    """The share that classifies: of the latent's firings or of its summed activation."""
    shared: int
    """Latents that fire and whose largest stream share is below ``presence_mostly``."""
    mostly: dict[str, int]
    """Per stream: latents whose share there is at least ``presence_mostly`` but below ``presence_only``."""
    only: dict[str, int]
    """Per stream: latents whose share there is at least ``presence_only``."""
    dead: int
    """Latents that fire in no stream."""
    fires: dict[str, list[int]]
    """Per stream, per latent: evaluated rows on which it fires (value > 0)."""
    activation: dict[str, list[float]]
    """Per stream, per latent: its activation summed over the evaluated rows (7 significant digits)."""
    classes: list[PresenceClass]
    """Per latent."""
    main_stream: list[str]
    """Per latent: the stream with its largest share (the first on a tie; "" for a dead latent)."""

    @property
    def n_mostly(self) -> int:
        return sum(self.mostly.values())

    @property
    def n_only(self) -> int:
        return sum(self.only.values())

    def firing_share(self) -> dict[str, np.ndarray]:
        """Per stream [L]: its share of the latent's firings (rows × streams), NaN for a dead latent."""
        return dict(zip(self.fires, stream_shares(np.array(list(self.fires.values()), dtype=np.float64))))

    def activation_share(self) -> dict[str, np.ndarray]:
        """Per stream [L]: its share of the latent's summed activation, NaN for a dead latent."""
        return dict(zip(self.activation, stream_shares(np.array(list(self.activation.values()), dtype=np.float64))))


def stream_shares(totals: np.ndarray) -> np.ndarray:
    """[S, L] per-stream totals of each latent normalised over the streams (NaN where all are 0)."""
    sums = totals.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, totals / sums, np.nan)


# ----------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class PairJaccard:
    """Concept Jaccard of one stream pair, with its floors (see :class:`ConceptJaccard`)."""

    a: str
    b: str
    mean_all: float
    """Mean over all latents, 0 for a latent not active in both streams."""
    mean_active: float
    """Mean over the latents active in both streams."""
    n_active: int
    """Latents active in both streams."""
    label_free_all: float = math.nan
    label_free_active: float = math.nan
    null_all: float = math.nan
    null_all_sd: float = math.nan
    null_active: float = math.nan
    null_active_sd: float = math.nan
    excess_all: float = math.nan
    excess_active: float = math.nan


@dataclass(frozen=True)
class ConceptJaccard:
    """Weighted Jaccard of the per-latent label histograms across streams (docs/method.md §5.2), at one
    label depth."""

    depth: int | None
    """Hierarchy depth the labels were lifted to (0 = roots); None = the labels as given."""
    n_classes: int
    n_labelled_rows: int
    mean_all: float
    """Mean of J(l) over all latents, 0 for latents active in fewer than 2 streams (the paper's figure)."""
    mean_active: float
    """Mean of J(l) over the latents active in at least 2 streams."""
    n_active: int
    """Latents active in at least 2 streams (active: fires on a labelled row)."""
    pairs: list[PairJaccard]
    histogram: list[int]
    """J(l) of the latents active in ≥ 2 streams in 20 bins of width 0.05 on [0, 1]."""
    label_free_all: float = math.nan
    """The same figure with every label merged into one class (no concept information:
    only how often each latent fires on labelled rows in each stream); the same at
    every depth."""
    label_free_active: float = math.nan
    null_all: float = math.nan
    """Permutation null: mean of the figure over the seeded shuffles of the labels across
    the evaluated rows (whole groups moved together; EvalSettings.null_shuffles)."""
    null_all_sd: float = math.nan
    """Standard deviation of the null over the shuffles."""
    null_active: float = math.nan
    null_active_sd: float = math.nan
    excess_all: float = math.nan
    """Label-specific excess: mean_all − null_all."""
    excess_active: float = math.nan
    """mean_active − null_active."""
    null_histogram: list[float] = field(default_factory=list)
    """J(l) under the shuffled labels, mean count per bin over the shuffles (bins as ``histogram``)."""


@dataclass(frozen=True)
class PairActiveSets:
    """Per-sample Jaccard |A_a ∩ A_b| / |A_a ∪ A_b| of the nonzero latents of two streams."""

    a: str
    b: str
    mean: float
    """Mean over rows (a row where both codes are all zero counts 0)."""
    n_empty: int
    """Rows where both codes are all zero."""
    histogram: list[int]
    """Rows in 20 bins of width 0.05 on [0, 1]."""
    null: float = math.nan
    """Null: row i of stream a against a random row of another group in stream b, mean
    over rows, then over the seeded draws (EvalSettings.null_shuffles)."""
    null_sd: float = math.nan
    """Standard deviation of the null over the draws."""
    excess: float = math.nan
    """mean − null."""
    null_by_draw: list[float] = field(default_factory=list)
    """The null of each draw (for spreads of averages over pairs)."""
    null_histogram: list[float] = field(default_factory=list)
    """Rows per bin under the null pairing, mean over the draws."""


@dataclass(frozen=True)
class EncodingReport:
    """Everything measured from one encoding of the evaluated rows."""

    encoding: Encoding
    reconstruction: Reconstruction
    dead: DeadLatents
    firing: FiringHistogram
    concept_jaccard: list[ConceptJaccard]
    """One per depth; the first is the labels as given (empty without labels)."""
    active_sets: list[PairActiveSets]

    def concept(self, depth: int | None = None) -> ConceptJaccard | None:
        return _find(self.concept_jaccard, depth=depth)

    def mean_active_set_jaccard(self) -> float:
        return _mean(p.mean for p in self.active_sets)

    def mean_active_set_null(self) -> tuple[float, float]:
        """(mean, sd over the draws) of the per-sample null averaged over the stream pairs."""
        draws = [p.null_by_draw for p in self.active_sets]
        if not draws or not all(draws):
            return math.nan, math.nan
        per_draw = [sum(d) / len(d) for d in zip(*draws)]
        return sum(per_draw) / len(per_draw), spread(per_draw)


# ----------------------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class RankFigures:
    """R@K, median rank and MRR of one ranking under one match rule."""

    r1: float
    r5: float
    r10: float
    median_rank: float
    mrr: float
    r1_ci95: float
    """Half-width of a 95% interval on R@1 from sampling the queries (0 when all rows are queries)."""


@dataclass(frozen=True)
class RetrievalResult:
    """Ranking the gallery stream's rows for queries from another stream.

    The flat figures are the headline, on the paper's protocol: the query row's own
    image is the only correct match (``RetrievalReport.match_rule``). ``group_aware``
    is the same ranking with any row of the query's group or with its identical caption
    also correct (``RetrievalReport.group_match_rule``)."""

    representation: Representation
    """latents: cosine of the sparse codes; cross_recon: the query's code decoded into the
    gallery stream, against its raw features; raw: raw features (equal widths only)."""
    query: str
    gallery: str
    r1: float
    """Same image only (the paper's protocol)."""
    r5: float
    r10: float
    median_rank: float
    mrr: float
    r1_ci95: float
    """Half-width of a 95% interval on R@1 from sampling the queries (0 when all rows are queries)."""
    group_aware: RankFigures
    """The same ranking when a row of the query's group or with its identical caption also counts."""


@dataclass(frozen=True)
class RetrievalReport:
    n_queries: int
    n_gallery: int
    n_gallery_images: int
    """Distinct images among the gallery rows (a row without an image counts as its own)."""
    encoding: Encoding
    match_rule: str
    """The headline's: the same image only."""
    group_match_rule: str
    """The group-aware figure's."""
    tie_rule: str
    results: list[RetrievalResult]

    def get(self, representation: str, query: str, gallery: str) -> RetrievalResult | None:
        return _find(self.results, representation=representation, query=query, gallery=gallery)

    def mean_r1(self, representation: str) -> float:
        """Headline (same image) R@1, mean over the ordered stream pairs."""
        return _mean(r.r1 for r in self.results if r.representation == representation)

    def mean_group_r1(self, representation: str) -> float:
        """Group-aware R@1, mean over the ordered stream pairs."""
        return _mean(r.group_aware.r1 for r in self.results if r.representation == representation)


# ----------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class ProbeResult:
    """Multi-label linear probe on one representation of one stream."""

    stream: str
    representation: Literal["raw", "latents", "recon"]
    macro_ap: float
    """Macro average precision on the report rows."""
    select_ap: float
    """Macro AP on the selection (val) rows at the chosen epoch."""
    best_epoch: int
    n_classes: int


@dataclass(frozen=True)
class OneDClass:
    label: str
    latent: int
    log_loss: float
    """Test log-loss on the balanced report rows."""
    n_test: int
    """Balanced test rows (positives + as many negatives)."""


@dataclass(frozen=True)
class OneDProbe:
    """Best single latent per class (docs/method.md §5.6), chosen on train + val, scored on test."""

    stream: str
    mean_log_loss: float
    n_classes: int
    classes: list[OneDClass]


@dataclass(frozen=True)
class ProbeReport:
    fit_split: str
    select_split: str
    report_split: str
    fit_rows: int
    select_rows: int
    report_rows: int
    multilabel: list[ProbeResult]
    one_d: list[OneDProbe]

    def get(self, stream: str, representation: str) -> ProbeResult | None:
        return _find(self.multilabel, stream=stream, representation=representation)

    def mean_ap(self, representation: str) -> float:
        return _mean(p.macro_ap for p in self.multilabel if p.representation == representation)


# ----------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class EvalReport:
    """Every figure of one evaluation, with what it was measured on and how."""

    run: str
    store: str
    split: str
    n_rows: int
    streams: dict[str, int]
    model: SPARCConfig
    settings: EvalSettings
    encodings: list[EncodingReport]
    retrieval: RetrievalReport | None
    probes: ProbeReport | None
    presence: LatentPresence | None = None
    """Each latent's presence per stream and its class (None in an eval.json of an earlier sparc)."""
    truth: TruthReport | None = None
    """Scores against the store's planted truth (docs/method.md §5.10), when it carries one (``sparc synth``)."""
    notes: list[str] = field(default_factory=list)
    """What was skipped and why, and other caveats."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase."""
    plots: dict[str, str] = field(default_factory=dict)
    """Plot name → PNG path relative to the report."""
    format: str = FORMAT
    version: int = VERSION

    def encoding(self, name: Encoding) -> EncodingReport:
        e = _find(self.encodings, encoding=name)
        if e is None:
            raise KeyError(name)
        return e

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, data: dict) -> EvalReport:
        return from_json(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> EvalReport:
        """Read an ``eval.json`` (or the directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "eval.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SparcError(f"{path} does not exist; run 'sparc eval' first") from None
        except (OSError, ValueError) as e:
            raise SparcError(f"cannot read {path} ({e}); run 'sparc eval' again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SparcError(f"{path} is not a sparc eval.json")
        if data.get("version") != VERSION:
            raise SparcError(f"{path} has eval format version {data.get('version')}, this sparc reads {VERSION}; "
                             "run 'sparc eval' again")
        try:
            return cls.from_json(data)
        except (ValueError, TypeError, KeyError, SparcError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SparcError(f"{path} is not a valid eval.json ({reason}); run 'sparc eval' again") from None


def spread(values: Sequence[float]) -> float:
    """Sample standard deviation (NaN for fewer than two values)."""
    n = len(values)
    if n < 2:
        return math.nan
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def _find(items: Iterable[T], **fields) -> T | None:
    """The first of ``items`` whose attributes equal ``fields``, or None."""
    return next((x for x in items if all(getattr(x, k) == v for k, v in fields.items())), None)


def _mean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan
