"""The engine behind ``sparc latent``, ``sparc query`` and the report: a run, its store,
the latent statistics and the names, and queries through the shared latents.

A query is a caption, an image or a row of the store. It is encoded by its stream's
own backbone (rebuilt from the store's manifest and checked against the recorded
fingerprint, :mod:`sparc.explore.sources`), L2-normalised as the model expects
(docs/method.md §1.6) and encoded by that stream ALONE — the independent code, the only
one a single modality has. Its active latents are listed with their names, and the rows
of the split are ranked, in every other stream, by the cosine between the query's
sparse code and the row's independent code in that stream (as the original's retrieval
notebooks rank by latents): the shared latents are the only bridge between the streams.

From Python::

    from sparc.explore import Explorer

    ex = Explorer.open("runs/sparc")                  # the store it was trained on, test split
    result = ex.query_text("a red apple", top=10)
    result.latents                                    # [(latent, value), ...]
    result.ranked["img"]                              # [(store row, cosine), ...]
    ex.names.name(result.latents[0][0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparc.data import FeatureStore
from sparc.data.normalize import l2_normalize
from sparc.errors import SparcError
from sparc.eval.features import model_inputs
from sparc.eval.streaming import check_streams
from sparc.explore.naming import Names, names_for_run
from sparc.explore.settings import NamingSettings, StatsSettings
from sparc.explore.sources import backbone_for, encode_with, read_image, stream_modality, streams_of
from sparc.explore.stats import LatentStats, stats_for_run
from sparc.model import SPARC, SparseCode
from sparc.train.rundir import RunDir, load_model


def check_store_belongs(run: Path | None, model: SPARC, store: FeatureStore) -> None:
    """Refuse a store whose streams do not fit the model, or whose features come from
    other backbones than the store the run was trained on."""
    check_streams(model, store)
    if run is None:
        return
    try:
        trained = FeatureStore.open(RunDir(run).trained_store())
    except SparcError:
        return  # nothing recorded, or the training store is gone: the widths were checked
    if trained.path.resolve() == store.path.resolve():
        return
    for s in model.names:
        if trained.manifest.streams[s].source != store.manifest.streams[s].source:
            raise SparcError(f"store '{store.path}' does not belong to run {run}: its stream {s!r} comes from "
                             f"another backbone than the store the run was trained on ('{trained.path}'); "
                             "use a store extracted with the same backbones")


@dataclass
class QueryResult:
    """What a query reached."""

    query: str
    """What was asked, for display ("text 'a red apple'", "row r12", ...)."""
    stream: str
    """Stream the query was encoded through (alone)."""
    code: SparseCode
    """Its independent code (one row)."""
    latents: list[tuple[int, float]]
    """Its active latents and their values, largest first."""
    ranked: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Every other stream → its top (store row, cosine of sparse codes), best first."""


class Explorer:
    """A model with its store, latent statistics and names.

    Parameters
    ----------
    model, store, stats
        The model, a store that fits it and the statistics of a split of that store.
    names
        The latents' names (None: queries show no names).
    run
        The run directory (where statistics and names are saved).
    device
        Torch device of the backbones built for queries.
    """

    def __init__(self, model: SPARC, store: FeatureStore, stats: LatentStats, names: Names | None = None, *,
                 run: Path | None = None, device: str = "cpu"):
        self.model = model.eval()
        self.store = store
        self.stats = stats
        self.names = names
        self.run = run
        self.device = device
        self._backbones: dict[str, object] = {}
        self._row_of_id: dict[str, int] | None = None
        self._unit: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, run: str | Path, store: str | Path | None = None, *,
             stats_settings: StatsSettings = StatsSettings(), naming: NamingSettings | None = NamingSettings(),
             recompute: bool = False, reuse_any: bool = False, device: str = "cpu", log=print) -> Explorer:
        """Load the run's model and store (default: the one it was trained on), and its
        statistics and names (computed and saved on first use; ``reuse_any``: the saved
        ones of the split whatever their settings). ``naming=None`` skips the names."""
        run = Path(run)
        model = load_model(run)
        store = FeatureStore.open(store if store is not None else RunDir(run).trained_store())
        check_store_belongs(run, model, store)
        stats = stats_for_run(run, model, store, stats_settings, recompute=recompute, reuse_any=reuse_any, log=log)
        names = None
        if naming is not None:
            names = names_for_run(run, model, store, stats, naming, recompute=recompute, reuse_any=reuse_any, log=log)
        return cls(model, store, stats, names, run=run, device=device)

    # -- streams ----------------------------------------------------------------------------

    def describe_streams(self) -> str:
        return ", ".join(f"{s} ({stream_modality(self.store, s) or 'no backbone recorded'})" for s in self.model.names)

    def _stream_for(self, modality: str, stream: str | None) -> str:
        candidates = streams_of(self.store, list(self.model.names), modality)
        if stream is not None:
            if stream not in self.model.names:
                raise SparcError(f"unknown stream {stream!r}; this run has: {self.describe_streams()}")
            if stream not in candidates:
                raise SparcError(f"stream {stream!r} does not read {modality}s; this run has: {self.describe_streams()}")
            return stream
        if not candidates:
            other = "--image" if modality == "text" else "--text"
            raise SparcError(f"this run has no {modality} stream ({self.describe_streams()}); "
                             f"query by {other} or --row")
        return candidates[0]

    def backbone(self, stream: str, spec: str | None = None):
        """The stream's backbone, rebuilt once and checked against the store's fingerprint."""
        if stream not in self._backbones:
            self._backbones[stream] = backbone_for(self.store, stream, spec=spec, device=self.device)
        return self._backbones[stream]

    # -- encoding ---------------------------------------------------------------------------

    @torch.no_grad()
    def encode_features(self, stream: str, x: np.ndarray) -> SparseCode:
        """Independent codes of raw features [n, d] of ``stream`` (normalised here)."""
        x = l2_normalize(np.asarray(x, dtype=np.float32).copy())
        device = next(self.model.parameters()).device
        return self.model.encode({stream: torch.from_numpy(x).to(device)})[stream]

    def encode_texts(self, texts: list[str], stream: str | None = None, *, backbone: str | None = None) -> SparseCode:
        stream = self._stream_for("text", stream)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise SparcError("a text query needs a non-empty text")
        return self.encode_features(stream, encode_with(self.backbone(stream, backbone), texts, stream).numpy())

    # -- queries ----------------------------------------------------------------------------

    def query_text(self, text: str, stream: str | None = None, *, top: int = 10, backbone: str | None = None) -> QueryResult:
        """Encode ``text`` through a text stream (default: the first) and rank the other streams' rows."""
        stream = self._stream_for("text", stream)
        code = self.encode_texts([text], stream, backbone=backbone)
        return self.query_code(code, stream, f"text {text!r}", top=top)

    def query_image(self, image: str | Path | Image.Image, stream: str | None = None, *, top: int = 10,
                    backbone: str | None = None) -> QueryResult:
        """Encode an image (file or PIL image) through an image stream and rank the other streams' rows."""
        stream = self._stream_for("image", stream)
        what = f"image {image}" if not isinstance(image, Image.Image) else "image"
        pil = image if isinstance(image, Image.Image) else read_image(image)
        x = encode_with(self.backbone(stream, backbone), [pil.convert("RGB")], stream).numpy()
        return self.query_code(self.encode_features(stream, x), stream, what, top=top)

    def row_index(self, row_id: str) -> int:
        """The store row with id ``row_id``."""
        if self._row_of_id is None:
            self._row_of_id = {m.row_id: i for i, m in enumerate(self.store.rows())}
        if row_id not in self._row_of_id:
            raise SparcError(f"no row {row_id!r} in store '{self.store.path}'")
        return self._row_of_id[row_id]

    def query_row(self, row_id: str, stream: str | None = None, *, top: int = 10) -> QueryResult:
        """Encode a row of the store through one stream (default: the model's first) alone."""
        stream = stream or self.model.names[0]
        if stream not in self.model.names:
            raise SparcError(f"unknown stream {stream!r}; this run has: {self.describe_streams()}")
        r = self.row_index(row_id)
        x = model_inputs(self.store, stream, np.array([r]))
        with torch.no_grad():
            code = self.model.encode({stream: x.to(next(self.model.parameters()).device)})[stream]
        return self.query_code(code, stream, f"row {row_id} ({stream})", top=top)

    def query_code(self, code: SparseCode, stream: str, what: str = "code", *, top: int = 10) -> QueryResult:
        """The active latents of a one-row code and the top rows of every other stream."""
        idx, val = code.indices[0].cpu().numpy(), code.values[0].float().cpu().numpy()
        order = np.lexsort((idx, -val))
        latents = [(int(idx[i]), float(val[i])) for i in order if val[i] > 0]
        result = QueryResult(what, stream, code, latents)
        for t in self.model.names:
            if t != stream:
                result.ranked[t] = self.rank(code, t, top)
        return result

    def _unit_codes(self, stream: str) -> np.ndarray:
        if stream not in self._unit:
            s = self.stats.stream_index(stream)
            v = self.stats.codes_val[s].astype(np.float32)
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            self._unit[stream] = v / np.where(norm > 0, norm, 1.0)
        return self._unit[stream]

    def rank(self, code: SparseCode, stream: str, top: int = 10) -> list[tuple[int, float]]:
        """The split's rows whose independent code in ``stream`` has the largest cosine with
        the one-row ``code`` (ties: lower row first), as (store row, cosine)."""
        q = code.dense()[0].float().cpu().numpy()
        norm = np.linalg.norm(q)
        if norm == 0:
            return []
        q /= norm
        s = self.stats.stream_index(stream)
        scores = (q[self.stats.codes_idx[s]] * self._unit_codes(stream)).sum(1)
        best = np.lexsort((self.stats.rows, -scores))[:top]
        return [(int(self.stats.rows[i]), float(scores[i])) for i in best]

    @torch.no_grad()
    def best_elsewhere(self, code: SparseCode, stream: str, *, chunk: int = 4096) -> tuple[int, float] | None:
        """The store row outside the statistics' split whose independent code in ``stream``
        is closest (cosine) to the one-row ``code``, as (store row, cosine); None when the
        split is every row or nothing outside fires. What a query over one split misses."""
        outside = np.setdiff1d(np.arange(self.store.n_rows), self.stats.rows)
        q = code.dense()[0].float().cpu()
        if outside.size == 0 or float(q.norm()) == 0:
            return None
        q /= q.norm()
        device = next(self.model.parameters()).device
        best: tuple[int, float] | None = None
        for start in range(0, outside.size, chunk):
            rows = outside[start:start + chunk]
            z = self.model.encode({stream: model_inputs(self.store, stream, rows).to(device)})[stream]
            dense = z.dense().float().cpu()
            scores = (dense @ q) / dense.norm(dim=1).clamp_min(1e-12)
            i = int(scores.argmax())
            if best is None or float(scores[i]) > best[1]:
                best = (int(rows[i]), float(scores[i]))
        return best

