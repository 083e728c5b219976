"""``sparc synth``: a feature store whose concepts are known (planted ground truth).

Each row is a sparse code over concepts — **shared** by every stream, **exclusive** to
one stream, or **hierarchical** (a parent with children; a child is active only with its
parent) — mapped into every stream by that stream's own random linear map (each concept
its own random unit direction per stream), optionally bent mildly non-linear in one
stream, plus Gaussian noise. The store is a store like any other (``sparc train`` and
``sparc eval`` take it unchanged) and carries its truth in ``truth.npz``
(:mod:`sparc.data.truth`), which ``sparc eval`` scores a model against.

The defaults are the planted setting of the specification's §8: 3 streams of 96/64/48
dims, 48 shared concepts and 12 exclusive to each stream, 3 active concepts per row with
values in [0.5, 1.5], noise 0.02, 8,000 rows, rows L2-normalised.

Randomness: one seed; the directions, the codes and the noise come from independent
child streams of it (``numpy.random.SeedSequence(seed).spawn``), so changing the number
of rows leaves the directions as they were.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sparc.data.rows import RowMeta
from sparc.data.store import FeatureStore
from sparc.data.truth import TRUTH, PlantedTruth
from sparc.data.writer import StoreWriter
from sparc.errors import SparcError, require_at_least

CHUNK_ROWS = 65_536
"""Rows made and written at a time: memory stays bounded for any number of rows."""


@dataclass(frozen=True)
class PlantedSettings:
    """What a planted store holds. Defaults: the specification's §8."""

    streams: Mapping[str, int] = field(default_factory=lambda: {"s1": 96, "s2": 64, "s3": 48})
    """Stream name → width, in order (at least two streams)."""

    shared: int = 48
    """Concepts present in every stream."""

    exclusive: int = 12
    """Concepts present in one stream only, this many for each stream."""

    parents: int = 0
    """Parent concepts (present in every stream), each with ``children`` children."""

    children: int = 2
    """Children of each parent (present in every stream; active only with their parent)."""

    child_rate: float = 0.5
    """Chance that an active parent brings one of its children (drawn uniformly) with it."""

    active: int = 3
    """Concepts drawn per row among the shared, exclusive and parent concepts (children come on top)."""

    low: float = 0.5
    """Smallest value of an active concept."""

    high: float = 1.5
    """Largest value of an active concept (values are uniform in [low, high])."""

    noise: float = 0.02
    """Standard deviation of the Gaussian noise added to every coordinate."""

    nonlinear: str | None = None
    """A stream to bend mildly non-linear (None: every stream linear)."""

    nonlinear_strength: float = 0.5
    """How much: x = (1 − a)·y + a·σ·tanh(y / σ), with y the linear signal and σ its RMS coordinate."""

    rows: int = 8000
    """Rows of the store."""

    seed: int = 0
    """Seed of the directions, the codes and the noise."""

    def __post_init__(self) -> None:
        if len(self.streams) < 2:
            raise SparcError(f"a planted store needs at least two streams, got {len(self.streams)}")
        for name, dim in self.streams.items():
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
                raise SparcError(f"stream {name!r} needs a width of at least 1, got {dim!r}")
        require_at_least(self, 0, "shared", "exclusive", "parents")
        require_at_least(self, 1, "active", "rows")
        if self.parents and self.children < 1:
            raise SparcError(f"children must be at least 1 when there are parents, got {self.children}")
        if self.roots < self.active:
            raise SparcError(f"active ({self.active}) exceeds the {self.roots} concepts a row draws from "
                             "(shared + exclusive × streams + parents); lower --active or add concepts")
        if not 0 <= self.child_rate <= 1:
            raise SparcError(f"child_rate must be in [0, 1], got {self.child_rate}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and 0 < self.low <= self.high):
            raise SparcError(f"concept values need 0 < low <= high, got low {self.low}, high {self.high}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise SparcError(f"noise must be a number >= 0, got {self.noise}")
        if self.nonlinear is not None and self.nonlinear not in self.streams:
            raise SparcError(f"nonlinear names no stream: {self.nonlinear!r}; the streams are "
                             f"{', '.join(self.streams)}")
        if not 0 <= self.nonlinear_strength <= 1:
            raise SparcError(f"nonlinear_strength must be in [0, 1], got {self.nonlinear_strength}")

    @property
    def roots(self) -> int:
        """Concepts a row draws its ``active`` ones from: shared, exclusive, parents."""
        return self.shared + self.exclusive * len(self.streams) + self.parents

    @property
    def n_concepts(self) -> int:
        return self.roots + self.parents * self.children


def concept_layout(settings: PlantedSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind, home, parent) of every concept, in their order: the shared ones, each
    stream's exclusive ones (stream by stream), the parents, then each parent's children."""
    S, P, K = len(settings.streams), settings.parents, settings.children
    kind = (["shared"] * settings.shared + ["exclusive"] * (settings.exclusive * S)
            + ["parent"] * P + ["child"] * (P * K))
    home = np.full(len(kind), -1, dtype=np.int64)
    home[settings.shared:settings.shared + settings.exclusive * S] = np.repeat(np.arange(S), settings.exclusive)
    parent = np.full(len(kind), -1, dtype=np.int64)
    parent[settings.roots:] = settings.roots - P + np.repeat(np.arange(P), K)
    return np.array(kind, dtype=str), home, parent


def random_directions(settings: PlantedSettings, home: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Stream → [C, d]: a Gaussian unit direction per concept present there, zero rows elsewhere."""
    out = {}
    for s, (name, dim) in enumerate(settings.streams.items()):
        u = rng.standard_normal((len(home), dim))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        u[(home >= 0) & (home != s)] = 0.0
        out[name] = u.astype(np.float32)
    return out


def random_codes(settings: PlantedSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows' true codes as CSR (indptr, concept, value): ``active`` distinct roots per
    row, uniformly, each parent bringing one child with probability ``child_rate``."""
    n, R, A = settings.rows, settings.roots, settings.active
    P, K = settings.parents, settings.children
    concept = np.empty((n, A + A), dtype=np.int64)  # room for one child per active root
    for start in range(0, n, CHUNK_ROWS):
        stop = min(n, start + CHUNK_ROWS)
        concept[start:stop, :A] = np.argsort(rng.random((stop - start, R)), axis=1)[:, :A]
    first_parent = R - P
    is_parent = concept[:, :A] >= first_parent
    brings = is_parent & (rng.random((n, A)) < settings.child_rate)
    child = settings.roots + (concept[:, :A] - first_parent) * K + rng.integers(0, max(K, 1), size=(n, A))
    concept[:, A:] = np.where(brings, child, -1)
    value = rng.uniform(settings.low, settings.high, size=concept.shape)
    keep = concept >= 0
    order = np.argsort(np.where(keep, concept, np.iinfo(np.int64).max), axis=1)  # ascending, absent last
    concept, value, keep = (np.take_along_axis(a, order, axis=1) for a in (concept, value, keep))
    counts = keep.sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return indptr, concept[keep], value[keep].astype(np.float32)


def signal_scale(truth: PlantedTruth, stream: str) -> float:
    """σ of the non-linearity: the RMS coordinate of the stream's linear signal, from the
    codes (Σ of squared values of the concepts present, per row, over its width)."""
    present = truth.present(stream)
    sq = np.where(present[truth.code_concept], truth.code_value.astype(np.float64) ** 2, 0.0).sum()
    dim = truth.directions[stream].shape[1]
    return math.sqrt(sq / max(truth.n_rows * dim, 1)) or 1.0


def stream_features(truth: PlantedTruth, stream: str, rows: slice, rng: np.random.Generator | None,
                    scale: float) -> np.ndarray:
    """[rows, d] float32 features of ``stream`` for a range of rows: the linear signal,
    bent when the stream is the non-linear one, plus the noise drawn from ``rng``."""
    codes = truth.codes(np.arange(rows.start, rows.stop))
    y = codes.astype(np.float64) @ truth.directions[stream].astype(np.float64)
    if truth.nonlinear >= 0 and truth.streams[truth.nonlinear] == stream:
        a = truth.nonlinear_strength
        y = (1 - a) * y + a * scale * np.tanh(y / scale)
    if rng is not None and truth.noise > 0:
        y += truth.noise * rng.standard_normal(y.shape)
    return y.astype(np.float32)


def sample_truth(settings: PlantedSettings) -> PlantedTruth:
    """The concepts, their directions and the rows' codes of ``settings`` (no features yet)."""
    seeds = np.random.SeedSequence(settings.seed).spawn(3)
    kind, home, parent = concept_layout(settings)
    directions = random_directions(settings, home, np.random.default_rng(seeds[0]))
    indptr, concept, value = random_codes(settings, np.random.default_rng(seeds[1]))
    names = list(settings.streams)
    return PlantedTruth(streams=tuple(names), kind=kind, home=home, parent=parent, directions=directions,
                        code_indptr=indptr, code_concept=concept, code_value=value,
                        nonlinear=names.index(settings.nonlinear) if settings.nonlinear else -1,
                        nonlinear_strength=settings.nonlinear_strength if settings.nonlinear else 0.0,
                        noise=settings.noise)


def concept_names(truth: PlantedTruth) -> list[str]:
    """A readable name per concept (the rows' labels): ``shared-07``, ``s2-only-03``,
    ``parent-1``, ``parent-1.child-0``."""
    names, counters = [], {}
    for c, kind in enumerate(truth.kind):
        if kind == "exclusive":
            key = f"{truth.streams[truth.home[c]]}-only"
        elif kind == "child":
            key = f"{names[truth.parent[c]]}.child"
        else:
            key = str(kind)
        counters[key] = counters.get(key, -1) + 1
        names.append(f"{key}-{counters[key]:02d}" if kind in ("shared", "exclusive") else f"{key}-{counters[key]}")
    return names


def write_planted(out: str | os.PathLike, truth: PlantedTruth, *, seed: int = 0, normalize: bool = True,
                  overwrite: bool = False, dataset: Mapping | None = None) -> FeatureStore:
    """Write the store of ``truth`` at ``out``: its features (made here, noise from
    ``seed``), rows labelled with their active concepts (a child's label under its
    parent's in the store's label hierarchy) and ``truth.npz``, published together."""
    names = concept_names(truth)
    hierarchy = {names[c]: (names[p] if p >= 0 else None) for c, p in enumerate(truth.parent)}
    noise_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)[2].spawn(len(truth.streams))]
    scales = {s: signal_scale(truth, s) for s in truth.streams}
    dims = {s: truth.directions[s].shape[1] for s in truth.streams}
    with StoreWriter(out, dims, normalize=normalize, overwrite=overwrite, label_hierarchy=hierarchy,
                     dataset=dict(dataset or {"name": "planted"})) as writer:
        for start in range(0, truth.n_rows, CHUNK_ROWS):
            rows = slice(start, min(truth.n_rows, start + CHUNK_ROWS))
            feats = {s: stream_features(truth, s, rows, rng, scales[s]) for s, rng in zip(truth.streams, noise_rngs)}
            meta = [RowMeta(row_id=f"row-{i:07d}",
                            labels=tuple(names[c] for c in truth.code_concept[truth.code_indptr[i]:truth.code_indptr[i + 1]]))
                    for i in range(rows.start, rows.stop)]
            writer.append(feats, meta)
        truth.save(writer.extra_file(TRUTH))
    return FeatureStore.open(out)


def make_planted(out: str | os.PathLike, settings: PlantedSettings = PlantedSettings(), *,
                 overwrite: bool = False) -> FeatureStore:
    """Make the planted store of ``settings`` at ``out`` (with its ``truth.npz``)."""
    from sparc.jsonio import to_json

    truth = sample_truth(settings)
    return write_planted(out, truth, seed=settings.seed, overwrite=overwrite,
                         dataset={"name": "planted", "options": to_json(settings)})
