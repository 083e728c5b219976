"""``evaluate``: every metric of docs/method.md §5 for one model on one split of a store.

One streaming pass over the split, ``chunk_rows`` rows at a time, encodes each chunk
both jointly and independently from one encoder pass (:meth:`SPARC.logits`) and feeds per-latent and
per-pair accumulators; only the independent sparse codes (k pairs per row and stream)
are kept for retrieval, the probes and the nulls, and for a global model the joint
firing (k indices per row, one byte per stream and slot) for the nulls. Memory therefore
grows with N·k, never N·L.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sparc.data import FeatureStore
from sparc.data.splits import Split
from sparc.data.truth import load_truth
from sparc.device import check_device
from sparc.errors import SparcError
from sparc.eval.codes import CodeTable, SharedFiring
from sparc.eval.features import encode_in_chunks
from sparc.eval.labels import label_matrix, max_depth
from sparc.eval.metrics.active_sets import ActiveSetAccumulator
from sparc.eval.metrics.concept_jaccard import ConceptCounter
from sparc.eval.metrics.dead_latents import FiringCounter
from sparc.eval.metrics.floors import (
    NULL_ROWS,
    CodeSource,
    active_set_nulls,
    concept_nulls,
    label_permutations,
    other_group_rows,
    with_active_set_floors,
    with_concept_floors,
)
from sparc.eval.metrics.presence import latent_presence
from sparc.eval.metrics.probes.run import run_probes
from sparc.eval.metrics.ranking import MatchKeys
from sparc.eval.metrics.reconstruction import ReconstructionAccumulator
from sparc.eval.metrics.retrieval import Retriever
from sparc.eval.metrics.truth import score_truth
from sparc.eval.results import EncodingReport, EvalReport
from sparc.eval.sampling import group_codes, sample_rows
from sparc.eval.settings import EvalSettings
from sparc.model import SPARC, SparseCode

ENCODINGS = ("joint", "independent")


def check_streams(model: SPARC, store: FeatureStore) -> list[str]:
    """The model's streams, after checking the store has them with the same widths."""
    for s, d in model.streams.items():
        if s not in store.streams:
            raise SparcError(f"the store has no stream {s!r} that the model needs "
                             f"(store streams: {', '.join(store.streams)}); use the store the model was trained on")
        if store.streams[s] != d:
            raise SparcError(f"stream {s!r} is {store.streams[s]}-d in the store but {d}-d in the model; "
                             "use features from the same backbone")
    return list(model.names)


def rows_of_split(store: FeatureStore, split: Split) -> np.ndarray:
    """The sorted store rows of ``split``; a SparcError when it has none."""
    rows = store.split_rows(split)
    if len(rows) == 0:
        raise SparcError(f"split '{split}' of store '{store.path}' has no rows; choose another split (--split)")
    return rows


def label_depths(settings: EvalSettings, hierarchy, labels: Sequence[Sequence[str]], notes: list[str]) -> list[int | None]:
    """``[None, d1, d2, ...]``: the labels as given, then each depth to lift to."""
    if settings.depths is not None and not settings.depths:
        return [None]
    if hierarchy is None:
        if settings.depths:
            notes.append("the store has no label hierarchy: concept Jaccard only for the labels as given")
        return [None]
    if settings.depths is not None:
        return [None, *sorted(set(settings.depths))]
    deepest = max_depth(sorted({x for row in labels for x in row}), hierarchy)
    return [None, *range(deepest)]


class _EncodingState:
    """The accumulators of one encoding."""

    def __init__(self, streams: list[str], n_latents: int, label_sets):
        self.streams = streams
        self.recon = ReconstructionAccumulator(streams)
        self.firing = FiringCounter(streams, n_latents)
        self.concepts = ConceptCounter(streams, n_latents, label_sets, label_free=True) if label_sets else None
        self.active = ActiveSetAccumulator(streams)

    def update(self, model: SPARC, start: int, x, codes: dict[str, SparseCode]) -> None:
        recons = {s: model.decode_all(code) for s, code in codes.items()}
        self.recon.update(x, codes, recons)
        self.firing.update(codes)
        if self.concepts is not None:
            self.concepts.update(start, codes)
        self.active.update(codes)

    def report(self, encoding: str, label_sets, codes: Mapping[str, CodeSource], n_rows: int,
               perms: list[np.ndarray], partners: list[tuple[np.ndarray, np.ndarray]] | None) -> EncodingReport:
        """The figures of this encoding, every Jaccard with its floors: the label-free
        value and the nulls, recounted from the kept ``codes`` (no second encoding)."""
        concepts = []
        if self.concepts is not None:
            label_free = self.concepts.label_free()
            nulls = concept_nulls(self.streams, self.concepts.n_latents, label_sets, perms, codes, n_rows)
            concepts = [with_concept_floors(c, label_free, [n[i] for n in nulls])
                        for i, (c, _) in enumerate(self.concepts.results())]
        act = active_set_nulls(self.streams, partners, codes) if partners else {}
        active = [with_active_set_floors(p, act.get((p.a, p.b))) for p in self.active.result()]
        return EncodingReport(encoding=encoding, reconstruction=self.recon.result(), dead=self.firing.dead(),
                              firing=self.firing.histogram(), concept_jaccard=concepts, active_sets=active)


@torch.no_grad()
def evaluate(model: SPARC, store: FeatureStore, settings: EvalSettings = EvalSettings(), *,
             run: str = "") -> EvalReport:
    """Measure ``model`` on ``settings.split`` of ``store``.

    Parameters
    ----------
    model
        The model (moved to ``settings.device`` and put in eval mode).
    store
        A feature store holding the model's streams.
    settings
        What to measure; recorded in the report.
    run
        Name of the run, for the report.

    Returns
    -------
    EvalReport
        Every figure; write it with :func:`sparc.eval.write_eval`.
    """
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    notes: list[str] = []
    streams = check_streams(model, store)
    split = Split.parse(settings.split)
    rows = rows_of_split(store, split)
    N = len(rows)
    truth = load_truth(store.path, store.n_rows)  # planted truth (sparc synth), checked before any work
    device = torch.device(check_device(settings.device))
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise SparcError(f"the model's weights {name} are not finite (the training diverged); "
                             "retrain it with a lower learning rate")
    model = model.to(device).eval()
    meta = store.rows()
    eval_meta = [meta[r] for r in rows]
    labels = [m.labels for m in eval_meta]
    label_sets = []
    if any(labels):
        hierarchy = store.label_hierarchy()
        for depth in label_depths(settings, hierarchy, labels, notes):
            label_sets.append((depth, label_matrix(labels, hierarchy=hierarchy, depth=depth)))
    else:
        notes.append("no evaluated row has labels: concept Jaccard and probes skipped")

    local = model.joint_is_independent
    states = {"joint": _EncodingState(streams, model.n_latents, label_sets)}
    states["independent"] = states["joint"] if local else _EncodingState(streams, model.n_latents, label_sets)
    codes = {s: CodeTable(N, model.cfg.k, model.n_latents) for s in streams}
    # The joint firing, kept for the nulls (a local model's joint codes are the independent ones).
    joint_firing = None if local else SharedFiring(streams, N, model.cfg.k, model.n_latents)
    features = {s: store.features(s) for s in streams}

    t0 = time.perf_counter()
    for chunk in encode_in_chunks(model, store, streams, rows, settings.chunk_rows, device,
                                  progress=settings.progress, desc="encode"):
        states["joint"].update(model, chunk.start, chunk.inputs, chunk.joint)
        if not local:
            states["independent"].update(model, chunk.start, chunk.inputs, chunk.independent)
            joint_firing.put(chunk.start, chunk.joint)
        for s in streams:
            codes[s].put(chunk.start, chunk.independent[s])
    seconds["encode"] = time.perf_counter() - t0
    firing = states["independent"].firing
    presence = latent_presence(firing.counts, firing.activation, streams, settings)
    if local:
        notes.append("local TopK: the joint and independent encodings are the same")

    t0 = time.perf_counter()
    groups = group_codes([m.group_id for m in eval_meta])
    perms: list[np.ndarray] = []
    if label_sets:
        labelled = label_sets[0][1].row_counts() > 0
        perms, fixed = label_permutations(groups, labelled, settings.null_shuffles, settings.seed)
        if fixed and settings.null_shuffles:
            notes.append(f"permutation null: {fixed:,} of {int(labelled.sum()):,} labelled rows are in groups whose "
                         "number of labelled rows no other group has; they keep their own labels")
    partners = (other_group_rows(groups, settings.null_shuffles, settings.seed, max_rows=NULL_ROWS)
                if settings.null_shuffles else [])
    if partners is None:
        notes.append("per-sample null not measured: every evaluated row is in one group")
    sources = {"joint": codes if local else {s: joint_firing.stream(s) for s in streams}, "independent": codes}
    reports = {}
    for e in ENCODINGS:
        state = states[e]
        same = next((r for st, r in reports.values() if st is state), None)
        reports[e] = (state, dataclasses.replace(same, encoding=e) if same is not None else
                      state.report(e, label_sets, sources[e], N, perms, partners))
    encodings = [reports[e][1] for e in ENCODINGS]
    seconds["floors"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    keys = MatchKeys([m.group_id for m in eval_meta], [m.caption for m in eval_meta], [m.image for m in eval_meta])
    retriever = Retriever(model, features, rows, codes, keys, block=settings.retrieval_block,
                          tol=settings.tie_tol, device=device)
    queries = sample_rows(N, settings.retrieval_queries, settings.seed)
    retrieval = retriever.run(queries, progress=settings.progress)
    seconds["retrieval"] = time.perf_counter() - t0

    probes = None
    reason = _probe_blocker(settings, split, store, any(labels))
    if reason:
        notes.append(f"probes skipped: {reason}")
    else:
        t0 = time.perf_counter()
        probes = run_probes(model, store, rows, codes, settings)
        seconds["probes"] = time.perf_counter() - t0
    truth_report = None
    if truth is not None:
        t0 = time.perf_counter()
        truth_report = score_truth(model, truth, rows, codes, chunk_rows=settings.chunk_rows)
        seconds["truth"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    return EvalReport(run=run, store=str(store.path), split=str(split), n_rows=N,
                      streams=dict(model.streams), model=model.cfg, settings=settings,
                      encodings=encodings, retrieval=retrieval, probes=probes, presence=presence, truth=truth_report,
                      notes=notes,
                      seconds={k: round(v, 3) for k, v in seconds.items()})


def _probe_blocker(settings: EvalSettings, split: Split, store: FeatureStore, labelled: bool) -> str | None:
    """Why the probes cannot run, or None."""
    if not settings.probes:
        return "turned off (--no-probes)"
    if not labelled:
        return "no labels"
    if split is not Split.TEST:
        return f"they fit on train and select on val, so they report only on the test split (not '{split}')"
    for name in ("train", "val"):
        if len(store.split_rows(name)) == 0:
            return f"the store's {name} split is empty"
    return None
