"""Latent names as a reader sees them: one headline per latent, and the table of every
latent (name, purity, words, frequency) that ``sparc names`` prints and exports.

A label name is a majority vote of a latent's top rows (:mod:`sparc.explore.naming`); it
is accepted from ``min_purity`` (0.3 by default), so a latent whose top rows are all red
things of many categories can win "People & Body" with 19 of 41 votes. Its vocabulary
words say more about such a latent, so below :data:`CLEAR_PURITY` the headline leads with
the words and keeps the label beside them (README, "Reading the names").
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparc.atomic import atomic_path
from sparc.errors import SparcError
from sparc.explore.naming import Names
from sparc.explore.stats import LatentStats

CLEAR_PURITY = 0.5
"""A label carried by fewer than half of a latent's top rows does not lead its headline."""
HEADLINE_WORDS = 3


def best_purity(names: Names, latent: int) -> float | None:
    """The highest purity among the streams that accept a name for ``latent`` (None: none does)."""
    if not names.classes or not names.accepted[:, latent].any():
        return None
    return float(names.purity[names.accepted[:, latent], latent].max())


def headline(names: Names | None, latent: int) -> str | None:
    """What to call ``latent``: its label name when clear (purity ≥ :data:`CLEAR_PURITY`),
    else its top vocabulary words followed by the label in brackets with its purity,
    else whichever of the two exists (None: neither)."""
    if names is None:
        return None
    label = names.name(latent) if names.classes else None
    words = [w for w, _ in names.top_words(latent)[:HEADLINE_WORDS]]
    purity = best_purity(names, latent)
    if label is not None and (purity >= CLEAR_PURITY or not words):
        return label
    if words:
        lead = " · ".join(words)
        return f"{lead} [{label}: {purity:.0%}]" if label is not None else lead
    return None


class NameRow(NamedTuple):
    """One latent's line of the names table."""

    latent: int
    """Latent id."""
    headline: str | None
    """What to call it (:func:`headline`)."""
    label: str | None
    """The accepted label name (aligned, or per stream), None when no stream accepts one."""
    purity: float | None
    """Fraction of its top rows carrying the label (the best accepting stream's)."""
    aligned: bool
    """Every stream accepts the same label."""
    words: tuple[str, ...]
    """Its vocabulary words, by decreasing activation."""
    frequency: dict[str, float]
    """Stream → fraction of the split's rows on which it fires (the names' encoding)."""
    split: str
    """The split whose rows named it."""


def name_rows(names: Names, stats: LatentStats) -> list[NameRow]:
    """Every latent's row, in latent order."""
    freq = stats.frequency(names.settings.encoding)
    split = stats.settings.split
    rows = []
    for lat in range(names.n_latents):
        label = names.name(lat) if names.classes else None
        rows.append(NameRow(
            latent=lat, headline=headline(names, lat), label=label, purity=best_purity(names, lat),
            aligned=bool(names.classes) and bool(names.aligned[lat]),
            words=tuple(w for w, _ in names.top_words(lat)),
            frequency={s: float(freq[i, lat]) for i, s in enumerate(stats.streams)}, split=split))
    return rows


def render_name_table(rows: list[NameRow], show: int) -> str:
    """The ``show`` most frequent latents that fire (by their mean frequency over streams)
    as an aligned text table."""
    firing = [r for r in rows if max(r.frequency.values(), default=0) > 0]
    firing.sort(key=lambda r: (-float(np.mean(list(r.frequency.values()))), r.latent))
    if not firing:
        return "no latent fires on this split"
    streams = list(rows[0].frequency)
    head = f"{'latent':>6}  {'name':<44} {'purity':>6}  " + "  ".join(f"{s[:10]:>10}" for s in streams)
    lines = [head]
    for r in firing[:show]:
        purity = "" if r.purity is None else f"{r.purity:.2f}"
        name = (r.headline or "—") + (" ✓" if r.aligned else "")
        if len(name) > 44:
            name = name[:43] + "…"
        lines.append(f"{r.latent:>6}  {name:<44} {purity:>6}  "
                     + "  ".join(f"{r.frequency[s]:>10.4f}" for s in streams))
    more = len(firing) - show
    lines.append(f"(frequency: fraction of the {rows[0].split} split's rows on which the latent fires; ✓ aligned: "
                 f"every stream gives it the same label" + (f"; {more:,} more firing latents: --show {len(firing)}"
                                                             if more > 0 else "") + ")")
    return "\n".join(lines)


def export_names(rows: list[NameRow], path: Path) -> Path:
    """Write every latent's row to ``path``: ``.csv`` (one line a latent; words joined by
    ``|``, one ``freq_<stream>`` column per stream) or ``.json`` (a list of objects)."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise SparcError(f"--export {path}: the file must end in .csv or .json")
    with atomic_path(path) as tmp:
        if path.suffix == ".json":
            tmp.write_text(json.dumps([r._asdict() | {"words": list(r.words)} for r in rows], ensure_ascii=False,
                                      indent=1))
        else:
            streams = list(rows[0].frequency) if rows else []
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["latent", "headline", "label", "purity", "aligned", "words", "split",
                            *(f"freq_{s}" for s in streams)])
                for r in rows:
                    w.writerow([r.latent, r.headline or "", r.label or "",
                                "" if r.purity is None else f"{r.purity:.4f}", int(r.aligned), "|".join(r.words),
                                r.split, *(f"{r.frequency[s]:.6f}" for s in streams)])
    return path
