"""A model scored against the planted truth of its store (docs/method.md §5.10).

Two kinds of figure. From the **decoder** alone: how close each true direction's best
decoder row comes (recovered, median best cosine, one-to-one matched), whether one
latent points at a shared concept in every stream (aligned), and which latents match
shared and which exclusive concepts. From the **firing** of the evaluated rows, each
stream encoded alone (the independent encoding): whether one latent fires for a shared
concept in every stream, which latents fire in one stream only, and whether a parent's
latent stops firing when a child is active (absorption).

Firing is counted chunk by chunk as dense [rows, L] booleans, so memory grows with the
chunk, never with N·L.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sparc.data import FeatureStore
from sparc.data.splits import Split
from sparc.data.truth import PlantedTruth, load_truth
from sparc.errors import SparcError
from sparc.eval.codes import CodeTable
from sparc.eval.features import encode_in_chunks
from sparc.eval.truth_results import LatentClassification, ParentAbsorption, StreamRecovery, TruthReport
from sparc.model import SPARC, SparseCode

THRESHOLD = 0.9
"""A decoder row at this cosine to a true direction recovers it (the specification's §8)."""
ALIGN_THRESHOLD = 0.8
"""One latent at this cosine to a shared concept in every stream aligns it (§8)."""
EXCLUSIVE_SHARE = 0.9
"""A latent with this share of its firings (or decoder norm) in one stream is called exclusive to it."""
ABSORB_COS = 0.5
"""A latent whose decoder row is at this cosine to a parent's direction carries the parent."""
CHUNK_ROWS = 4096


def unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float64."""
    a = np.asarray(a, dtype=np.float64)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def decoder_cosines(model: SPARC, truth: PlantedTruth, streams: Sequence[str]) -> dict[str, np.ndarray]:
    """Stream → [C, L]: cosine of each concept's true direction with each latent's decoder
    row (0 for a concept not present in the stream)."""
    return {s: unit_rows(truth.directions[s]) @ unit_rows(model.decoder_directions(s).cpu().numpy()).T
            for s in streams}


def have_scipy() -> bool:
    """Whether SciPy's assignment solver is importable (sparc does not require SciPy)."""
    return importlib.util.find_spec("scipy") is not None


def one_to_one(score: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, cols) of the assignment of largest total ``score`` (each row and column used
    once: the Hungarian method), or None without SciPy."""
    if not have_scipy():
        return None
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(score, maximize=True)


def firing(code: SparseCode, n_latents: int) -> np.ndarray:
    """[rows, L] bool: where the code's latents fire (value > 0)."""
    idx, val = code.indices.cpu().numpy(), code.values.float().cpu().numpy()
    out = np.zeros((idx.shape[0], n_latents), dtype=bool)
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    out[rows, idx.reshape(-1)] = val.reshape(-1) > 0
    return out


def _frac(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _recovery(truth: PlantedTruth, cos: Mapping[str, np.ndarray], matched: bool) -> list[StreamRecovery]:
    out = []
    for s, c_cl in cos.items():
        present = truth.present(s)
        best = c_cl[present].max(axis=1) if present.any() else np.zeros(0)
        excl = (truth.kind[present] == "exclusive")
        pairs = one_to_one(c_cl[present]) if matched and present.any() else None
        got = c_cl[present][pairs] if pairs is not None else None
        out.append(StreamRecovery(
            stream=s, n_concepts=int(present.sum()), recovered=_frac((best >= THRESHOLD).sum(), len(best)),
            median_best_cos=_median(best),
            matched_recovered=math.nan if got is None else _frac((got >= THRESHOLD).sum(), len(best)),
            matched_mean_cos=math.nan if got is None else _frac(got.sum(), len(best)),
            n_exclusive=int(excl.sum()), exclusive_recovered=_frac((best[excl] >= THRESHOLD).sum(), excl.sum())))
    return out


def _latent_truth(truth: PlantedTruth, cos: Mapping[str, np.ndarray], streams: list[str]) -> np.ndarray:
    """[L] int: −1 unmatched, S for a latent matched to a concept present in every stream,
    s for one matched to a concept present in stream s only. A latent is matched when its
    best cosine over (stream, concept present) is ≥ THRESHOLD; that concept decides."""
    stacked = np.stack([cos[s] for s in streams])                 # [S, C, L]
    S, C, L = stacked.shape
    flat = stacked.reshape(S * C, L)
    best = flat.argmax(axis=0)
    concept = best % C
    where = np.stack([truth.present(s) for s in streams])         # [S, C]
    n_in = where.sum(axis=0)
    home = where.argmax(axis=0)
    cls = np.where(n_in[concept] == S, S, np.where(n_in[concept] == 1, home[concept], -1))
    return np.where(flat[best, np.arange(L)] >= THRESHOLD, cls, -1)


def _classify(rule: str, share_sl: np.ndarray, latent_cls: np.ndarray, S: int) -> LatentClassification:
    """Precision / recall of calling a matched latent exclusive to the stream holding ≥
    EXCLUSIVE_SHARE of ``share_sl`` (its firings or decoder norms per stream)."""
    total = share_sl.sum(axis=0)
    frac = np.divide(share_sl, np.where(total > 0, total, 1.0))
    called = np.where((total > 0) & (frac.max(axis=0) >= EXCLUSIVE_SHARE), frac.argmax(axis=0), -1)
    matched = latent_cls >= 0
    pred = matched & (called >= 0)
    true = matched & (latent_cls < S)
    correct = pred & true & (called == latent_cls)
    return LatentClassification(rule=rule, share=EXCLUSIVE_SHARE, n_predicted=int(pred.sum()),
                                n_true=int(true.sum()), n_correct=int(correct.sum()),
                                precision=_frac(correct.sum(), pred.sum()), recall=_frac(correct.sum(), true.sum()))


class _FiringCounts:
    """What one pass over the evaluated rows' independent codes counts."""

    def __init__(self, truth: PlantedTruth, streams: list[str], L: int):
        self.S, self.L = len(streams), L
        self.shared = np.flatnonzero(truth.in_all(streams))
        self.parents = np.flatnonzero(truth.kind == "parent")
        self.children_of = [np.flatnonzero(truth.parent == p) for p in self.parents]
        self.fires = np.zeros((self.S, L))                       # per stream and latent
        self.all_hits = np.zeros((len(self.shared), L))          # concept active and latent fires in all
        self.all_fires = np.zeros(L)
        self.n_active = np.zeros(len(self.shared))
        P = len(self.parents)
        self.alone_hits = np.zeros((self.S, P, L))
        self.child_hits = np.zeros((self.S, P, L))
        self.n_alone, self.n_child = np.zeros(P), np.zeros(P)
        self.n_rows = 0

    def update(self, active: np.ndarray, fire: list[np.ndarray]) -> None:
        """``active`` [n, C] bool concepts; ``fire`` per stream [n, L] bool."""
        f32 = [f.astype(np.float32) for f in fire]
        self.n_rows += active.shape[0]
        for s, f in enumerate(f32):
            self.fires[s] += f.sum(axis=0)
        every = np.logical_and.reduce(fire).astype(np.float32)
        y = active[:, self.shared].astype(np.float32)
        self.all_hits += y.T @ every
        self.all_fires += every.sum(axis=0)
        self.n_active += y.sum(axis=0)
        if not len(self.parents):
            return
        par = active[:, self.parents]
        child = np.stack([active[:, ch].any(axis=1) for ch in self.children_of], axis=1) & par
        alone = par & ~child
        self.n_alone += alone.sum(axis=0)
        self.n_child += child.sum(axis=0)
        for s, f in enumerate(f32):
            self.alone_hits[s] += alone.T.astype(np.float32) @ f
            self.child_hits[s] += child.T.astype(np.float32) @ f

    def firing_alignment(self) -> np.ndarray:
        """[shared concepts] best over the latents of TPR − FPR of 'fires in every stream'
        (NaN for a concept never active on the evaluated rows)."""
        n = self.n_active[:, None]
        tpr = self.all_hits / np.where(n > 0, n, 1)
        neg = self.n_rows - n
        fpr = (self.all_fires[None, :] - self.all_hits) / np.where(neg > 0, neg, 1)
        return np.where(self.n_active > 0, (tpr - fpr).max(axis=1) if self.L else 0.0, np.nan)


def score_truth(model: SPARC, truth: PlantedTruth, rows: np.ndarray, codes: Mapping[str, CodeTable], *,
                chunk_rows: int = CHUNK_ROWS) -> TruthReport:
    """Score ``model`` against ``truth``.

    Parameters
    ----------
    model
        The trained model; its streams must be streams of the truth.
    truth
        The store's planted truth (:func:`sparc.data.truth.load_truth`).
    rows
        The evaluated store rows, sorted.
    codes
        Per stream of the model, the independent codes of ``rows`` in that order (what
        :func:`sparc.eval.evaluate` keeps; :func:`score_store` makes them).
    """
    streams = list(model.names)
    missing = [s for s in streams if s not in truth.streams]
    if missing:
        raise SparcError(f"the store's truth has no stream {missing[0]!r}; score the model on the store it was trained on")
    L, S = model.n_latents, len(streams)
    notes: list[str] = []
    cos = decoder_cosines(model, truth, streams)
    shared = truth.in_all(streams)
    excl = np.zeros(truth.n_concepts, dtype=bool)
    for s in streams:
        excl |= truth.present(s)
    excl &= ~shared
    matching_ok = have_scipy()
    matching = ("one-to-one matching: scipy.optimize.linear_sum_assignment" if matching_ok
                else "one-to-one matching not measured: SciPy is not installed (pip install scipy)")
    if not matching_ok:
        notes.append(matching)
    per_stream = _recovery(truth, cos, matching_ok)

    best = np.concatenate([cos[s][truth.present(s)].max(axis=1) for s in streams if truth.present(s).any()] or
                          [np.zeros(0)])
    n_pairs = sum(r.n_concepts for r in per_stream)
    matched_recovered = (_frac(sum(r.matched_recovered * r.n_concepts for r in per_stream), n_pairs)
                         if matching_ok else math.nan)
    min_cos = np.min(np.stack([cos[s][shared] for s in streams]), axis=0)  # [shared, L]
    aligned = _frac((min_cos.max(axis=1) >= ALIGN_THRESHOLD).sum(), shared.sum()) if L else math.nan
    pairs = one_to_one(min_cos) if matching_ok and shared.any() else None
    aligned_matched = (_frac((min_cos[pairs] >= ALIGN_THRESHOLD).sum(), shared.sum()) if pairs is not None
                       else math.nan)
    excl_best = [cos[s][c].max() for s in streams for c in np.flatnonzero(excl & truth.present(s))]
    exclusive_recovered = _frac(sum(b >= THRESHOLD for b in excl_best), len(excl_best))

    counts = _FiringCounts(truth, streams, L)
    for a in range(0, len(rows), chunk_rows):
        b = min(a + chunk_rows, len(rows))
        counts.update(truth.active(rows[a:b]), [firing(codes[s].code(slice(a, b)), L) for s in streams])
    fa = counts.firing_alignment()
    measured = ~np.isnan(fa)
    if (~measured).any():
        notes.append(f"{int((~measured).sum())} shared concepts are never active on the evaluated rows: "
                     "left out of the firing alignment")

    latent_cls = _latent_truth(truth, cos, streams)
    norms = np.stack([np.linalg.norm(model.decoder_directions(s).cpu().numpy(), axis=1) for s in streams])
    classification = [_classify("firing", counts.fires, latent_cls, S), _classify("decoder", norms, latent_cls, S)]

    absorption = _absorption(model, truth, streams, rows, codes, counts, cos)
    return TruthReport(
        n_concepts=truth.n_concepts, n_shared=int(shared.sum()), n_exclusive=int(excl.sum()),
        threshold=THRESHOLD, align_threshold=ALIGN_THRESHOLD,
        recovered=_frac((best >= THRESHOLD).sum(), len(best)), median_best_cos=_median(best),
        matched_recovered=matched_recovered, shared_aligned=aligned, shared_aligned_matched=aligned_matched,
        shared_aligned_firing=_frac((fa[measured] >= ALIGN_THRESHOLD).sum(), measured.sum()),
        firing_alignment=float(fa[measured].mean()) if measured.any() else math.nan,
        exclusive_recovered=exclusive_recovered, streams=per_stream, classification=classification,
        n_matched_shared=int((latent_cls == S).sum()), n_matched_exclusive=int(((latent_cls >= 0) & (latent_cls < S)).sum()),
        absorption=absorption, absorb_cos=ABSORB_COS, matching=matching, notes=notes)


def _absorption(model: SPARC, truth: PlantedTruth, streams: list[str], rows: np.ndarray,
                codes: Mapping[str, CodeTable], counts: _FiringCounts,
                cos: Mapping[str, np.ndarray]) -> list[ParentAbsorption]:
    """Per (stream, parent) with rows alone and with a child: the firing of the parent's
    latent (its decoder row closest to the parent's direction, chosen without looking at the
    firing, so chance scores no drop) in both, and how often a child row shows the parent's
    direction carried by another latent."""
    if not len(counts.parents):
        return []
    active = truth.active(rows)
    out = []
    for s, name in enumerate(streams):
        for j, p in enumerate(counts.parents):
            n_alone, n_child = int(counts.n_alone[j]), int(counts.n_child[j])
            if not n_alone or not n_child:
                continue
            lp = int(cos[name][p].argmax())
            fa = counts.alone_hits[s, j, lp] / n_alone
            fc = counts.child_hits[s, j, lp] / n_child
            with_child = np.flatnonzero(active[:, p] & active[:, counts.children_of[j]].any(axis=1))
            fire = firing(codes[name].code(with_child), model.n_latents)
            carriers = cos[name][p] >= ABSORB_COS
            carriers[lp] = False
            absorbed = ~fire[:, lp] & (fire & carriers[None, :]).any(axis=1)
            out.append(ParentAbsorption(stream=name, parent=int(p), latent=lp, rows_alone=n_alone,
                                        rows_with_child=n_child, fires_alone=float(fa), fires_with_child=float(fc),
                                        drop=float(max(0.0, fa - fc) / fa) if fa > 0 else math.nan,
                                        absorbed=float(absorbed.mean())))
    return out


@torch.no_grad()
def score_store(model: SPARC, store: FeatureStore, split: str = "test", *, chunk_rows: int = 2048,
                device: str = "cpu") -> TruthReport:
    """Encode ``split`` of ``store`` (each stream alone) and score ``model`` against the
    store's truth — the truth part of :func:`sparc.eval.evaluate`, without the rest."""
    truth = load_truth(store.path, store.n_rows)
    if truth is None:
        raise SparcError(f"store '{store.path}' carries no planted truth (truth.npz); make one with 'sparc synth'")
    rows = store.split_rows(Split.parse(split))
    if not len(rows):
        raise SparcError(f"split '{split}' of store '{store.path}' has no rows; choose another split")
    model = model.to(device).eval()
    codes = {s: CodeTable(len(rows), model.cfg.k, model.n_latents) for s in model.names}
    for chunk in encode_in_chunks(model, store, model.names, rows, chunk_rows, torch.device(device),
                                  progress=False, desc="encode"):
        for s in model.names:
            codes[s].put(chunk.start, chunk.independent[s])
    return score_truth(model, truth, rows, codes)
