"""eval.md: the report as readable Markdown tables, linking the plots."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sparc.eval.output.plots import PLOTS
from sparc.eval.results import EvalReport


def fmt(x: float | int | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def floor_cells(figure, over: str) -> list[str]:
    """observed, label-free, null ± sd, excess of a concept Jaccard figure (overall or a
    pair) over all latents (``over="all"``) or active ones."""
    return [fmt(getattr(figure, f"mean_{over}")), fmt(getattr(figure, f"label_free_{over}")),
            f"{fmt(getattr(figure, f'null_{over}'))} ± {fmt(getattr(figure, f'null_{over}_sd'))}",
            fmt(getattr(figure, f"excess_{over}"))]


def render_eval(report: EvalReport) -> str:
    """The Markdown of ``report``."""
    m, st = report.model, report.settings
    names = list(report.streams)
    out = [
        f"# Evaluation of `{report.run or 'model'}`",
        "",
        f"Store `{report.store}`, split **{report.split}** ({report.n_rows:,} rows). "
        f"Model: method {m.method}, {m.n_latents:,} latents, k = {m.k}, {m.topk} TopK, cross_coef = {m.cross_coef:g}"
        + (f", prefixes {', '.join(map(str, m.matryoshka))}" if m.matryoshka else "") + "; streams "
        + ", ".join(f"{s} ({d})" for s, d in report.streams.items()) + ".",
        "",
        "*joint*: all streams of a row encoded together (the model's forward). *independent*: each stream "
        "encoded alone, as at query time — the honest test of alignment.",
    ]
    if report.notes:
        out += ["", *[f"- note: {n}" for n in report.notes]]

    enc = {e.encoding: e for e in report.encodings}
    out += ["", "## Reconstruction", "",
            "NMSE = mean over rows of ‖x̂ − x‖² / ‖x‖²; L0 = nonzero code entries per row.", ""]
    out.append(table(["stream", *[f"NMSE ({e})" for e in enc], *[f"L0 ({e})" for e in enc]],
                     [[s, *[fmt(e.reconstruction.nmse[s], 4) for e in enc.values()],
                       *[fmt(e.reconstruction.l0[s], 1) for e in enc.values()]] for s in names]))
    for e in enc.values():
        r = e.reconstruction
        out += ["", f"Cross-reconstruction NMSE, {e.encoding} encoding (row: target, column: source code):", ""]
        out.append(table(["target \\ source", *names],
                         [[t, *[fmt(r.nmse[t] if t == s else r.cross_nmse(t, s), 4) for s in names]] for t in names]))

    out += ["", "## Dead latents", "", f"Never firing (value > 0) on the {report.n_rows:,} evaluated rows.", ""]
    out.append(table(["encoding", *[f"dead in {s}" for s in names], "dead in all", "dead in some", "alive in all"],
                     [[e.encoding, *[fmt(e.dead.dead[s]) for s in names], fmt(e.dead.dead_in_all),
                       fmt(e.dead.dead_in_some), fmt(e.dead.alive_in_all)] for e in enc.values()]))

    out += ["", "## Latents by stream presence", ""]
    out += presence_section(report)

    out += ["", "## Concept Jaccard", ""]
    if not any(e.concept_jaccard for e in enc.values()):
        out.append("No labels: not measured.")
    else:
        out += ["Weighted Jaccard of each latent's label histograms across streams; *all L* counts latents "
                "active in fewer than 2 streams as 0 (the paper's figure), *active* averages over latents "
                "active in ≥ 2 streams. Depth: labels lifted to that hierarchy depth (– = as given).", ""]
        rows = []
        for e in enc.values():
            for c in e.concept_jaccard:
                rows.append([e.encoding, "–" if c.depth is None else str(c.depth), fmt(c.n_classes),
                             fmt(c.mean_all), fmt(c.mean_active), fmt(c.n_active),
                             *[f"{fmt(p.mean_all)} / {fmt(p.mean_active)}" for p in c.pairs]])
        pairs = [f"{p.a}–{p.b} (all / active)" for p in report.encodings[0].concept_jaccard[0].pairs]
        out.append(table(["encoding", "depth", "classes", "mean (all L)", "mean (active)", "active latents", *pairs],
                         rows))
        out += ["", "### How much of it is about the labels", "",
                f"*label-free*: the same formula with every label merged into one class (no concept information; "
                f"the same at every depth). *null*: the labels shuffled across the evaluated rows, whole groups "
                f"together, mean ± sd over {st.null_shuffles} seeded shuffles. *excess* = observed − null: the "
                "label-specific part. Under joint global TopK the streams fire the same latents on the same rows, "
                "so the observed value is close to the label-free one whatever the labels are.", ""]
        rows = []
        for e in enc.values():
            for c in e.concept_jaccard:
                for f, over in (("all", "all L"), ("active", "active")):
                    rows.append([e.encoding, "–" if c.depth is None else str(c.depth), "all pairs", over,
                                 *floor_cells(c, f)])
                for p in c.pairs:
                    for f, over in (("all", "all L"), ("active", "active in both")):
                        rows.append([e.encoding, "–" if c.depth is None else str(c.depth), f"{p.a}–{p.b}", over,
                                     *floor_cells(p, f)])
        out.append(table(["encoding", "depth", "pair", "over", "observed", "label-free", "null", "excess"], rows))

    out += ["", "## Per-sample active-set Jaccard", "",
            "|A_s ∩ A_t| / |A_s ∪ A_t| of the nonzero latents of a row, averaged over rows. *null*: row i of the "
            f"first stream against a random row of another group in the second, mean ± sd over {st.null_shuffles} "
            "seeded draws; *excess* = observed − null.", ""]
    pair_names = [(p.a, p.b) for p in report.encodings[0].active_sets]
    header, rows = ["pair"], []
    for e in enc:
        header += [e, "null", "excess"]
    for a, b in pair_names:
        row = [f"{a}–{b}"]
        for e in enc.values():
            p = next(p for p in e.active_sets if (p.a, p.b) == (a, b))
            row += [fmt(p.mean), f"{fmt(p.null)} ± {fmt(p.null_sd)}", fmt(p.excess)]
        rows.append(row)
    out.append(table(header, rows))

    out += ["", "## Retrieval", ""]
    rv = report.retrieval
    if rv is None:
        out.append("Not measured.")
    else:
        out += [f"{rv.n_queries:,} query rows (seed {st.seed}) against all {rv.n_gallery:,} rows of the gallery "
                f"stream ({rv.n_gallery_images:,} distinct images); latents use the {rv.encoding} encoding; cosine "
                f"similarity. Ties: {rv.tie_rule}. ± is the 95% sampling half-width of R@1.", "",
                f"- **same image** (the headline, the paper's protocol) — {rv.match_rule}.",
                f"- **group-aware** (beside it) — {rv.group_match_rule}.", ""]
        out.append(table(["representation", "query → gallery", "R@1 (same image)", "R@5", "R@10", "median rank",
                          "MRR", "group-aware R@1", "R@5", "R@10", "median rank", "MRR"],
                         [[r.representation, f"{r.query} → {r.gallery}",
                           f"{fmt(r.r1)} ± {fmt(r.r1_ci95)}", fmt(r.r5), fmt(r.r10),
                           fmt(r.median_rank, 1), fmt(r.mrr),
                           f"{fmt(r.group_aware.r1)} ± {fmt(r.group_aware.r1_ci95)}", fmt(r.group_aware.r5),
                           fmt(r.group_aware.r10), fmt(r.group_aware.median_rank, 1), fmt(r.group_aware.mrr)]
                          for r in rv.results]))

    out += ["", "## Probes", ""]
    pr = report.probes
    if pr is None:
        out.append("Not run" + (" (see the notes above)." if report.notes else "."))
    else:
        out += [f"Fit on {pr.fit_rows:,} rows of {pr.fit_split}, selected on {pr.select_rows:,} rows of "
                f"{pr.select_split}, reported on {pr.report_rows:,} rows of {pr.report_split} (whole groups). "
                "Multi-label linear probe, macro average precision; codes from the independent encoding, "
                "recon = the stream reconstructed from that code.", ""]
        reps = ("raw", "latents", "recon")
        rows = []
        for s in names:
            row = [s]
            for rep in reps:
                p = pr.get(s, rep)
                row.append(f"{fmt(p.macro_ap)} (ep {p.best_epoch})" if p else "–")
            rows.append(row)
        n_cls = pr.multilabel[0].n_classes if pr.multilabel else 0
        out.append(table(["stream", *[f"{r} AP" for r in reps]], rows))
        out += ["", f"({n_cls} classes.) 1D probe: best single latent per class with more than "
                f"{st.one_d_min_positives} train positives, chosen on train + val, test log-loss on balanced rows "
                "(a constant guess scores 0.693).", ""]
        out.append(table(["stream", "classes", "mean test log-loss"],
                         [[o.stream, fmt(o.n_classes), fmt(o.mean_log_loss)] for o in pr.one_d]))

    if report.truth is not None:
        from sparc.eval.output.truth_markdown import render_truth  # it uses this module's fmt and table

        out += render_truth(report.truth)

    if report.plots:
        out += ["", "## Plots", ""]
        for name, path in report.plots.items():
            out += [f"![{PLOTS.get(name, name)}]({path})", ""]
    if report.seconds:
        out += ["", "## Time", "", ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())]
    return "\n".join(out).rstrip() + "\n"


def presence_section(report: EvalReport) -> list[str]:
    """The lines of eval.md's stream-presence section (docs/method.md §5.9)."""
    p, st = report.presence, report.settings
    if p is None:
        return ["Not measured (an evaluation of an earlier sparc)."]
    names = list(report.streams)
    basis = "firings (rows × streams where it is nonzero)" if p.basis == "firing" else "summed activation"
    lines = [f"Independent encoding (each stream alone). A latent's share of its {basis} in each stream; "
             f"*one stream only*: one stream holds ≥ {st.presence_only:g} of it; *mostly one stream*: ≥ "
             f"{st.presence_mostly:g}; *shared*: it fires and no stream holds {st.presence_mostly:g}. The per-latent "
             "firing counts and summed activations are in eval.json (`presence`) and on the report's latent pages.",
             ""]
    rows = [["shared", fmt(p.shared), *["" for _ in names]],
            ["mostly one stream", fmt(p.n_mostly), *[fmt(p.mostly[s]) for s in names]],
            ["one stream only", fmt(p.n_only), *[fmt(p.only[s]) for s in names]],
            ["dead", fmt(p.dead), *["" for _ in names]]]
    return [*lines, table(["class", "latents", *[f"in {s}" for s in names]], rows)]


def presence_line(report: EvalReport) -> str | None:
    """One line of the latents' stream presence, or None when not measured."""
    p = report.presence
    if p is None:
        return None

    def per_stream(counts: dict[str, int]) -> str:
        return ", ".join(f"{s} {n:,}" for s, n in counts.items())

    return (f"stream presence (independent): shared {p.shared:,}, mostly one stream {p.n_mostly:,} "
            f"({per_stream(p.mostly)}), one stream only {p.n_only:,} ({per_stream(p.only)}), dead {p.dead:,}")


def render_summary(report: EvalReport) -> str:
    """A few headline figures, one line each (what ``sparc eval`` prints)."""
    joint, indep = report.encoding("joint"), report.encoding("independent")
    lines = [f"{report.run or 'model'} on {report.split} ({report.n_rows:,} rows)"]
    cj, ci = joint.concept(None), indep.concept(None)
    if cj and ci:
        lines.append("concept Jaccard (all L): " + "; ".join(
            f"{name} {fmt(c.mean_all)} (label-free {fmt(c.label_free_all)}, null {fmt(c.null_all)} ± "
            f"{fmt(c.null_all_sd)}, excess {fmt(c.excess_all)})" for name, c in (("joint", cj), ("independent", ci))))
    parts = []
    for name, e in (("joint", joint), ("independent", indep)):
        obs = e.mean_active_set_jaccard()
        null, sd = e.mean_active_set_null()
        parts.append(f"{name} {fmt(obs)} (null {fmt(null)} ± {fmt(sd)}, excess {fmt(obs - null)})")
    lines.append("per-sample Jaccard: " + "; ".join(parts))
    d = joint.dead
    lines.append(f"dead latents: {d.dead_in_all:,} in all streams, {d.dead_in_some:,} in some, "
                 f"{d.alive_in_all:,} alive in all")
    if (line := presence_line(report)) is not None:
        lines.append(line)
    r = joint.reconstruction
    lines.append(f"NMSE {fmt(r.mean_nmse(), 4)}, cross NMSE {fmt(r.mean_cross(), 4)} "
                 f"(independent: {fmt(indep.reconstruction.mean_cross(), 4)})")
    rv = report.retrieval
    if rv:
        lines.append(f"retrieval R@1, same image (mean over pairs): latents {fmt(rv.mean_r1('latents'))}, "
                     f"cross-recon {fmt(rv.mean_r1('cross_recon'))}; group-aware: latents "
                     f"{fmt(rv.mean_group_r1('latents'))}, cross-recon {fmt(rv.mean_group_r1('cross_recon'))}")
    if report.probes:
        lines.append(f"probe macro AP: raw {fmt(report.probes.mean_ap('raw'))}, "
                     f"latents {fmt(report.probes.mean_ap('latents'))}, recon {fmt(report.probes.mean_ap('recon'))}")
    if report.truth is not None:
        from sparc.eval.output.truth_markdown import truth_summary

        lines += truth_summary(report.truth)
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
