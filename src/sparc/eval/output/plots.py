"""PNG plots of an evaluation, drawn from the report alone (matplotlib, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparc.errors import SparcError
from sparc.eval.results import EvalReport

PLOTS = {
    "firing": "Firing frequency of the latents per stream",
    "jaccard": "Distribution of the concept and per-sample Jaccard",
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
    fig = _figure(10, 4)
    left, right = fig.subplots(1, 2)
    for enc, style in zip(report.encodings, ("-", "--")):
        c = enc.concept(None)
        if c is not None:
            bins = np.linspace(0, 1, len(c.histogram) + 1)
            left.stairs(c.histogram, bins, linestyle=style,
                        label=f"{enc.encoding}: mean {c.mean_all:.3f} (all L)")
        for p in enc.active_sets:
            bins = np.linspace(0, 1, len(p.histogram) + 1)
            right.stairs(p.histogram, bins, linestyle=style, label=f"{p.a}–{p.b} ({enc.encoding}): {p.mean:.3f}")
    left.set_title("concept Jaccard J(l), latents active in ≥ 2 streams")
    left.set_xlabel("J(l)")
    left.set_ylabel("latents")
    right.set_title("per-sample active-set Jaccard")
    right.set_xlabel("|A_s ∩ A_t| / |A_s ∪ A_t|")
    right.set_ylabel("rows")
    for ax in (left, right):
        if ax.has_data():
            ax.legend(fontsize=7)
    return fig


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
