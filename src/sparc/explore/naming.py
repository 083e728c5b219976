"""Concept names of latents (docs/method.md §5, "Concept naming").

**(a) From labels**, the original's protocol (its notebook
``t2_aligned_concept_visualization``): for latent ``l`` and stream ``s``, take the
``top`` (50) labelled rows with the largest activation among the rows where ``l`` fires
(joint encoding by default, as the original); the *majority label* is the label carried
by most of them, its *purity* = that count / the number of rows taken; the name is
accepted when purity ≥ ``min_purity`` (0.3). A latent is *aligned* when every stream
accepts the same name. Departures, on purpose: ties go to the deeper label of the
hierarchy (then the name), not to the first class index; ``labels="specific"`` drops
from each row the labels that are ancestors of its other labels (for stores such as
OpenMoji whose rows carry a group and its subgroup).

**(b) From a vocabulary**, without labels: the entries of a vocabulary (by default the
store's label names and the captions of the rows *outside* the split, so a held-out
row's own caption never names a latent; or a word list, one entry a line) go through
a text stream — captions the store already holds are read from it, the rest are
encoded by the stream's backbone (:func:`sparc.explore.sources.backbone_for`) — and
each entry's independent SPARC code scores every latent by its activation there. A
latent's words are its ``words`` (5) entries of largest activation.

:func:`evaluate_vocabulary_names` measures (b) against (a): over the latents named in
a stream, how often the top vocabulary entry *belongs to* the latent's majority label
(the entry is that label or a descendant, or a caption of a row carrying it), against
chance (the fraction of all entries that belong to it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from sparc.atomic import write_json
from sparc.data import FeatureStore
from sparc.data.normalize import l2_normalize
from sparc.errors import SparcError
from sparc.eval.features import model_inputs
from sparc.eval.labels import ancestors, depth_of
from sparc.explore.settings import NamingSettings
from sparc.explore.sources import backbone_for, encode_with, streams_of
from sparc.explore.stats import LatentStats, explore_dir, load_if_current
from sparc.explore.topn import TopN
from sparc.jsonio import from_json, to_json
from sparc.model import SPARC

NAMES_JSON = "names.json"
FORMAT = "sparc-latent-names"
VERSION = 1


@dataclass
class Names:
    """Names of every latent. Per-stream arrays are [S, L] in the order of :attr:`streams`."""

    settings: NamingSettings
    streams: list[str]
    classes: list[str]
    """Label names that occur (index → name)."""
    majority: np.ndarray
    """int64 [S, L]: class index of the majority label, −1 when the latent has no labelled firing row."""
    count: np.ndarray
    """int64 [S, L]: top rows carrying it."""
    n_voters: np.ndarray
    """int64 [S, L]: top rows that voted (≤ top)."""
    text_stream: str | None = None
    vocabulary: list[str] = field(default_factory=list)
    vocabulary_kind: list[str] = field(default_factory=list)
    """Per entry: "label", "caption" or "word"."""
    words: np.ndarray | None = None
    """int64 [L, words]: vocabulary entries by decreasing activation, −1 pads."""
    word_scores: np.ndarray | None = None
    """float32 [L, words]."""
    evaluation: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)

    @property
    def n_latents(self) -> int:
        return self.majority.shape[1]

    @cached_property
    def purity(self) -> np.ndarray:
        """float [S, L] (0 where no row voted)."""
        return np.where(self.n_voters > 0, self.count / np.maximum(self.n_voters, 1), 0.0)

    @cached_property
    def accepted(self) -> np.ndarray:
        """bool [S, L]: the stream names the latent."""
        return (self.majority >= 0) & (self.purity >= self.settings.min_purity)

    @cached_property
    def aligned(self) -> np.ndarray:
        """bool [L]: every stream accepts the same name."""
        acc = self.accepted
        same = (self.majority == self.majority[:1]).all(0)
        return acc.all(0) & same

    def label_name(self, stream: str, latent: int) -> str | None:
        """The accepted name of ``latent`` in ``stream`` (None: not named)."""
        s = self.streams.index(stream)
        return self.classes[self.majority[s, latent]] if self.accepted[s, latent] else None

    def name(self, latent: int) -> str | None:
        """One display name: the aligned name, else the names the streams accept, with
        their streams (e.g. ``"dog (img) / cat (txt)"``), else None."""
        if self.aligned[latent]:
            return self.classes[self.majority[0, latent]]
        parts: dict[str, list[str]] = {}
        for s, stream in enumerate(self.streams):
            if self.accepted[s, latent]:
                parts.setdefault(self.classes[self.majority[s, latent]], []).append(stream)
        return " / ".join(f"{n} ({', '.join(ss)})" for n, ss in parts.items()) or None

    def top_words(self, latent: int) -> list[tuple[str, float]]:
        """The latent's vocabulary entries with their activation."""
        if self.words is None:
            return []
        return [(self.vocabulary[i], float(v)) for i, v in zip(self.words[latent], self.word_scores[latent]) if i >= 0]

    # -- files ----------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "settings": to_json(self.settings), "source": self.source,
            "streams": self.streams, "classes": self.classes, "majority": self.majority.tolist(),
            "count": self.count.tolist(), "n_voters": self.n_voters.tolist(), "text_stream": self.text_stream,
            "vocabulary": self.vocabulary, "vocabulary_kind": self.vocabulary_kind,
            "words": None if self.words is None else self.words.tolist(),
            "word_scores": None if self.word_scores is None else np.round(self.word_scores.astype(np.float64), 5).tolist(),
            "evaluation": self.evaluation, "notes": self.notes,
        }

    def save(self, directory: str | Path) -> Path:
        write_json(Path(directory) / NAMES_JSON, self.to_json())
        return Path(directory) / NAMES_JSON

    @classmethod
    def load(cls, directory: str | Path) -> Names:
        path = Path(directory) / NAMES_JSON
        try:
            d = json.loads(path.read_text())
            if d.get("format") != FORMAT or d.get("version") != VERSION:
                raise ValueError(f"not {FORMAT} version {VERSION}")
            words = d["words"]
            return cls(
                settings=from_json(NamingSettings, d["settings"], what=str(path)), streams=list(d["streams"]),
                classes=list(d["classes"]), majority=np.asarray(d["majority"], dtype=np.int64),
                count=np.asarray(d["count"], dtype=np.int64), n_voters=np.asarray(d["n_voters"], dtype=np.int64),
                text_stream=d["text_stream"], vocabulary=list(d["vocabulary"]),
                vocabulary_kind=list(d["vocabulary_kind"]),
                words=None if words is None else np.asarray(words, dtype=np.int64).reshape(len(words), -1),
                word_scores=None if words is None else np.asarray(d["word_scores"], dtype=np.float32).reshape(len(words), -1),
                evaluation=d.get("evaluation", {}), notes=list(d.get("notes", [])), source=d.get("source", {}))
        except FileNotFoundError:
            raise SparcError(f"no latent names in {path.parent}; compute them with 'sparc names RUN'") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SparcError(f"{path} is unreadable ({e}); recompute it with 'sparc names RUN'") from None


# ------------------------------------------------------------------------------ (a) labels


def row_labels(store: FeatureStore, rows: np.ndarray, level: str) -> list[tuple[str, ...]]:
    """The labels of ``rows`` that vote: as given, or only the most specific ones."""
    meta = store.rows()
    labels = [meta[r].labels for r in rows]
    hierarchy = store.label_hierarchy()
    if level == "given" or not hierarchy:
        return labels
    out = []
    for row in labels:
        above = {a for x in row for a in ancestors(x, hierarchy)[1:]}
        out.append(tuple(x for x in row if x not in above))
    return out


def label_names(stats: LatentStats, store: FeatureStore, settings: NamingSettings) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(classes, majority, count, n_voters) of every latent and stream, from the top rows."""
    if settings.top > stats.settings.top:
        raise SparcError(f"naming reads the top {settings.top} rows but the statistics kept {stats.settings.top}; "
                         f"recompute them with --top {settings.top} or name with --top {stats.settings.top}")
    e = stats.encoding_index(settings.encoding)
    S, L = len(stats.streams), stats.n_latents
    top_rows = stats.top_rows[e]  # [S, L, T] store rows
    wanted = np.unique(top_rows[top_rows >= 0])
    labels = dict(zip(wanted.tolist(), row_labels(store, wanted, settings.labels)))
    classes = sorted({x for row in labels.values() for x in row})
    ids = {c: i for i, c in enumerate(classes)}
    hierarchy = store.label_hierarchy() or {}
    # ties: deeper label first, then the name
    rank = np.array(sorted(range(len(classes)), key=lambda i: (-depth_of(classes[i], hierarchy), classes[i])))
    order_of = np.empty(len(classes), dtype=np.int64)
    order_of[rank] = np.arange(len(classes))
    majority = np.full((S, L), -1, dtype=np.int64)
    count = np.zeros((S, L), dtype=np.int64)
    n_voters = np.zeros((S, L), dtype=np.int64)
    row_ids = {r: np.array(sorted(order_of[ids[x]] for x in row), dtype=np.int64) for r, row in labels.items()}
    for s in range(S):
        for lat in range(L):
            voters = [row_ids[r] for r in top_rows[s, lat].tolist() if r >= 0 and len(row_ids[r])][:settings.top]
            if not voters:
                continue
            votes = np.bincount(np.concatenate(voters), minlength=len(classes))
            best = int(np.argmax(votes))  # first maximum = the preferred tie
            majority[s, lat], count[s, lat], n_voters[s, lat] = rank[best], votes[best], len(voters)
    return classes, majority, count, n_voters


# ------------------------------------------------------------------------------ (b) vocabulary


@dataclass
class Vocabulary:
    entries: list[str]
    kind: list[str]
    belongs: list[frozenset[str]]
    """Per entry, the labels it belongs to (with their ancestors)."""
    features: np.ndarray | None = None
    """Rows of the store whose stored text features encode the entry (−1: encode it)."""


def default_vocabulary(store: FeatureStore, stats: LatentStats, level: str) -> Vocabulary:
    """The store's label names (those of its rows and of its hierarchy), then the unique
    captions of the rows outside the split (every row when the split is all), in store order."""
    hierarchy = store.label_hierarchy() or {}
    meta = store.rows()
    if stats.settings.split == "all":
        outside = np.arange(store.n_rows)
    else:
        inside = np.zeros(store.n_rows, dtype=bool)
        inside[stats.rows] = True
        outside = np.flatnonzero(~inside)
    with_ancestors = {}

    def lifted(x: str) -> set[str]:
        if x not in with_ancestors:
            with_ancestors[x] = set(ancestors(x, hierarchy)) if hierarchy else {x}
        return with_ancestors[x]

    labels = sorted(set(store.labels_vocab()) | set(hierarchy))
    entries, kind, belongs, rows = list(labels), ["label"] * len(labels), [frozenset(lifted(x)) for x in labels], \
        [-1] * len(labels)
    caption_at: dict[str, int] = {}
    row_lab = row_labels(store, outside, level)
    for r, labs in zip(outside.tolist(), row_lab):
        cap = (meta[r].caption or "").strip()
        if not cap:
            continue
        lab = set().union(*(lifted(x) for x in labs)) if labs else set()
        if cap in caption_at:
            i = caption_at[cap]
            belongs[i] = belongs[i] | lab
            continue
        caption_at[cap] = len(entries)
        entries.append(cap)
        kind.append("caption")
        belongs.append(frozenset(lab))
        rows.append(r)
    return Vocabulary(entries, kind, belongs, np.asarray(rows, dtype=np.int64))


def word_list(path: Path, store: FeatureStore) -> Vocabulary:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SparcError(f"cannot read the vocabulary {path}: {e}") from None
    entries = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not entries:
        raise SparcError(f"the vocabulary {path} has no entries; write one word or phrase a line")
    hierarchy = store.label_hierarchy() or {}
    known = {x.lower(): x for x in store.labels_vocab()}
    belongs = [frozenset(ancestors(known[w.lower()], hierarchy) if hierarchy else [known[w.lower()]])
               if w.lower() in known else frozenset() for w in entries]
    return Vocabulary(entries, ["word"] * len(entries), belongs, np.full(len(entries), -1, dtype=np.int64))


@torch.no_grad()
def vocabulary_names(model: SPARC, store: FeatureStore, vocab: Vocabulary, stream: str, settings: NamingSettings,
                     notes: list[str], *, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, Vocabulary]:
    """(words [L, n], scores [L, n], the vocabulary used) of every latent."""
    stored = vocab.features >= 0
    if (~stored).any():
        try:
            backbone = backbone_for(store, stream, spec=settings.backbone, device=settings.device)
        except SparcError as e:
            if settings.vocabulary is not None or not stored.any():
                raise
            notes.append(f"label names left out of the vocabulary: {e}")
            keep = np.flatnonzero(stored)
            vocab = Vocabulary([vocab.entries[i] for i in keep], [vocab.kind[i] for i in keep],
                               [vocab.belongs[i] for i in keep], vocab.features[keep])
            stored = np.ones(len(keep), dtype=bool)
    top = TopN(model.n_latents, settings.words)
    device = next(model.parameters()).device
    for a in range(0, len(vocab.entries), chunk):
        b = min(a + chunk, len(vocab.entries))
        x = np.zeros((b - a, model.streams[stream]), dtype=np.float32)
        part = stored[a:b]
        if part.any():
            rows = vocab.features[a:b][part]
            order = np.argsort(rows)
            feats = model_inputs(store, stream, rows[order]).numpy()
            x[np.flatnonzero(part)[order]] = feats
        if (~part).any():
            texts = [vocab.entries[i] for i in range(a, b) if not stored[i]]
            x[~part] = l2_normalize(encode_with(backbone, texts, stream).numpy().astype(np.float32))
        code = model.encode({stream: torch.from_numpy(x).to(device)})[stream]
        idx, val = code.indices.cpu().numpy(), code.values.float().cpu().numpy()
        r, j = np.nonzero(val > 0)
        top.update(idx[r, j], val[r, j].astype(np.float64), r + a, val[r, j])
    words, _, scores = top.result()
    return words, scores, vocab


def evaluate_vocabulary_names(names: Names, belongs: Sequence[frozenset[str]]) -> dict:
    """How often a latent's top vocabulary entry belongs to its majority label, per
    stream and for the aligned latents, against chance."""
    if names.words is None or not len(belongs):
        return {}
    has_word = names.words[:, 0] >= 0
    V = len(belongs)
    share = {c: sum(c in b for b in belongs) / V for c in set(names.classes)}
    out = {}
    sets = [(s, names.accepted[i]) for i, s in enumerate(names.streams)] + [("aligned", names.aligned)]
    for key, named in sets:
        lat = np.flatnonzero(named & has_word)
        si = 0 if key == "aligned" else names.streams.index(key)
        if not len(lat):
            out[key] = {"latents": 0}
            continue
        hit1 = hit_any = 0
        chance = chance_any = 0.0
        for lt in lat.tolist():
            label = names.classes[names.majority[si, lt]]
            ws = [w for w in names.words[lt] if w >= 0]
            hit1 += label in belongs[ws[0]]
            hit_any += any(label in belongs[w] for w in ws)
            chance += share[label]
            chance_any += 1 - (1 - share[label]) ** len(ws)  # any of as many random entries
        n = len(lat)
        out[key] = {"latents": n, "top1": hit1 / n, "top_words": hit_any / n, "chance": chance / n,
                    "chance_top_words": chance_any / n}
    return out


# ------------------------------------------------------------------------------ both


def name_latents(model: SPARC, store: FeatureStore, stats: LatentStats, settings: NamingSettings = NamingSettings(),
                 *, log=print) -> Names:
    """Names (a) from labels when the rows have them, and (b) from a vocabulary through
    a text stream when the model has one; with the (b)-against-(a) figures."""
    notes: list[str] = []
    if stats.streams != list(model.names):
        raise SparcError("the statistics were computed for another model; recompute them")
    classes, majority, count, n_voters = label_names(stats, store, settings)
    if not classes:
        notes.append("no labelled row among the top rows: no names from labels")
    names = Names(settings=settings, streams=list(stats.streams), classes=classes, majority=majority,
                  count=count, n_voters=n_voters, notes=notes,
                  source={"stats": stats.source, "stats_settings": stats.settings.identity()})
    texts = streams_of(store, list(model.names), "text")
    stream = settings.text_stream
    if stream is not None and stream not in texts:
        raise SparcError(f"--text-stream {stream!r} is not a text stream of this run (text streams: "
                         f"{', '.join(texts) or 'none'})")
    stream = stream or (texts[0] if texts else None)
    if stream is None:
        notes.append("no text stream: no names from a vocabulary")
        return names
    vocab = word_list(settings.vocabulary, store) if settings.vocabulary else default_vocabulary(
        store, stats, settings.labels)
    if not vocab.entries:
        notes.append("the vocabulary is empty (no labels, no captions outside the split): no names from it")
        return names
    words, scores, vocab = vocabulary_names(model, store, vocab, stream, settings, notes)
    names.text_stream, names.vocabulary, names.vocabulary_kind = stream, vocab.entries, vocab.kind
    names.words, names.word_scores = words, scores
    if classes and stats.settings.split == "all" and settings.vocabulary is None:
        notes.append("vocabulary names not measured against label names: on split all the vocabulary holds the "
                     "captions of the very rows that name the latents (measure on a held-out split)")
    elif classes:
        names.evaluation = evaluate_vocabulary_names(names, vocab.belongs)
    return names


def names_for_run(run: str | Path, model: SPARC, store: FeatureStore, stats: LatentStats,
                  settings: NamingSettings = NamingSettings(), *, recompute: bool = False, reuse_any: bool = False,
                  log=print) -> Names:
    """The run's saved names when made from these statistics with these settings
    (``reuse_any``: with any settings); else name the latents and save the names beside
    the statistics."""
    directory = explore_dir(run, stats.settings.split)
    wanted = {"stats": stats.source, "stats_settings": stats.settings.identity()}

    def current(saved: Names) -> bool:
        same = reuse_any or saved.settings.identity() == settings.identity()
        return saved.source == json.loads(json.dumps(wanted)) and same

    saved = None if recompute else load_if_current(directory / NAMES_JSON, lambda: Names.load(directory), current,
                                                   log, redo="renaming the latents")
    if saved is not None:
        return saved
    names = name_latents(model, store, stats, settings, log=log)
    names.save(directory)
    return names


def render_evaluation(names: Names) -> str:
    """The (b)-against-(a) figures as a Markdown table."""
    if not names.evaluation:
        return ""
    lines = [f"Vocabulary names (through {names.text_stream}, {len(names.vocabulary):,} entries) against label names "
             f"({names.settings.encoding} encoding, top {names.settings.top}, purity ≥ {names.settings.min_purity:g}):",
             "", "| latents named in | latents | top word belongs to the name | chance | any of the top "
             f"{names.words.shape[1]} words | chance |", "|---|---|---|---|---|---|"]
    for key, ev in names.evaluation.items():
        if ev.get("latents"):
            lines.append(f"| {key} | {ev['latents']:,} | {ev['top1']:.3f} | {ev['chance']:.3f} | {ev['top_words']:.3f} "
                         f"| {ev['chance_top_words']:.3f} |")
        else:
            lines.append(f"| {key} | 0 | – | – | – | – |")
    return "\n".join(lines)
