"""``sparc compare``: evaluated runs side by side, in the shape of the paper's table.

Rows are ordered global + cross, global no-cross, local + cross, local no-cross (the
paper's four models), then by name. Each figure is the mean over streams or stream pairs
of what eval.json holds; the concept Jaccard and the dead-latent patterns are the paper's
(joint encoding, labels as given, all latents), the per-sample Jaccard and the
retrieval and the latents' stream presence use the independent encoding. Retrieval R@1 is on the paper's protocol (same
image) with the group-aware figure beside it; a second table gives every alignment
figure with its label-free value, permutation null and excess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sparc.errors import SparcError
from sparc.eval.output.markdown import fmt, table
from sparc.eval.results import EvalReport
from sparc.eval.truth_results import TruthReport
from sparc.jsonio import to_json
from sparc.train.rundir import EVAL_PREFIX, RunDir


@dataclass(frozen=True)
class Floor:
    """One alignment figure of a run beside its floors (docs/method.md §5.2, §5.3)."""

    figure: str
    """concept_jaccard (joint, all L), concept_jaccard_active, concept_jaccard_independent
    (all L) or active_set_jaccard (per-sample, independent, mean over pairs)."""
    observed: float
    label_free: float
    """All labels merged into one class (NaN for the per-sample Jaccard, which has no labels)."""
    null: float
    """Permutation null, mean over the seeded shuffles."""
    null_sd: float
    excess: float
    """observed − null."""


FLOOR_NAMES = {
    "concept_jaccard": "concept J (all L)",
    "concept_jaccard_active": "concept J (active)",
    "concept_jaccard_independent": "concept J indep. (all L)",
    "active_set_jaccard": "per-sample J indep.",
}


@dataclass(frozen=True)
class ComparisonRow:
    name: str
    path: str
    model: str
    """"global + cross", "global, no cross", "local + cross" or "local, no cross" (the paper's four
    variants); for the other methods their name, "+ cross" or ", no cross"."""
    method: str
    """The run's method (``sparc train --method``)."""
    n_latents: int
    k: int
    split: str
    n_rows: int
    concept_jaccard: float
    """Joint encoding, labels as given, mean over all latents (dead = 0)."""
    concept_jaccard_active: float
    """Same, over latents active in ≥ 2 streams."""
    concept_jaccard_independent: float
    """Independent encoding, mean over all latents."""
    active_set_jaccard: float
    """Per-sample Jaccard, independent encoding, mean over stream pairs."""
    dead_in_all: int
    dead_in_some: int
    alive_in_all: int
    nmse: float
    """Joint encoding, mean over streams."""
    cross_nmse: float
    """Joint encoding, mean over ordered pairs."""
    cross_nmse_independent: float
    """Independent encoding (source stream alone), mean over ordered pairs."""
    r1_latents: float
    """Retrieval R@1 with latents, the query's own image the only hit (the paper's
    protocol), mean over ordered pairs."""
    r1_cross_recon: float
    r1_latents_group_aware: float
    """Retrieval R@1 with latents, any row of the query's group or with its caption also a hit."""
    r1_cross_recon_group_aware: float
    probe_ap_latents: float
    """Multi-label probe macro AP on latents, mean over streams."""
    probe_ap_raw: float
    presence_shared: int | None = None
    """Latents shared by several streams under the independent encoding (docs/method.md §5.10);
    None for an evaluation without stream presence."""
    presence_mostly: int | None = None
    """Latents mostly in one stream."""
    presence_only: int | None = None
    """Latents in one stream only."""
    floors: list[Floor] = field(default_factory=list)
    """Each alignment figure above with its label-free value, null and excess."""
    truth: TruthReport | None = None
    """The scores against the store's planted truth, when it has one (docs/method.md §5.10)."""


@dataclass(frozen=True)
class Comparison:
    rows: list[ComparisonRow]
    notes: list[str]

    def to_json(self) -> dict:
        return to_json(self)


MODEL_ORDER = ("global + cross", "global, no cross", "local + cross", "local, no cross")


def find_eval(path: str | Path, split: str = "test") -> Path:
    """The eval.json of ``path``: an eval.json file, an eval directory, or a run directory
    holding ``eval-<split>/``."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / "eval.json").is_file():
        return p / "eval.json"
    run = RunDir(p)
    if (run.eval_dir(split) / "eval.json").is_file():
        return run.eval_dir(split) / "eval.json"
    if p.is_dir():
        found = [d for d in run.eval_dirs() if (d / "eval.json").is_file()]
        hint = f" (it has {', '.join(d.name for d in found)}; pass one of them)" if found else ""
        raise SparcError(f"{p} holds no {run.eval_dir(split).name}/eval.json{hint}; run 'sparc eval {p}' first")
    raise SparcError(f"{p} does not exist")


def model_kind(report: EvalReport) -> str:
    cross = report.model.cross_coef > 0
    paper = report.model.method in ("sparc", "no-cross", "local")  # the paper's variants keep its names
    kind = report.model.topk if paper else report.model.method
    return f"{kind} {'+ cross' if cross else ', no cross'}".replace(" ,", ",")


def kind_order(kind: str) -> int:
    """The paper's four variants first, in its order, then the other methods."""
    return MODEL_ORDER.index(kind) if kind in MODEL_ORDER else len(MODEL_ORDER)


def floors_of(report: EvalReport) -> list[Floor]:
    joint, indep = report.encoding("joint"), report.encoding("independent")
    out = []
    for name, c, over in (("concept_jaccard", joint.concept(None), "all"),
                          ("concept_jaccard_active", joint.concept(None), "active"),
                          ("concept_jaccard_independent", indep.concept(None), "all")):
        if c is not None:
            out.append(Floor(name, getattr(c, f"mean_{over}"), getattr(c, f"label_free_{over}"),
                             getattr(c, f"null_{over}"), getattr(c, f"null_{over}_sd"), getattr(c, f"excess_{over}")))
    obs = indep.mean_active_set_jaccard()
    null, sd = indep.mean_active_set_null()
    out.append(Floor("active_set_jaccard", obs, math.nan, null, sd, obs - null))
    return out


def row_of(report: EvalReport, path: Path) -> ComparisonRow:
    joint, indep = report.encoding("joint"), report.encoding("independent")
    cj, ci = joint.concept(None), indep.concept(None)
    rv, pr = report.retrieval, report.probes
    nan = math.nan
    name = report.run or (path.parent.parent.name if path.parent.name.startswith(EVAL_PREFIX) else path.parent.name)
    return ComparisonRow(
        name=name, path=str(path), model=model_kind(report), method=report.model.method,
        n_latents=report.model.n_latents,
        k=report.model.k, split=report.split, n_rows=report.n_rows,
        concept_jaccard=cj.mean_all if cj else nan, concept_jaccard_active=cj.mean_active if cj else nan,
        concept_jaccard_independent=ci.mean_all if ci else nan,
        active_set_jaccard=indep.mean_active_set_jaccard(),
        dead_in_all=joint.dead.dead_in_all, dead_in_some=joint.dead.dead_in_some,
        alive_in_all=joint.dead.alive_in_all,
        nmse=joint.reconstruction.mean_nmse(), cross_nmse=joint.reconstruction.mean_cross(),
        cross_nmse_independent=indep.reconstruction.mean_cross(),
        r1_latents=rv.mean_r1("latents") if rv else nan, r1_cross_recon=rv.mean_r1("cross_recon") if rv else nan,
        r1_latents_group_aware=rv.mean_group_r1("latents") if rv else nan,
        r1_cross_recon_group_aware=rv.mean_group_r1("cross_recon") if rv else nan,
        probe_ap_latents=pr.mean_ap("latents") if pr else nan, probe_ap_raw=pr.mean_ap("raw") if pr else nan,
        presence_shared=report.presence.shared if report.presence else None,
        presence_mostly=report.presence.n_mostly if report.presence else None,
        presence_only=report.presence.n_only if report.presence else None,
        floors=floors_of(report), truth=report.truth,
    )


def compare(paths: Sequence[str | Path], split: str = "test") -> Comparison:
    """Load the evaluations of ``paths`` and line them up."""
    if not paths:
        raise SparcError("give at least one run or eval directory to compare")
    loaded = []
    for p in paths:
        f = find_eval(p, split)
        loaded.append((EvalReport.load(f), f))
    rows = [row_of(r, f) for r, f in loaded]
    order = sorted(range(len(rows)), key=lambda i: (kind_order(rows[i].model), rows[i].model, rows[i].name))
    rows = [rows[i] for i in order]
    notes = []
    for what, get in (("stores", lambda r: r.store), ("splits", lambda r: (r.split, r.n_rows)),
                      ("streams", lambda r: tuple(r.streams.items())),
                      ("retrieval query counts", lambda r: r.retrieval.n_queries if r.retrieval else None),
                      ("numbers of null shuffles", lambda r: r.settings.null_shuffles),
                      ("stream-presence thresholds", lambda r: (r.settings.presence_basis, r.settings.presence_mostly,
                                                                r.settings.presence_only))):
        if len({get(r) for r, _ in loaded}) > 1:
            notes.append(f"the runs were evaluated on different {what}: their figures are not directly comparable")
    return Comparison(rows=rows, notes=notes)


def render_comparison(c: Comparison) -> str:
    """The comparison as a Markdown table with a legend."""
    header = ["model", "method", "run", "L", "k", "concept J (all L)", "concept J (active)", "concept J indep.",
              "per-sample J indep.", "dead all / some / alive all", "NMSE", "cross NMSE",
              "cross NMSE indep.", "R@1 latents", "R@1 cross-recon", "R@1 latents group-aware",
              "R@1 cross-recon group-aware", "probe AP latents", "probe AP raw", "shared / mostly one / one only"]
    rows = [[r.model, r.method, r.name, fmt(r.n_latents), str(r.k), fmt(r.concept_jaccard), fmt(r.concept_jaccard_active),
             fmt(r.concept_jaccard_independent), fmt(r.active_set_jaccard),
             f"{r.dead_in_all:,} / {r.dead_in_some:,} / {r.alive_in_all:,}", fmt(r.nmse, 4), fmt(r.cross_nmse, 4),
             fmt(r.cross_nmse_independent, 4), fmt(r.r1_latents), fmt(r.r1_cross_recon),
             fmt(r.r1_latents_group_aware), fmt(r.r1_cross_recon_group_aware),
             fmt(r.probe_ap_latents), fmt(r.probe_ap_raw),
             " / ".join(fmt(x) for x in (r.presence_shared, r.presence_mostly, r.presence_only))] for r in c.rows]
    out = ["# Comparison of runs", "", table(header, rows), "",
           "Concept J and dead patterns: joint encoding, labels as given (the paper's figures; paper: global + cross "
           "0.80, global no cross 0.73, local + cross 0.26, local no cross 0.17). *indep.*: each stream encoded alone. "
           "NMSE: mean over streams; cross NMSE: mean over ordered pairs; R@1: mean over ordered stream pairs, "
           "independent encoding — the query's own image is the only hit (the paper's protocol); *group-aware*: "
           "any row of its split group or with its identical caption also counts. Probe AP: mean over streams. "
           "Shared / mostly one / one only: latents by stream presence, independent encoding (each run's "
           "thresholds; eval.md)."]
    floor_rows = [[r.model, r.name, FLOOR_NAMES.get(f.figure, f.figure), fmt(f.observed), fmt(f.label_free),
                   f"{fmt(f.null)} ± {fmt(f.null_sd)}", fmt(f.excess)] for r in c.rows for f in r.floors]
    out += ["", "## How much of the alignment is about the labels", "",
            table(["model", "run", "figure", "observed", "label-free", "null", "excess"], floor_rows), "",
            "*label-free*: the concept Jaccard with every label merged into one class (no concept information). "
            "*null*: labels shuffled across the evaluated rows, whole groups together (per-sample J: each row "
            "against a random row of another group), mean ± sd over seeded shuffles. *excess* = observed − null, "
            "the label-specific part. Under joint global TopK the streams fire the same latents on the same rows, "
            "so the paper's concept J is close to its label-free value whatever the labels are."]
    truths = [(r, r.truth) for r in c.rows if r.truth is not None]
    if truths:
        out += ["", "## Against the planted truth", "", table(
            ["model", "run", "k", "recovered", "matched recovered", "median best cos", "shared aligned",
             "aligned (firing)", "exclusive recovered", "exclusive latents P / R (firing)", "absorbed"],
            [[r.model, r.name, str(r.k), fmt(t.recovered), fmt(t.matched_recovered), fmt(t.median_best_cos),
              fmt(t.shared_aligned), fmt(t.shared_aligned_firing), fmt(t.exclusive_recovered),
              f"{fmt(t.classification_by('firing').precision)} / {fmt(t.classification_by('firing').recall)}",
              fmt(t.mean_absorbed())] for r, t in truths]), "",
            "The store's known concepts (docs/method.md §5.10): *recovered* = a decoder row at cos ≥ 0.9 to the true "
            "direction; *shared aligned* = one latent at cos ≥ 0.8 in every stream; *aligned (firing)* = one latent "
            "firing in every stream, each encoded alone, for the concept; *absorbed* = rows with a child where the "
            "parent's latent is silent and another latent carries the parent's direction."]
    out += [f"- note: {n}" for n in c.notes]
    return "\n".join(out) + "\n"
