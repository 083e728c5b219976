"""``sparc eval`` and ``sparc compare``: the paper's metrics of runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from sparc.cli.common import Flat
from sparc.errors import SparcError
from sparc.eval.settings import EvalSettings


@dataclass
class Eval:
    """Evaluate a run on a split of a feature store: eval.json, eval.md and plots."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store to evaluate on (default: the store the run was trained on)."""

    out: Path | None = None
    """Directory to write (default: RUN/eval-<split>); an earlier evaluation there is replaced."""

    settings: Annotated[EvalSettings, Flat] = field(default_factory=EvalSettings)

    def run(self) -> None:
        from sparc.data import FeatureStore
        from sparc.eval import evaluate, write_eval
        from sparc.eval.output.markdown import render_summary
        from sparc.eval.output.write import check_out_dir
        from sparc.train.rundir import RunDir, load_model
        from sparc.workspace import check_not_input, clean_stale, exclusive_lock

        model = load_model(self.run_dir)
        store = FeatureStore.open(self.store or RunDir(self.run_dir).trained_store())
        out = self.out or RunDir(self.run_dir).eval_dir(self.settings.split)
        check_not_input(out, [store.path])
        if self.run_dir.resolve().is_relative_to(out.resolve()):
            raise SparcError(f"--out {out} holds the run {self.run_dir}; write the evaluation somewhere else")
        with exclusive_lock(out, "sparc eval"):
            clean_stale(out)
            check_out_dir(out)
            report = evaluate(model, store, self.settings, run=self.run_dir.resolve().name)
            write_eval(report, out, plots=self.settings.plots)
        print(render_summary(report))
        print(f"wrote {out / 'eval.json'} and {out / 'eval.md'}")


@dataclass
class Compare:
    """Compare evaluated runs side by side in the paper's table shape (Markdown and JSON)."""

    paths: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_OR_EVAL_DIR")]
    """Run directories (their eval-<split>/), eval directories or eval.json files."""

    out: Path | None = None
    """Directory to write compare.md and compare.json into (default: print only)."""

    split: str = "test"
    """Which eval-<split>/ to read from run directories."""

    stability: bool = False
    """Instead: match the latents of runs that differ only by their seed (decoder directions, Hungarian method) and report how many a new seed finds again (docs/method.md §5.11)."""

    threshold: float = 0.7
    """--stability: a matched latent is found again when its partner's decoder cosine is at least this."""

    def run(self) -> None:
        from sparc.atomic import write_json, write_text
        from sparc.eval import compare, render_comparison

        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise SparcError(f"{self.out} exists and is not a directory; choose another --out")
        if self.stability:
            self._stability()
            return
        comparison = compare(self.paths, self.split)
        md = render_comparison(comparison)
        print(md, end="")
        if self.out is not None:
            if self.out.exists() and not self.out.is_dir():
                raise SparcError(f"{self.out} exists and is not a directory; choose another --out")
            write_text(self.out / "compare.md", md)
            write_json(self.out / "compare.json", comparison.to_json())
            print(f"wrote {self.out / 'compare.md'} and {self.out / 'compare.json'}")

    def _stability(self) -> None:
        from sparc.atomic import write_json, write_text
        from sparc.eval.stability import render_stability, stability
        from sparc.jsonio import to_json
        from sparc.train.rundir import load_model

        names = [p.name for p in self.paths]
        report = stability([load_model(p) for p in self.paths], names, self.threshold)
        md = render_stability(report)
        print(md, end="")
        if self.out is not None:
            write_text(self.out / "stability.md", md)
            write_json(self.out / "stability.json", to_json(report))
            print(f"wrote {self.out / 'stability.md'} and {self.out / 'stability.json'}")
