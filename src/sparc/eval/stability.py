"""Which latents a new seed finds again: runs that differ only by their seed, their
latents matched one to one by decoder direction (docs/method.md §5.11).

For two runs A and B and a stream s, ``cos_s[i, j]`` is the cosine of A's decoder row i
and B's decoder row j in s (rows are unit norm per stream, §1.7). A one-to-one matching
that maximises the summed cosine (the Hungarian method, SciPy's
``linear_sum_assignment``) pairs every latent of A with one of B; a latent is *found
again* in s when its partner's cosine is at least ``threshold``. *Jointly*, the matching
maximises the cosine averaged over the streams, and a latent is found again when its
partner is at least ``threshold`` in **every** stream — the same concept in every model,
found again as one latent. Latents dead in either run (by their training counters) are
reported apart: their rows are where initialisation left them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparc.errors import SparcError
from sparc.model import SPARC


@dataclass
class Matching:
    """One matching of A's latents to B's."""

    partner: list[int]
    """B's latent matched to each of A's, in A's order."""
    cosine: list[float]
    """The partner's cosine (jointly: the smallest over the streams)."""
    found: float
    """Fraction of A's latents whose partner is at least the threshold."""
    found_alive: float
    """The same over the latents alive in both (NaN when none is)."""
    median: float
    """Median partner cosine."""


@dataclass
class PairStability:
    """Run A against run B."""

    a: str
    b: str
    streams: dict[str, Matching]
    joint: Matching


@dataclass
class StabilityReport:
    """Every pair of the runs, and each latent of the first run: in how many other runs
    it is found again jointly."""

    runs: list[str]
    threshold: float
    pairs: list[PairStability] = field(default_factory=list)
    found_in: list[int] = field(default_factory=list)
    """For each latent of the first run: the other runs that find it again jointly."""

    @property
    def stable(self) -> float:
        """Fraction of the first run's latents found again jointly in every other run."""
        n = len(self.runs) - 1
        return float(np.mean([c == n for c in self.found_in])) if self.found_in else float("nan")


def check_comparable(models: list[SPARC], names: list[str]) -> None:
    """One-line errors for runs that cannot be matched: other streams, widths or sizes."""
    if len(models) < 2:
        raise SparcError("--stability needs at least two runs (the same settings, other seeds)")
    first = models[0]
    for m, name in zip(models[1:], names[1:]):
        if m.streams != first.streams:
            raise SparcError(f"{name} has streams {m.streams}, {names[0]} has {first.streams}: runs of different "
                             "stores cannot be matched")
        if m.n_latents != first.n_latents:
            raise SparcError(f"{name} has {m.n_latents} latents, {names[0]} has {first.n_latents}: match runs of "
                             "one size")


def _matching(cos: np.ndarray, score: np.ndarray, alive: np.ndarray, threshold: float) -> Matching:
    """Match rows to columns maximising ``score``; report ``cos`` at the partners."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(score, maximize=True)
    partner = np.empty(score.shape[0], dtype=np.int64)
    partner[rows] = cols
    got = cos[np.arange(len(partner)), partner]
    both = alive[0] & alive[1][partner]
    return Matching(partner.tolist(), np.round(got, 5).tolist(), float((got >= threshold).mean()),
                    float((got[both] >= threshold).mean()) if both.any() else float("nan"), float(np.median(got)))


def compare_pair(a: SPARC, b: SPARC, names: tuple[str, str], threshold: float) -> PairStability:
    """A's latents matched to B's, per stream and jointly."""
    alive = (~a.dead_mask().any(0)).cpu().numpy(), (~b.dead_mask().any(0)).cpu().numpy()
    per: dict[str, np.ndarray] = {}
    streams = {}
    for s in a.names:
        cos = (a.decoder_directions(s) @ b.decoder_directions(s).T).numpy()
        per[s] = cos
        streams[s] = _matching(cos, cos, alive, threshold)
    stacked = np.stack(list(per.values()))
    joint = _matching(stacked.min(0), stacked.mean(0), alive, threshold)
    return PairStability(names[0], names[1], streams, joint)


def stability(models: list[SPARC], names: list[str], threshold: float = 0.7) -> StabilityReport:
    """Every pair of ``models`` (same settings, other seeds) matched; the first run's
    latents counted by the other runs that find them again jointly."""
    check_comparable(models, names)
    if not 0 < threshold <= 1:
        raise SparcError(f"the stability threshold must be in (0, 1], got {threshold}")
    report = StabilityReport(list(names), threshold)
    found = np.zeros(models[0].n_latents, dtype=np.int64)
    for i in range(len(models)):
        for j in range(i + 1, len(models)):
            pair = compare_pair(models[i], models[j], (names[i], names[j]), threshold)
            report.pairs.append(pair)
            if i == 0:
                found += np.asarray(pair.joint.cosine) >= threshold
    report.found_in = found.tolist()
    return report


def render_stability(report: StabilityReport) -> str:
    """The report as a Markdown table with a legend."""
    streams = list(report.pairs[0].streams)
    head = ["run A", "run B", *(f"found in {s}" for s in streams), "found jointly", "jointly, alive in both",
            "median joint cos"]
    lines = ["# Stability across seeds", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in report.pairs:
        cells = [p.a, p.b, *(f"{p.streams[s].found:.3f}" for s in streams), f"{p.joint.found:.3f}",
                 f"{p.joint.found_alive:.3f}", f"{p.joint.median:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Latents matched one to one by decoder direction (Hungarian method); *found*: the partner's "
              f"cosine ≥ {report.threshold:g} in that stream; *jointly*: matched on the cosine averaged over the "
              f"streams and found when ≥ {report.threshold:g} in every stream. Of {report.runs[0]}'s latents, "
              f"{report.stable:.3f} are found again jointly in every other run (docs/method.md §5.11).", ""]
    return "\n".join(lines)
