"""Writing an evaluation directory atomically: eval.json, eval.md and plots/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sparc.atomic import atomic_path
from sparc.eval.output.markdown import render_eval
from sparc.eval.results import EvalReport
from sparc.jsonio import json_text
from sparc.workspace import EVAL, check_replaceable, mark

JSON_FILE = "eval.json"
MD_FILE = "eval.md"
PLOT_DIR = "plots"


def check_out_dir(out: Path) -> None:
    """Refuse to replace anything but an earlier evaluation sparc wrote (or an empty
    directory): the rule of :mod:`sparc.workspace`."""
    check_replaceable(out, EVAL, "choose another --out")


def write_eval(report: EvalReport, out: str | Path, *, plots: bool = True) -> EvalReport:
    """Write ``report`` into directory ``out`` (replacing an earlier evaluation there).

    Returns the report with its plot paths filled in."""
    out = Path(out)
    check_out_dir(out)
    with atomic_path(out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        if plots:
            from sparc.eval.output.plots import draw_plots

            files = draw_plots(report, tmp / PLOT_DIR)
            report = dataclasses.replace(report, plots={k: f"{PLOT_DIR}/{v}" for k, v in files.items()})
        (tmp / JSON_FILE).write_text(json_text(report.to_json()))
        (tmp / MD_FILE).write_text(render_eval(report))
        mark(tmp, EVAL, "sparc eval")
    return report
