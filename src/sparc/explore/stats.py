"""Latent statistics in one pass over a split of a store: what every ``sparc latent``,
``sparc query``, ``sparc names`` and ``sparc report`` reads.

For each latent ``l``, stream ``s`` and encoding (``joint``: all streams encoded together,
the model's forward and the original code's analysis; ``independent``: each stream
alone, docs/method.md §1.4), over the rows of the split:

- firing count (value > 0), sum and maximum of the activation;
- the ``top`` rows with the largest activation (default 50, the original keeps 200);
- a seeded uniform sample of ``quantile_bins × per_bin`` firing rows, sorted by value:
  its consecutive blocks of ``per_bin`` rows are the *quantile bins* (the sample's
  deciles by default), as SAE dashboards show rows from across the activation range;
- a histogram of the activation on fixed log-spaced bins (:data:`HIST_EDGES`);
- across streams: rows where ``l`` fires in at least one stream and in all of them
  (*agreement* = all / any);
- when the rows have labels: the per-latent concept Jaccard (docs/method.md §5.2), by
  :mod:`sparc.eval.metrics.concept_jaccard`.

The independent sparse codes of every row are kept too (k pairs per row and stream), so
queries rank rows without encoding the split again. Memory grows with N·k and L·top,
never N·L: at 126,000 rows, L = 8,192, k = 64 and three streams about 0.5 GB besides the
chunk's logits.

The statistics are saved beside the run (``RUN/explore-<split>/stats.safetensors`` and
``stats.json``) with the digest of the model's weights and the store's identity, and
reused while both match (:func:`stats_for_run`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from sparc.atomic import atomic_path, write_json
from sparc.data import FeatureStore
from sparc.data.splits import Split
from sparc.device import check_device
from sparc.errors import SparcError
from sparc.eval.codes import CodeTable, same_width
from sparc.eval.features import encode_in_chunks
from sparc.eval.labels import label_matrix
from sparc.eval.metrics.concept_jaccard import ConceptCounter, concept_jaccard
from sparc.eval.streaming import check_streams, rows_of_split
from sparc.explore.settings import ENCODINGS, StatsSettings
from sparc.explore.topn import TopN, hash_keys
from sparc.jsonio import from_json, to_json
from sparc.model import SPARC, SparseCode
from sparc.train.rundir import RunDir
from sparc.workspace import STATS, mark, writing

T = TypeVar("T")

FORMAT = "sparc-latent-stats"
VERSION = 1
STATS_FILE = "stats.safetensors"
STATS_JSON = "stats.json"
HIST_EDGES = np.logspace(-3, 2, 41)
"""Edges of the activation histogram: 40 log-spaced bins from 1e-3 to 100 (8 a decade);
smaller positive values count in the first bin, larger ones in the last."""


def explore_dir(run: str | Path, split: str) -> Path:
    """Where a run's statistics (and names) of ``split`` live (:class:`~sparc.train.rundir.RunDir`)."""
    return RunDir(run).explore_dir(split)


@dataclass
class LatentStats:
    """The statistics of one model on one split (arrays are numpy; E encodings in the
    order of :data:`ENCODINGS`, S streams in model order, L latents)."""

    settings: StatsSettings
    streams: list[str]
    n_latents: int
    k: int
    rows: np.ndarray
    """int64 [N]: the store rows of the split, sorted."""
    fires: np.ndarray
    """int64 [E, S, L]: rows where the latent fires (value > 0)."""
    act_sum: np.ndarray
    """float64 [E, S, L]: sum of its activation over those rows."""
    act_max: np.ndarray
    """float32 [E, S, L]."""
    top_rows: np.ndarray
    """int64 [E, S, L, top]: store rows by decreasing activation; −1 pads."""
    top_vals: np.ndarray
    """float32 [E, S, L, top]."""
    sample_rows: np.ndarray
    """int64 [E, S, L, bins·per_bin]: the uniform sample of firing rows, by decreasing value; −1 pads."""
    sample_vals: np.ndarray
    hist: np.ndarray
    """int32 [E, S, L, len(HIST_EDGES) − 1]."""
    n_any: np.ndarray
    """int64 [E, L]: rows where the latent fires in at least one stream."""
    n_all: np.ndarray
    """int64 [E, L]: rows where it fires in every stream."""
    concept_j: np.ndarray | None
    """float64 [E, L] per-latent concept Jaccard over the labelled rows, or None (no labels)."""
    codes_idx: np.ndarray
    """int32 [S, N, k]: the independent code of every row of the split, latent ids."""
    codes_val: np.ndarray
    """float32 [S, N, k]."""
    source: dict = field(default_factory=dict)
    """The model digest and the store's identity they were computed from."""
    seconds: float = 0.0

    # -- views ----------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def encoding_index(self, encoding: str) -> int:
        if encoding not in ENCODINGS:
            raise SparcError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        return ENCODINGS.index(encoding)

    def stream_index(self, stream: str) -> int:
        if stream not in self.streams:
            raise SparcError(f"unknown stream {stream!r}; the statistics cover: {', '.join(self.streams)}")
        return self.streams.index(stream)

    def check_latent(self, latent: int) -> int:
        if not 0 <= latent < self.n_latents:
            raise SparcError(f"latent {latent} does not exist; this model has {self.n_latents} latents "
                             f"(0 to {self.n_latents - 1})")
        return latent

    def frequency(self, encoding: str = "joint") -> np.ndarray:
        """[S, L] fraction of the split's rows on which each latent fires."""
        return self.fires[self.encoding_index(encoding)] / max(self.n_rows, 1)

    def mean_activation(self, encoding: str = "joint") -> np.ndarray:
        """[S, L] mean activation over the rows where the latent fires (NaN where it never does)."""
        e = self.encoding_index(encoding)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.fires[e] > 0, self.act_sum[e] / self.fires[e], np.nan)

    def agreement(self, encoding: str = "joint") -> np.ndarray:
        """[L] rows where the latent fires in every stream / rows where it fires in at
        least one (NaN where it never fires)."""
        e = self.encoding_index(encoding)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_any[e] > 0, self.n_all[e] / self.n_any[e], np.nan)

    def top(self, encoding: str, stream: str, latent: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(store rows, activations) of the latent's top rows, by decreasing activation."""
        e, s = self.encoding_index(encoding), self.stream_index(stream)
        rows, vals = self.top_rows[e, s, latent], self.top_vals[e, s, latent]
        keep = rows >= 0
        return rows[keep][:n], vals[keep][:n]

    def quantile_samples(self, encoding: str, stream: str, latent: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per quantile bin, highest first: (store rows, activations) of its sampled rows."""
        e, s = self.encoding_index(encoding), self.stream_index(stream)
        rows, vals = self.sample_rows[e, s, latent], self.sample_vals[e, s, latent]
        keep = rows >= 0
        rows, vals = rows[keep], vals[keep]
        bounds = np.linspace(0, len(rows), self.settings.quantile_bins + 1).round().astype(int)
        return [(rows[a:b], vals[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def code(self, stream: str, positions: np.ndarray | slice) -> SparseCode:
        """The independent codes of the split's rows at ``positions`` (indices into :attr:`rows`)."""
        s = self.stream_index(stream)
        return SparseCode(torch.from_numpy(self.codes_idx[s][positions].astype(np.int64)),
                          torch.from_numpy(np.ascontiguousarray(self.codes_val[s][positions])), self.n_latents)

    # -- files ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``stats.safetensors`` and ``stats.json`` into ``directory``."""
        directory = Path(directory)
        token = secrets.token_hex(8)
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        if self.concept_j is not None:
            arrays["concept_j"] = np.ascontiguousarray(self.concept_j)
        directory.mkdir(parents=True, exist_ok=True)
        mark(directory, STATS, "sparc stats")  # first, so that the next writer cleans after a killed one
        with writing(directory, "sparc stats"):
            with atomic_path(directory / STATS_FILE) as tmp:
                save_file(arrays, str(tmp), metadata={"format": FORMAT, "token": token})
            write_json(directory / STATS_JSON, {
                "format": FORMAT, "version": VERSION, "token": token, "settings": to_json(self.settings),
                "streams": self.streams, "encodings": list(ENCODINGS), "n_latents": self.n_latents, "k": self.k,
                "n_rows": self.n_rows, "hist_edges": HIST_EDGES.tolist(), "source": self.source,
                "seconds": round(self.seconds, 3),
            })
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LatentStats:
        """Read statistics written by :meth:`save`; SparcError if missing or broken."""
        directory = Path(directory)
        fix = f"recompute them (sparc stats RUN --recompute) or delete {directory}"
        try:
            meta = json.loads((directory / STATS_JSON).read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(f"not {FORMAT} version {VERSION}")
            arrays = load_file(str(directory / STATS_FILE))
            with safe_open(str(directory / STATS_FILE), "np") as f:
                token = (f.metadata() or {}).get("token")
            settings = from_json(StatsSettings, meta["settings"], what=str(directory / STATS_JSON))
        except FileNotFoundError:
            raise SparcError(f"no latent statistics in {directory}; compute them with 'sparc stats RUN'") from None
        except (OSError, ValueError, KeyError, SafetensorError) as e:
            raise SparcError(f"the latent statistics in {directory} are unreadable ({e}); {fix}") from None
        if token != meta["token"]:
            raise SparcError(f"{directory}: {STATS_FILE} and {STATS_JSON} come from different runs of the pass; {fix}")
        return cls(settings=settings, streams=list(meta["streams"]), n_latents=int(meta["n_latents"]),
                   k=int(meta["k"]), concept_j=arrays.pop("concept_j", None), source=meta.get("source", {}),
                   seconds=float(meta.get("seconds", 0.0)), **{name: arrays[name] for name in _ARRAYS})


_ARRAYS = ("rows", "fires", "act_sum", "act_max", "top_rows", "top_vals", "sample_rows", "sample_vals", "hist",
           "n_any", "n_all", "codes_idx", "codes_val")


# ------------------------------------------------------------------------------ identity


def model_digest(model: SPARC) -> str:
    """SHA-256 of the model's configuration and weights (any change recomputes the statistics)."""
    h = hashlib.sha256(json.dumps(model.config_dict(), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def store_identity(store: FeatureStore) -> dict:
    """What identifies a store's content: its path, creation stamp and size."""
    return {"path": str(store.path.resolve()), "created": store.manifest.created, "n_rows": store.n_rows}


# ------------------------------------------------------------------------------ the pass


class _Accumulator:
    """The per-latent accumulators of all encodings and streams of one pass."""

    def __init__(self, streams: list[str], n_latents: int, settings: StatsSettings, label_sets):
        E, S, L = len(ENCODINGS), len(streams), n_latents
        self.S, self.L = S, L
        self.seed = settings.seed
        self.fires = np.zeros((E, S, L), dtype=np.int64)
        self.act_sum = np.zeros((E, S, L))
        self.act_max = np.zeros((E, S, L), dtype=np.float32)
        self.hist = np.zeros((E, S, L, len(HIST_EDGES) - 1), dtype=np.int64)
        self.n_any = np.zeros((E, L), dtype=np.int64)
        self.n_all = np.zeros((E, L), dtype=np.int64)
        self.top = TopN(E * S * L, settings.top)
        self.sample = TopN(E * S * L, settings.quantile_bins * settings.per_bin)
        self.concepts = [ConceptCounter(streams, L, label_sets) for _ in ENCODINGS] if label_sets else None
        self.streams = streams

    def update(self, e: int, start: int, rows: np.ndarray, codes: dict[str, SparseCode]) -> None:
        """Add the chunk's codes of encoding ``e``; ``rows`` are its store rows, ``start``
        its position in the split."""
        H = len(HIST_EDGES) - 1
        keys_any = []
        for s, name in enumerate(self.streams):
            idx, val = codes[name].indices.cpu().numpy(), codes[name].values.float().cpu().numpy()
            r, j = np.nonzero(val > 0)
            lat, v = idx[r, j], val[r, j]
            self.fires[e, s] += np.bincount(lat, minlength=self.L)
            self.act_sum[e, s] += np.bincount(lat, weights=v, minlength=self.L)
            np.maximum.at(self.act_max[e, s], lat, v)
            b = np.clip(np.searchsorted(HIST_EDGES, v, side="right") - 1, 0, H - 1)
            self.hist[e, s] += np.bincount(lat * H + b, minlength=self.L * H).reshape(self.L, H)
            group = (e * self.S + s) * self.L + lat
            store_rows = rows[r]
            self.top.update(group, v.astype(np.float64), store_rows, v)
            self.sample.update(group, hash_keys(store_rows, group, self.seed), store_rows, v)
            keys_any.append(r.astype(np.int64) * self.L + lat)
        keys, counts = np.unique(np.concatenate(keys_any), return_counts=True)
        lat_any = keys % self.L
        self.n_any[e] += np.bincount(lat_any, minlength=self.L)
        self.n_all[e] += np.bincount(lat_any[counts == self.S], minlength=self.L)
        if self.concepts is not None:
            self.concepts[e].update(start, codes)

    def finish(self) -> dict:
        E, S, L = len(ENCODINGS), self.S, self.L
        top_rows, _, top_vals = self.top.result()
        s_rows, _, s_vals = self.sample.result()
        # The sample is kept by random key; show it by decreasing value (padding last).
        order = np.argsort(np.where(s_rows >= 0, -s_vals, np.inf), axis=1, kind="stable")
        s_rows, s_vals = np.take_along_axis(s_rows, order, 1), np.take_along_axis(s_vals, order, 1)
        concept_j = None
        if self.concepts is not None:
            concept_j = np.stack([concept_jaccard(c.counts_at(0), self.streams)[1] for c in self.concepts])
        shape = (E, S, L, -1)
        return dict(fires=self.fires, act_sum=self.act_sum, act_max=self.act_max,
                    top_rows=top_rows.reshape(shape), top_vals=top_vals.reshape(shape),
                    sample_rows=s_rows.reshape(shape), sample_vals=s_vals.reshape(shape),
                    hist=self.hist.astype(np.int32), n_any=self.n_any, n_all=self.n_all, concept_j=concept_j)


@torch.no_grad()
def compute_stats(model: SPARC, store: FeatureStore, settings: StatsSettings = StatsSettings()) -> LatentStats:
    """The latent statistics of ``model`` on ``settings.split`` of ``store``, in one pass.

    Each chunk is encoded once (:meth:`SPARC.logits`) and both encodings are selected
    from the same logits, as the evaluation does.
    """
    t0 = time.perf_counter()
    streams = check_streams(model, store)
    rows = rows_of_split(store, Split.parse(settings.split))
    N = len(rows)
    device = torch.device(check_device(settings.device))
    model = model.to(device).eval()
    labels = [store.rows()[r].labels for r in rows]
    label_sets = [(None, label_matrix(labels))] if any(labels) else []
    acc = _Accumulator(streams, model.n_latents, settings, label_sets)
    codes = {s: CodeTable(N, model.cfg.k, model.n_latents) for s in streams}
    for chunk in encode_in_chunks(model, store, streams, rows, settings.chunk_rows, device,
                                  progress=settings.progress, desc="latent stats"):
        acc.update(0, chunk.start, rows[chunk.start:chunk.stop], chunk.joint)
        acc.update(1, chunk.start, rows[chunk.start:chunk.stop], chunk.independent)
        for s in streams:
            codes[s].put(chunk.start, chunk.independent[s])
    arrays = acc.finish()
    same_width([codes[s] for s in streams])  # BatchTopK's streams may differ in their widest row
    return LatentStats(
        settings=settings, streams=streams, n_latents=model.n_latents, k=model.cfg.k, rows=np.asarray(rows),
        codes_idx=np.stack([codes[s].indices for s in streams]), codes_val=np.stack([codes[s].values for s in streams]),
        source={"model": model_digest(model), "store": store_identity(store)},
        seconds=time.perf_counter() - t0, **arrays)


def load_if_current(path: Path, load: Callable[[], T], current: Callable[[T], bool], log: Callable[[str], Any], *,
                    redo: str, stale: str | None = None) -> T | None:
    """What ``load`` reads from the saved ``path`` when it is there, readable and
    ``current``; else None, having logged ``redo`` (what happens instead) and why — a
    file that does not load, or (when ``stale`` says how) one that is out of date."""
    if not path.exists():
        return None
    try:
        saved = load()
    except SparcError as e:
        log(f"{redo}: {e}")
        return None
    if current(saved):
        return saved
    if stale is not None:
        log(f"{redo} in {path.parent}: {stale}")
    return None


def stats_for_run(run: str | Path, model: SPARC, store: FeatureStore, settings: StatsSettings = StatsSettings(), *,
                  recompute: bool = False, reuse_any: bool = False, log=print) -> LatentStats:
    """The run's saved statistics when they were computed from this model and store
    with these settings (``reuse_any``: with any settings, for the same split); else
    compute and save them."""
    directory = explore_dir(run, settings.split)
    wanted = {"model": model_digest(model), "store": store_identity(store)}

    def current(saved: LatentStats) -> bool:
        same = saved.settings.identity() == settings.identity() or (
            reuse_any and saved.settings.identity()["split"] == settings.identity()["split"])
        return saved.source == wanted and same

    saved = None if recompute else load_if_current(
        directory / STATS_JSON, lambda: LatentStats.load(directory), current, log,
        redo="recomputing the latent statistics", stale="the model, the store or the settings changed")
    if saved is not None:
        return saved
    stats = compute_stats(model, store, settings)
    stats.save(directory)
    return stats
