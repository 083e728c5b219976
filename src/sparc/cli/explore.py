"""``sparc stats``, ``names``, ``latent``, ``query``, ``report`` and ``serve``: looking inside a run (sparc.explore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from sparc.cli.common import Flat
from sparc.errors import SparcError
from sparc.explore.report.settings import ReportSettings
from sparc.explore.settings import NamingSettings, StatsSettings


def _explorer(run: Path, store: Path | None, split: str, *, device: str, progress: bool, names: bool = True,
              backbone_device: str = "cpu"):
    """The run's Explorer, reusing the statistics and names saved for the split."""
    from sparc.explore import Explorer, NamingSettings, StatsSettings

    return Explorer.open(run, store, stats_settings=StatsSettings(split=split, device=device, progress=progress),
                         naming=NamingSettings(device=backbone_device) if names else None, reuse_any=True,
                         device=backbone_device)


@dataclass
class Stats:
    """Compute the latent statistics of a run on a split (saved in RUN/explore-<split>/, reused by latent, query, names and report)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    settings: Annotated[StatsSettings, Flat] = field(default_factory=StatsSettings)

    recompute: bool = False
    """Recompute even when statistics with these settings are saved."""

    def run(self) -> None:
        from sparc.data import FeatureStore
        from sparc.explore import stats_for_run
        from sparc.explore.explorer import check_store_belongs
        from sparc.explore.stats import explore_dir
        from sparc.train.rundir import RunDir, load_model

        settings = self.settings
        model = load_model(self.run_dir)
        store = FeatureStore.open(self.store or RunDir(self.run_dir).trained_store())
        check_store_belongs(self.run_dir, model, store)
        stats = stats_for_run(self.run_dir, model, store, settings, recompute=self.recompute)
        alive = ", ".join(f"{s} {int((stats.fires[0, i] > 0).sum()):,}" for i, s in enumerate(stats.streams))
        print(f"latent statistics of {stats.n_latents:,} latents on {stats.n_rows:,} rows of the {stats.settings.split} "
              f"split ({stats.seconds:.1f} s to compute); latents firing (joint): {alive}")
        print(f"saved in {explore_dir(self.run_dir, settings.split)}")


@dataclass
class Names:
    """Name the latents of a run: from labels (the original's majority of the top 50) and from a vocabulary through a text stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "all"
    """Split of the store whose statistics name the latents (default all: exploring reads every row, as the report does; 'sparc eval' keeps the held-out test split)."""

    naming: Annotated[NamingSettings, Flat] = field(default_factory=NamingSettings)

    show: int = 20
    """Latents listed (the most frequent that fire); 0 lists none."""

    export: Path | None = None
    """Also write every latent's name, purity, words and frequency to this .csv or .json file."""

    recompute: bool = False
    """Recompute the statistics and the names."""

    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        from sparc.explore import Explorer, names_for_run
        from sparc.explore.name_table import export_names, name_rows, render_name_table
        from sparc.explore.naming import render_evaluation

        if self.show < 0:
            raise SparcError(f"--show must be at least 0, got {self.show}")
        if self.export is not None and self.export.suffix not in (".csv", ".json"):
            raise SparcError(f"--export {self.export}: the file must end in .csv or .json")
        from sparc.explore.stats import explore_dir

        naming = self.naming
        ex = Explorer.open(self.run_dir, self.store, stats_settings=StatsSettings(
            split=self.split, top=max(naming.top, 50), device=naming.device, progress=self.progress),
            naming=None, recompute=self.recompute, reuse_any=not self.recompute and naming.top <= 50,
            device=naming.device)
        names = names_for_run(self.run_dir, ex.model, ex.store, ex.stats, naming, recompute=self.recompute)
        if names.classes:
            named = ", ".join(f"{s} {int(names.accepted[i].sum()):,}" for i, s in enumerate(names.streams))
            print(f"latents named from labels ({names.settings.encoding}, purity ≥ {names.settings.min_purity:g}): "
                  f"{named}; aligned (every stream the same name): {int(names.aligned.sum()):,} of {names.n_latents:,}")
        if names.words is not None:
            print(f"latents with vocabulary words (through {names.text_stream}, {len(names.vocabulary):,} entries): "
                  f"{int((names.words[:, 0] >= 0).sum()):,}")
        table = render_evaluation(names)
        if table:
            print()
            print(table)
        for note in names.notes:
            print(f"note: {note}")
        rows = name_rows(names, ex.stats)
        if self.show:
            print()
            print(f"latents of the {ex.stats.settings.split} split ({ex.stats.n_rows:,} rows):")
            print(render_name_table(rows, self.show))
        print(f"saved in {explore_dir(self.run_dir, self.split) / 'names.json'}")
        if self.export is not None:
            print(f"wrote {export_names(rows, self.export)}")


@dataclass
class Latent:
    """Print a latent's card: names, firing per stream, agreement, nearest latents, top rows per stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    latent: Annotated[int, tyro.conf.Positional, tyro.conf.arg(metavar="L")]
    """Latent id (0 to n_latents - 1)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "all"
    """Split whose statistics are shown (computed on first use) (default all: exploring reads every row, as the report does; 'sparc eval' keeps the held-out test split)."""

    encoding: Literal["joint", "independent"] = "joint"
    """Statistics of the joint codes (all streams together) or of the independent ones (each stream alone)."""

    rows: int = 5
    """Top rows shown per stream."""

    device: str = "cpu"
    """Torch device of the model."""

    progress: bool = True
    """Show progress bars (when the statistics are computed)."""

    def run(self) -> None:
        from sparc.explore.render import latent_card
        from sparc.train.rundir import load_model

        n_latents = load_model(self.run_dir).n_latents
        if not 0 <= self.latent < n_latents:
            raise SparcError(f"latent {self.latent} does not exist; this model has {n_latents} latents "
                             f"(0 to {n_latents - 1})")
        ex = _explorer(self.run_dir, self.store, self.split, device=self.device, progress=self.progress)
        print(latent_card(ex, self.latent, encoding=self.encoding, rows=self.rows))


@dataclass
class Query:
    """Encode a caption, an image or a row with its stream's backbone, list the latents it activates and rank the rows of every other stream."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    text: str | None = None
    """A caption, encoded by a text stream's backbone (as recorded in the store)."""

    image: Path | None = None
    """An image file, encoded by an image stream's backbone."""

    row: str | None = None
    """The id of a row of the store, encoded from its stored features."""

    stream: str | None = None
    """Stream to encode the query with (default: the first text / image stream; for --row the model's first)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "all"
    """Split whose rows are ranked (default all: exploring reads every row, as the report does; 'sparc eval' keeps the held-out test split)."""

    top: int = 10
    """Rows shown per stream."""

    grid: Path | None = None
    """Also write a PNG grid of the top rows of every stream here."""

    backbone: str | None = None
    """FAMILY[:key=value,...] to build instead of reading the backbone's options from the store (still checked against its fingerprint)."""

    device: str = "cpu"
    """Torch device of the backbone."""

    progress: bool = True
    """Show progress bars (when the statistics are computed)."""

    def run(self) -> None:
        from sparc.data.splits import STORED_SPLITS
        from sparc.explore.render import query_table, write_grid

        given = [flag for flag, v in (("--text", self.text), ("--image", self.image), ("--row", self.row)) if v is not None]
        if len(given) != 1:
            raise SparcError("give exactly one of --text, --image or --row")
        if self.top < 1:
            raise SparcError(f"--top must be at least 1, got {self.top}")
        ex = _explorer(self.run_dir, self.store, self.split, device="cpu", progress=self.progress,
                       backbone_device=self.device)
        if self.text is not None:
            result = ex.query_text(self.text, self.stream, top=self.top, backbone=self.backbone)
        elif self.image is not None:
            result = ex.query_image(self.image, self.stream, top=self.top, backbone=self.backbone)
        else:
            result = ex.query_row(self.row, self.stream, top=self.top)
        print(query_table(ex, result))
        for stream, ranked in result.ranked.items():
            # A split hides rows: say when one outside it would have come first.
            elsewhere = ex.best_elsewhere(result.code, stream) if ranked else None
            if elsewhere is not None and elsewhere[1] > ranked[0][1] + 1e-6:
                row, score = elsewhere
                split = STORED_SPLITS[int(ex.store.split_codes()[row])]
                print(f"note: {stream}: row {ex.store.rows()[row].row_id} of the {split} split "
                      f"matches better (cosine {score:.3f} against {ranked[0][1]:.3f} here); "
                      f"search every row with --split all")
        if self.grid is not None:
            print(f"wrote {write_grid(ex, result, self.grid)}")


@dataclass
class Report:
    """Write a static site to browse the run's concept space (opens from disk, no server; its query box then matches stored captions only: sparc serve RUN queries any text or image live)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    out: Path
    """Directory to write (index.html, data/, thumbs/, assets/); an earlier report there is replaced."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "all"
    """Split whose statistics the report shows (computed on first use) (default all: exploring reads every row, as the report does; 'sparc eval' keeps the held-out test split)."""

    settings: Annotated[ReportSettings, Flat] = field(default_factory=ReportSettings)

    device: str = "cpu"
    """Torch device of the model and backbones."""

    def run(self) -> None:
        from sparc.explore.report import write_report

        ex = _explorer(self.run_dir, self.store, self.split, device=self.device, progress=self.settings.progress,
                       backbone_device=self.device)
        info = write_report(ex, self.out, self.settings)
        for note in info.notes:
            print(f"note: {note}")
        print(info.summary())


@dataclass
class Serve:
    """Serve the run's report on a local web server whose query box encodes any text or dropped image live (needs the serve extra)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    report: Path | None = None
    """Report folder to serve (written there first when it holds none; default: RUN-report beside the run)."""

    rebuild: bool = False
    """Write the report again even when the folder holds one."""

    host: str = "127.0.0.1"
    """Address to listen on (default loopback: only this machine; the server has no authentication)."""

    port: int = 8000
    """Port to listen on (0: any free port)."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    split: str = "all"
    """Split whose rows queries rank and the report shows (default all: every row, as sparc report)."""

    top: int = 10
    """Rows per stream in an answer (a query may ask for up to 100)."""

    settings: Annotated[ReportSettings, Flat] = field(default_factory=ReportSettings)

    device: str = "cpu"
    """Torch device of the model and backbones."""

    def run(self) -> None:
        from sparc.explore.serve import MAX_TOP, bind, require_web

        require_web()
        if not 1 <= self.top <= MAX_TOP:
            raise SparcError(f"--top must be between 1 and {MAX_TOP}, got {self.top}")
        sock = bind(self.host, self.port)  # a taken port is said before anything loads
        try:
            self._serve(sock)
        finally:
            sock.close()

    def _serve(self, sock) -> None:
        from sparc.explore.serve import LiveQueries, default_report, make_app, prepare_report, run_forever, url_of

        ex = _explorer(self.run_dir, self.store, self.split, device=self.device, progress=self.settings.progress,
                       backbone_device=self.device)
        report = prepare_report(ex, self.report or default_report(self.run_dir), self.settings, rebuild=self.rebuild)
        live = LiveQueries(ex, report, top=self.top)
        print(f"sparc serve: {url_of(sock)} (Ctrl-C stops it)", flush=True)
        run_forever(make_app(live, report), sock)
