"""eval.md's section and ``sparc eval``'s lines for the scores against planted truth
(markdown.py calls these where a report has them)."""

from __future__ import annotations

from sparc.eval.output.markdown import fmt as _fmt
from sparc.eval.output.markdown import table as _table
from sparc.eval.truth_results import TruthReport


def render_truth(t: TruthReport) -> list[str]:
    """The "Planted truth" section of eval.md (docs/method.md §5.10)."""
    out = ["", "## Planted truth", "",
           f"The store carries the truth it was made with ({t.n_concepts} concepts: {t.n_shared} present in every "
           f"stream, {t.n_exclusive} exclusive to one). *recovered*: a decoder row at cos ≥ {t.threshold:g} to the "
           f"true direction; *aligned*: one latent at cos ≥ {t.align_threshold:g} to a shared concept in every "
           "stream; *aligned (firing)*: one latent that fires in every stream, each encoded alone, when the concept "
           f"is active and seldom otherwise (true-positive − false-positive rate ≥ {t.align_threshold:g}); "
           f"*matched*: concepts and latents paired one to one ({t.matching}).", ""]
    out.append(_table(["recovered", "matched recovered", "median best cos", "shared aligned", "aligned (matched)",
                       "aligned (firing)", "firing TPR − FPR", "exclusive recovered"],
                      [[_fmt(t.recovered), _fmt(t.matched_recovered), _fmt(t.median_best_cos), _fmt(t.shared_aligned),
                        _fmt(t.shared_aligned_matched), _fmt(t.shared_aligned_firing), _fmt(t.firing_alignment),
                        _fmt(t.exclusive_recovered)]]))
    out += ["", "Per stream:", ""]
    out.append(_table(["stream", "concepts", "recovered", "median best cos", "matched recovered", "matched mean cos",
                       "exclusive", "exclusive recovered"],
                      [[r.stream, _fmt(r.n_concepts), _fmt(r.recovered), _fmt(r.median_best_cos),
                        _fmt(r.matched_recovered), _fmt(r.matched_mean_cos), _fmt(r.n_exclusive),
                        _fmt(r.exclusive_recovered)] for r in t.streams]))
    out += ["", f"Latents matched to a concept (best cos ≥ {t.threshold:g}): {t.n_matched_shared:,} to shared "
            f"concepts, {t.n_matched_exclusive:,} to exclusive ones. Calling a matched latent exclusive to a stream "
            "when that stream holds the given share of its firings (independent encoding) or of its decoder norms:",
            ""]
    out.append(_table(["rule", "share", "called exclusive", "truly exclusive", "right stream", "precision", "recall"],
                      [[c.rule, _fmt(c.share, 2), _fmt(c.n_predicted), _fmt(c.n_true), _fmt(c.n_correct),
                        _fmt(c.precision), _fmt(c.recall)] for c in t.classification]))
    if t.absorption:
        out += ["", "Absorption of children into parents: the parent's latent (its decoder row closest to the "
                "parent) firing on rows with the parent alone and with a child; *drop* = the relative fall; "
                f"*absorbed* = rows with a child where it is silent while another firing latent's decoder row is at "
                f"cos ≥ {t.absorb_cos:g} to the parent. Mean drop {_fmt(t.mean_drop())}, mean absorbed "
                f"{_fmt(t.mean_absorbed())}.", ""]
        out.append(_table(["stream", "parent", "latent", "rows alone", "rows with child", "fires alone",
                           "fires with child", "drop", "absorbed"],
                          [[a.stream, str(a.parent), str(a.latent), _fmt(a.rows_alone), _fmt(a.rows_with_child),
                            _fmt(a.fires_alone), _fmt(a.fires_with_child), _fmt(a.drop), _fmt(a.absorbed)]
                           for a in t.absorption]))
    out += [f"- note: {n}" for n in t.notes]
    return out


def truth_summary(t: TruthReport) -> list[str]:
    """The lines ``sparc eval`` prints for the planted truth."""
    lines = [f"planted truth: recovered {_fmt(t.recovered)} (matched {_fmt(t.matched_recovered)}, median best cos "
             f"{_fmt(t.median_best_cos)}), shared aligned {_fmt(t.shared_aligned)} (firing "
             f"{_fmt(t.shared_aligned_firing)}), exclusive recovered {_fmt(t.exclusive_recovered)}"]
    parts = [f"{c.rule} P {_fmt(c.precision)} R {_fmt(c.recall)}" for c in t.classification]
    lines.append(f"exclusive latents called ({', '.join(parts)}); matched latents: {t.n_matched_shared} shared, "
                 f"{t.n_matched_exclusive} exclusive")
    if t.absorption:
        lines.append(f"absorption of children into parents: drop {_fmt(t.mean_drop())}, absorbed "
                     f"{_fmt(t.mean_absorbed())}")
    return lines
