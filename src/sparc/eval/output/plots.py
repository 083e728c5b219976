"""PNG plots of an evaluation, drawn from the report alone (matplotlib, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparc.errors import SparcError
from sparc.eval.results import EvalReport

PLOTS = {
    "firing": "Firing frequency of the latents per stream",
    "jaccard": "Concept and per-sample Jaccard beside their label-free values and nulls",
    "cross_nmse": "Cross-reconstruction NMSE (target × source)",
    "dead": "Dead-latent patterns across streams",
}


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SparcError("plots need matplotlib: pip install matplotlib (or pass --no-plots)") from None
    return Figure(figsize=(width, height), layout="constrained")


def draw_plots(report: EvalReport, out_dir: str | Path) -> dict[str, str]:
    """Write every plot under ``out_dir``; returns name → file name (relative)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, draw in (("firing", firing_plot), ("jaccard", jaccard_plot),
                       ("cross_nmse", cross_nmse_plot), ("dead", dead_plot)):
        fig = draw(report)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        files[name] = path.name
    return files


def firing_plot(report: EvalReport):
    fig = _figure(6.5, 4)
    ax = fig.add_subplot()
    for enc, style in zip(report.encodings, ("-", "--")):
        edges = np.asarray(enc.firing.edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        for i, (name, counts) in enumerate(enc.firing.counts.items()):
            ax.plot(centres, counts, style, color=f"C{i}", marker=".",
                    label=f"{name} ({enc.encoding}; {enc.dead.dead[name]} dead)")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fraction of rows the latent fires on")
    ax.set_ylabel("latents")
    ax.set_title(PLOTS["firing"])
    ax.legend(fontsize=7)
    return fig


def jaccard_plot(report: EvalReport):
    """Concept and per-sample Jaccard: their distributions beside the nulls', and every
    mean beside its label-free value and null."""
    fig = _figure(15, 4.2)
    left, middle, right = fig.subplots(1, 3)
    for i, (enc, style) in enumerate(zip(report.encodings, ("-", "--"))):
        c = enc.concept(None)
        if c is not None:
            bins = np.linspace(0, 1, len(c.histogram) + 1)
            left.stairs(c.histogram, bins, linestyle=style, color=f"C{i}",
                        label=f"{enc.encoding}: mean {c.mean_all:.3f} (all L)")
            if c.null_histogram:
                left.stairs(c.null_histogram, bins, linestyle=":", color=f"C{i}",
                            label=f"{enc.encoding}, labels shuffled: {c.null_all:.3f}")
        nulls = [p.null_histogram for p in enc.active_sets if p.null_histogram]
        for j, p in enumerate(enc.active_sets):
            bins = np.linspace(0, 1, len(p.histogram) + 1)
            middle.stairs(p.histogram, bins, linestyle=style, color=f"C{2 + j}",
                          label=f"{p.a}–{p.b} ({enc.encoding}): {p.mean:.3f}")
        if nulls and len(nulls) == len(enc.active_sets):
            null, _ = enc.mean_active_set_null()
            bins = np.linspace(0, 1, len(nulls[0]) + 1)
            middle.stairs(np.mean(nulls, axis=0), bins, linestyle=":", color="grey" if i == 0 else "k",
                          label=f"{enc.encoding}, other rows (null, mean of pairs): {null:.3f}")
    left.set_title("concept Jaccard J(l), latents active in ≥ 2 streams")
    left.set_xlabel("J(l)")
    left.set_ylabel("latents")
    middle.set_title("per-sample active-set Jaccard")
    middle.set_xlabel("|A_s ∩ A_t| / |A_s ∪ A_t|")
    middle.set_ylabel("rows")
    _floor_bars(report, right)
    for ax in (left, middle):
        if ax.has_data():
            ax.legend(fontsize=6)
    return fig


def _floor_bars(report: EvalReport, ax) -> None:
    """Grouped bars: observed, label-free and null (± sd) of each alignment mean."""
    figures = []
    for enc in report.encodings:
        c = enc.concept(None)
        if c is not None:
            figures.append((f"concept J\n{enc.encoding}", c.mean_all, c.label_free_all, c.null_all, c.null_all_sd))
        null, sd = enc.mean_active_set_null()
        figures.append((f"per-sample J\n{enc.encoding}", enc.mean_active_set_jaccard(), np.nan, null, sd))
    x = np.arange(len(figures))
    w = 0.27
    for j, (name, values, err) in enumerate((("observed", [f[1] for f in figures], None),
                                             ("label-free", [f[2] for f in figures], None),
                                             ("null (labels / rows shuffled)", [f[3] for f in figures],
                                              [0 if np.isnan(f[4]) else f[4] for f in figures]))):
        ax.bar(x + (j - 1) * w, np.nan_to_num(values), w, yerr=err, label=name, color=("C0", "C7", "C3")[j],
               capsize=2)
    ax.set_xticks(x, [f[0] for f in figures], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title("means with their floors (concept J over all L)")
    ax.legend(fontsize=6)


def cross_nmse_plot(report: EvalReport):
    names = list(report.streams)
    fig = _figure(5 * len(report.encodings), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(report.encodings)))
    mats = []
    for enc in report.encodings:
        r = enc.reconstruction
        mats.append(np.array([[r.nmse[t] if t == s else r.cross_nmse(t, s) for s in names] for t in names]))
    finite = np.concatenate([m[np.isfinite(m)] for m in mats]) if mats else np.zeros(1)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for ax, enc, m in zip(axes, report.encodings, mats):
        im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi)  # one scale for both panels
        for i in range(len(names)):
            for j in range(len(names)):
                dark = m[i, j] < (lo + hi) / 2
                ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="w" if dark else "k")
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("source (code)")
        ax.set_ylabel("target (reconstructed)")
        ax.set_title(f"NMSE, {enc.encoding} encoding")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def dead_plot(report: EvalReport):
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    labels = ["dead in all", "dead in some", "alive in all"]
    width = 0.8 / len(report.encodings)
    for i, enc in enumerate(report.encodings):
        d = enc.dead
        values = [d.dead_in_all, d.dead_in_some, d.alive_in_all]
        x = np.arange(3) + (i - (len(report.encodings) - 1) / 2) * width
        bars = ax.bar(x, values, width, label=enc.encoding)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(3), labels)
    ax.set_ylabel(f"latents (of {report.model.n_latents})")
    ax.set_title(PLOTS["dead"])
    ax.legend()
    return fig
