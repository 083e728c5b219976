"""Building the report directory (see the package docstring for what it holds)."""

from __future__ import annotations

import json
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ImageOps
from tqdm.auto import tqdm

from sparc.atomic import atomic_path
from sparc.data.splits import Split
from sparc.errors import SparcError
from sparc.eval.results import EvalReport, LatentPresence
from sparc.explore.explorer import Explorer
from sparc.explore.name_table import headline
from sparc.explore.neighbours import ALL, nearest_latents
from sparc.explore.report.markdown import markdown_html
from sparc.explore.report.settings import ReportSettings
from sparc.explore.sources import RowImages, stream_modality
from sparc.explore.stats import HIST_EDGES
from sparc.jsonio import to_json
from sparc.train.rundir import RunDir
from sparc.workspace import REPORT, check_not_input, check_replaceable, inside, mark, writing

REPORT_JSON = "report.json"
"""What the report shows and what it took (its ownership is the workspace marker's)."""
HEATMAPS = Path("heatmaps") / "index.json"
"""Where a run keeps its per-latent heatmaps (relative to the run directory)."""
HERE = Path(__file__).parent


@dataclass
class ReportInfo:
    """Where the report went and what it weighs."""

    path: Path
    bytes: int
    files: int
    thumbnails: int
    rows: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.path / "index.html"

    def summary(self) -> str:
        return (f"report: {self.index} ({self.bytes / 1e6:.1f} MB in {self.files} files, {self.rows:,} rows, "
                f"{self.thumbnails:,} thumbnails, {self.seconds:.0f} s); open it in a browser")


def _r(x: float, digits: int = 4) -> float | None:
    """A rounded float, None for NaN (JSON has no NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def _env():
    try:
        import jinja2
    except ImportError:
        raise SparcError("sparc report needs jinja2: pip install 'sparc-sae[report]'") from None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":")}  # compact
    return env


# ------------------------------------------------------------------------------ pieces


def _report_rows(ex: Explorer, settings: ReportSettings) -> tuple[np.ndarray, np.ndarray]:
    """(store rows the report carries, sorted; the query rows among them)."""
    st, e = ex.stats, ex.stats.encoding_index(settings.encoding)
    shown = [st.top_rows[e][..., :settings.top_rows].ravel()]
    if settings.bin_rows:
        bins, per = st.settings.quantile_bins, st.settings.per_bin
        take = [b * per + j for b in range(bins) for j in range(min(settings.bin_rows, per))]
        shown.append(st.sample_rows[e][..., take].ravel())
    if settings.query_rows == 0 or settings.query_rows >= st.n_rows:
        query = st.rows.copy()
    else:
        rng = np.random.default_rng(settings.seed)
        query = np.sort(rng.choice(st.rows, size=settings.query_rows, replace=False))
    rows = np.unique(np.concatenate([*shown, query]))
    return rows[rows >= 0], query


def _thumbnails(ex: Explorer, rows: np.ndarray, out: Path, settings: ReportSettings, notes: list[str]) -> np.ndarray:
    """WebP thumbnails ``thumbs/<i>.webp`` of the report's rows that have an image; bool [len(rows)]."""
    meta = ex.store.rows()
    with_image = [i for i, r in enumerate(rows.tolist()) if meta[r].image]
    has = np.zeros(len(rows), dtype=bool)
    if not with_image:
        return has
    images = RowImages(ex.store)
    if images.note:
        notes.append(f"thumbnails: {images.note}")
    (out / "thumbs").mkdir()
    px = settings.thumb_px

    def make(i: int) -> bool:
        im = images.load(meta[rows[i]])
        if im is None:
            return False
        ImageOps.contain(im, (px, px)).save(out / "thumbs" / f"{i}.webp", format="WEBP", quality=80, method=4)
        return True

    with ThreadPoolExecutor(settings.workers) as pool, tqdm(total=len(with_image), disable=not settings.progress,
                                                            desc="thumbnails", unit="img", dynamic_ncols=True) as bar:
        for i, ok in zip(with_image, pool.map(make, with_image)):
            has[i] = ok
            bar.update()
    if not has.any():
        notes.append("no row image could be read here: the report shows captions only")
    return has


def _rows_data(ex: Explorer, rows: np.ndarray, query: np.ndarray, has_thumb: np.ndarray) -> dict:
    meta = ex.store.rows()
    st = ex.stats
    labels = sorted({x for r in rows.tolist() for x in meta[r].labels})
    label_id = {x: i for i, x in enumerate(labels)}
    position = np.searchsorted(st.rows, query)  # query rows are rows of the split
    local = np.searchsorted(rows, query)
    codes = {}
    for s, stream in enumerate(st.streams):
        idx, val = st.codes_idx[s][position], st.codes_val[s][position]
        codes[stream] = {"idx": idx.ravel().tolist(), "val": np.round(val.astype(np.float64), 3).ravel().tolist()}
    return {
        "id": [meta[r].row_id for r in rows.tolist()],
        "caption": [meta[r].caption or "" for r in rows.tolist()],
        "labels": [[label_id[x] for x in meta[r].labels] for r in rows.tolist()],
        "label_names": labels,
        "thumb": has_thumb.astype(int).tolist(),
        "query": local.tolist(),
        "k": st.k,
        "codes": codes,
    }


def _evaluation(ex: Explorer, notes: list[str]) -> EvalReport | None:
    """The run's evaluation of the statistics' split (``RUN/eval-<split>/eval.json``),
    when it holds the latents' stream presence (docs/method.md §5.9) of this model."""
    if ex.run is None:
        return None
    split = str(Split.parse(ex.stats.settings.split))
    # A report over every row takes the held-out evaluation when there is none of all
    # (the page names the evaluation it shows).
    tried = [split] + (["test", "val", "train"] if split == "all" else [])
    folder = next((RunDir(ex.run).eval_dir(s) for s in tried if (RunDir(ex.run).eval_dir(s) / "eval.json").is_file()),
                  RunDir(ex.run).eval_dir(split))
    hint = f"run 'sparc eval {ex.run} --split {split}' before 'sparc report' to show the latents' stream presence"
    if not (folder / "eval.json").is_file():
        notes.append(f"no evaluation of the {' or '.join(tried)} split: {hint}")
        return None
    try:
        report = EvalReport.load(inside(ex.run, folder.relative_to(ex.run) / "eval.json", f"the run {ex.run}"))
    except SparcError as e:
        notes.append(f"stream presence not shown: {e}")
        return None
    if report.presence is None or report.model != ex.model.cfg or report.streams != ex.model.streams:
        why = "has no stream presence" if report.presence is None else "is of another model"
        notes.append(f"stream presence not shown: {folder.name}/eval.json {why}; {hint}")
        return None
    return report


def presence_labels(presence: LatentPresence) -> list[str]:
    """Each latent's class as the report shows it: shared, mostly S, S only, dead."""
    text = {"shared": "shared", "mostly": "mostly {}", "only": "{} only", "dead": "dead"}
    return [text[c].format(s) for c, s in zip(presence.classes, presence.main_stream)]


def _latent_table(ex: Explorer, settings: ReportSettings, evaluation: EvalReport | None) -> dict:
    st, names = ex.stats, ex.names
    enc = settings.encoding
    freq, agree = st.frequency(enc), st.agreement(enc)
    e = st.encoding_index(enc)
    table: dict = {
        "freq": [[_r(x, 6) for x in row] for row in freq.tolist()],
        "fires": st.fires[e].tolist(),
        "agreement": [_r(x) for x in agree.tolist()],
        "concept_j": None if st.concept_j is None else [_r(x) for x in st.concept_j[e].tolist()],
        "name": [None] * st.n_latents, "aligned": [0] * st.n_latents, "purity": [None] * st.n_latents,
        "words": [[] for _ in range(st.n_latents)],
        "presence": None if evaluation is None else presence_labels(evaluation.presence),
    }
    if names is not None and names.classes:
        aligned = names.aligned
        purity = np.where(names.majority >= 0, names.purity, np.nan)
        with np.errstate(all="ignore"):
            mean_purity = np.nanmean(np.where(np.isnan(purity).all(0), 0, purity), axis=0)
        table["name"] = [headline(names, lat) for lat in range(st.n_latents)]
        table["aligned"] = aligned.astype(int).tolist()
        table["purity"] = [_r(x, 3) if (names.majority[:, i] >= 0).any() else None for i, x in enumerate(mean_purity)]
    if names is not None and names.words is not None:
        table["words"] = [[w for w, _ in names.top_words(lat)] for lat in range(st.n_latents)]
    return table


def _latent_details(ex: Explorer, rows: np.ndarray, settings: ReportSettings, heatmaps: dict,
                    evaluation: EvalReport | None) -> list[dict]:
    st, names = ex.stats, ex.names
    enc = settings.encoding
    e = st.encoding_index(enc)
    local = {r: i for i, r in enumerate(rows.tolist())}
    mean = st.mean_activation(enc)
    near = nearest_latents(ex.model, n=settings.neighbours)
    presence = evaluation.presence if evaluation is not None else None
    fire_share = presence.firing_share() if presence is not None else None
    act_share = presence.activation_share() if presence is not None else None
    out = []
    for lat in range(st.n_latents):
        per_stream = []
        for s, stream in enumerate(st.streams):
            top_rows, top_vals = st.top(enc, stream, lat, settings.top_rows)
            bins = [[[local[r], _r(v)] for r, v in zip(br[:settings.bin_rows].tolist(), bv[:settings.bin_rows].tolist())]
                    for br, bv in st.quantile_samples(enc, stream, lat)] if settings.bin_rows else []
            label = None
            if names is not None and names.classes and names.majority[s, lat] >= 0:
                label = {"label": names.classes[names.majority[s, lat]], "count": int(names.count[s, lat]),
                         "n": int(names.n_voters[s, lat]), "accepted": bool(names.accepted[s, lat])}
            per_stream.append({
                "top": [[local[r], _r(v)] for r, v in zip(top_rows.tolist(), top_vals.tolist())],
                "bins": bins,
                "hist": st.hist[e, s, lat].tolist(),
                "mean": _r(mean[s, lat]), "max": _r(float(st.act_max[e, s, lat])),
                "label": label,
                "near": [[int(i), _r(c, 3)] for i, c in zip(*(x[lat].tolist() for x in near[stream]))],
                "heatmaps": heatmaps.get(str(lat), {}).get(stream, []),
                "presence": None if presence is None else {
                    "fires": presence.fires[stream][lat], "fire_share": _r(fire_share[stream][lat]),
                    "act_share": _r(act_share[stream][lat])},
            })
        words = [[w, _r(v, 3)] for w, v in names.top_words(lat)] if names is not None else []
        out.append({"streams": per_stream, "words": words,
                    "near_all": [[int(i), _r(c, 3)] for i, c in zip(*(x[lat].tolist() for x in near[ALL]))]})
    return out


def _heatmaps(ex: Explorer, out: Path, notes: list[str]) -> dict:
    """The run's heatmaps (the hook of :data:`HEATMAPS`), copied into ``out/heatmaps``."""
    if ex.run is None or not (ex.run / HEATMAPS).is_file():
        return {}
    try:
        index = json.loads(inside(ex.run, HEATMAPS, f"the run {ex.run}").read_text())["latents"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        notes.append(f"heatmaps skipped: {ex.run / HEATMAPS} is unreadable ({e})")
        return {}
    try:
        entries = [(str(lat), str(stream), row_id, str(rel))
                   for lat, streams in index.items() for stream, items in streams.items() for row_id, rel in items]
    except (AttributeError, TypeError, ValueError):
        notes.append(f"heatmaps skipped: {ex.run / HEATMAPS} is not an index sparc wrote "
                     "(remake it: sparc heatmap RUN --for-report)")
        return {}
    result: dict = {}
    (out / "heatmaps").mkdir()
    n = 0
    for lat, stream, row_id, rel in entries:
        src = inside(ex.run, HEATMAPS.parent / rel, str(ex.run / HEATMAPS))
        if not src.is_file():
            continue
        n += 1
        dest = Path("heatmaps") / f"{n}{src.suffix.lower()}"
        shutil.copyfile(src, out / dest)
        result.setdefault(lat, {}).setdefault(stream, []).append([row_id, dest.as_posix()])
    return result


def _overview(ex: Explorer, out: Path, settings: ReportSettings) -> dict:
    st, names = ex.stats, ex.names
    store = ex.store
    info: dict = {
        "model": ex.model.cfg.to_dict(),
        "streams": [{"name": s, "dim": d, "modality": stream_modality(store, s),
                     "source": store.manifest.streams[s].source} for s, d in ex.model.streams.items()],
        "store": {"path": str(store.path.resolve()), "rows": store.n_rows, "normalized": store.normalized,
                  "created": store.manifest.created, "dataset": store.dataset_info()},
        "stats": {**st.settings.identity(), "rows": st.n_rows, "seconds": round(st.seconds, 1)},
        "training": None, "evaluations": [], "localisation": [],
        "naming": None,
    }
    run = RunDir(ex.run) if ex.run is not None else None
    if run is not None and run.spec_file.is_file():
        inside(run.path, run.spec_file.relative_to(run.path), f"the run {run.path}")
        try:
            info["training"] = to_json(run.spec())
        except SparcError:
            pass  # recorded by another version: the report shows no training settings
    if names is not None:
        from sparc.explore.naming import render_evaluation

        info["naming"] = {"settings": to_json(names.settings), "text_stream": names.text_stream,
                          "vocabulary": len(names.vocabulary), "evaluation": markdown_html(render_evaluation(names)),
                          "notes": names.notes}
    if ex.run is not None:
        for d in RunDir(ex.run).eval_dirs():
            if not (d / "eval.md").is_file():
                continue
            plots = {}
            for p in sorted((d / "plots").glob("*.png")) if (d / "plots").is_dir() else []:
                p = inside(ex.run, p.relative_to(ex.run), f"the run {ex.run}")
                dest = Path("plots") / d.name / p.name
                (out / dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, out / dest)
                plots[f"plots/{p.name}"] = dest.as_posix()
            text = inside(ex.run, (d / "eval.md").relative_to(ex.run), f"the run {ex.run}").read_text()
            # The plots eval.md shows appear where it shows them; any other below it.
            info["evaluations"].append({"name": d.name, "html": markdown_html(text, plots), "headline": _headline(inside(ex.run, (d / "eval.json").relative_to(ex.run), f"the run {ex.run}")),
                                        "plots": [v for k, v in plots.items() if f"]({k})" not in text]})
        for d in RunDir(ex.run).localisation_dirs():
            for f in sorted(d.glob("*.md")):
                f = inside(ex.run, f.relative_to(ex.run), f"the run {ex.run}")
                info["localisation"].append({"name": f"{d.name}/{f.name}", "html": markdown_html(f.read_text())})
        # The held-out evaluation leads (its headline figures open the overview).
        info["evaluations"].sort(key=lambda e: (e["name"] != "eval-test", e["name"]))
    return info


def _headline(eval_json: Path) -> list[str]:
    """The evaluation's headline figures, one line each (what ``sparc eval`` prints), or
    none when its eval.json cannot be read by this version."""
    from sparc.eval import EvalReport
    from sparc.eval.output.markdown import render_summary

    try:
        return render_summary(EvalReport.load(eval_json)).splitlines()
    except (SparcError, OSError):
        return []


# ------------------------------------------------------------------------------ the report


def write_report(ex: Explorer, out: str | Path, settings: ReportSettings = ReportSettings(), *,
                 log=print) -> ReportInfo:
    """Write the report of ``ex`` (its run, store, statistics and names) into ``out``,
    replacing an earlier report there (never another folder)."""
    t0 = time.perf_counter()
    out = Path(out)
    # Not an input (before the lock, whose clean-up would reach into it), then sparc's
    # own report or nothing, checked while no other writer can change it.
    check_not_input(out, [ex.store.path] + ([ex.run] if ex.run is not None else []))
    with writing(out, "sparc report"):
        check_replaceable(out, REPORT, "choose a new or empty --out")
        return _write_report(ex, out, settings, t0)


def _write_report(ex: Explorer, out: Path, settings: ReportSettings, t0: float) -> ReportInfo:
    notes: list[str] = []
    st = ex.stats
    env = _env()
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "data").mkdir()
        (tmp / "assets").mkdir()
        rows, query = _report_rows(ex, settings)
        has_thumb = _thumbnails(ex, rows, tmp, settings, notes)
        heatmaps = _heatmaps(ex, tmp, notes)
        chunk_js = env.get_template("data.js.j2")
        (tmp / "data" / "rows.js").write_text(chunk_js.render(kind="rows", index=0,
                                                              data=_rows_data(ex, rows, query, has_thumb)))
        evaluation = _evaluation(ex, notes)
        details = _latent_details(ex, rows, settings, heatmaps, evaluation)
        n_chunks = 0
        for n_chunks, a in enumerate(range(0, st.n_latents, settings.chunk_latents), 1):
            (tmp / "data" / f"latents-{n_chunks - 1:04d}.js").write_text(
                chunk_js.render(kind="latents", index=n_chunks - 1, data=details[a:a + settings.chunk_latents]))
        for name in ("app.js", "live.js", "style.css"):
            shutil.copyfile(HERE / "static" / name, tmp / "assets" / name)
        streams = [{"name": s, "modality": stream_modality(ex.store, s)} for s in st.streams]
        meta = {
            "title": f"sparc — {ex.run.name if ex.run is not None else 'model'}",
            "run": str(ex.run) if ex.run is not None else None,
            "split": st.settings.split, "encoding": settings.encoding, "n_rows": st.n_rows,
            "n_latents": st.n_latents, "k": st.k, "streams": streams,
            "text_stream": ex.names.text_stream if ex.names is not None else None,
            "chunk_latents": settings.chunk_latents, "n_chunks": n_chunks,
            "hist_edges": [_r(x, 5) for x in HIST_EDGES.tolist()],
            "stats_settings": st.settings.identity(), "report_settings": to_json(settings),
            "heatmaps": bool(heatmaps), "notes": notes,
            "overview": _overview(ex, tmp, settings),
            "classes": ex.names.classes if ex.names is not None else [],
            "presence": None if evaluation is None else {
                "eval": RunDir(ex.run).eval_dir(evaluation.split).name, "n_rows": evaluation.n_rows,
                "basis": evaluation.presence.basis, "mostly": evaluation.settings.presence_mostly,
                "only": evaluation.settings.presence_only},
        }
        table = _latent_table(ex, settings, evaluation)
        (tmp / "index.html").write_text(env.get_template("index.html.j2").render(meta=meta, table=table))
        mark(tmp, REPORT, "sparc report")
        files = [p for p in tmp.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        record = {"format": "sparc-report", "version": 1, "bytes": size, "files": len(files) + 1,
                  "rows": len(rows), "thumbnails": int(has_thumb.sum()), "latents": st.n_latents,
                  "seconds": round(time.perf_counter() - t0, 2), "notes": notes}
        (tmp / REPORT_JSON).write_text(json.dumps(record, indent=2) + "\n")
    info = ReportInfo(out, size + (out / REPORT_JSON).stat().st_size, len(files) + 1, int(has_thumb.sum()), len(rows),
                      time.perf_counter() - t0, notes)
    return info
