"""Plain-text views for the terminal: a latent's card (``sparc latent``) and a query's
table (``sparc query``), and the PNG grid of a query's top rows."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from sparc.atomic import atomic_path
from sparc.explore.explorer import Explorer, QueryResult
from sparc.explore.name_table import headline
from sparc.explore.neighbours import ALL, nearest_latents
from sparc.explore.sources import RowImages, stream_modality


def _short(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _row_text(ex: Explorer, row: int, width: int = 60) -> str:
    m = ex.store.rows()[row]
    labels = f" [{', '.join(m.labels)}]" if m.labels else ""
    return _short(f"{m.row_id}  {m.caption or ''}{labels}", width)


def latent_names(ex: Explorer, latent: int) -> list[str]:
    """Lines naming the latent: label names per stream and its vocabulary words."""
    names = ex.names
    if names is None:
        return []
    lines = []
    if names.classes:
        name = headline(names, latent)
        tag = " (aligned: every stream agrees)" if names.aligned[latent] else ""
        lines.append(f"name: {name or '—'}{tag}")
        per = []
        for s, stream in enumerate(names.streams):
            if names.majority[s, latent] >= 0:
                label = names.classes[names.majority[s, latent]]
                mark = "" if names.accepted[s, latent] else ", below the purity threshold"
                per.append(f"{stream} {label} ({names.count[s, latent]}/{names.n_voters[s, latent]} = "
                           f"{names.purity[s, latent]:.2f}{mark})")
            else:
                per.append(f"{stream} —")
        lines.append(f"majority label of the top {names.settings.top} labelled rows ({names.settings.encoding}): "
                     + "; ".join(per))
    words = names.top_words(latent)
    if words:
        lines.append(f"words (through {names.text_stream}): " + ", ".join(f"{w} ({v:.2f})" for w, v in words))
    return lines


def latent_card(ex: Explorer, latent: int, *, encoding: str = "joint", rows: int = 5) -> str:
    """Everything known about one latent, as text."""
    st = ex.stats
    st.check_latent(latent)
    e = st.encoding_index(encoding)
    lines = [f"latent {latent} of {st.n_latents} — split {st.settings.split} ({st.n_rows:,} rows), "
             f"{encoding} encoding"]
    lines += latent_names(ex, latent)
    freq, mean = st.frequency(encoding), st.mean_activation(encoding)
    lines.append("")
    lines.append(f"{'stream':<12} {'fires':>7} {'frequency':>10} {'mean':>8} {'max':>8}")
    for s, stream in enumerate(st.streams):
        m = mean[s, latent]
        lines.append(f"{stream:<12} {st.fires[e, s, latent]:>7,} {100 * freq[s, latent]:>9.2f}% "
                     f"{'—' if math.isnan(m) else f'{m:.3f}':>8} {st.act_max[e, s, latent]:>8.3f}")
    agree = st.agreement(encoding)[latent]
    if math.isnan(agree):
        lines.append("agreement: — (never fires)")
    else:
        lines.append(f"agreement: {agree:.2f} (fires in every stream on {st.n_all[e, latent]:,} of the "
                     f"{st.n_any[e, latent]:,} rows where it fires in one)")
    if st.concept_j is not None:
        lines.append(f"concept Jaccard: {st.concept_j[e, latent]:.3f}")
    near = nearest_latents(ex.model, [latent], n=5)
    lines.append("nearest latents by decoder cosine: " + "; ".join(
        f"{s}: " + ", ".join(f"{int(i)} ({c:.2f})" for i, c in zip(ids[0], cos[0])) for s, (ids, cos) in near.items()
        if s == ALL or len(st.streams) > 1))
    for stream in st.streams:
        top_rows, top_vals = st.top(encoding, stream, latent, rows)
        lines.append("")
        lines.append(f"top rows, {stream} ({stream_modality(ex.store, stream) or 'features'}):")
        if not len(top_rows):
            lines.append("  (never fires)")
        for rank, (r, v) in enumerate(zip(top_rows.tolist(), top_vals.tolist()), 1):
            lines.append(f"  {rank:>2}. {v:7.3f}  {_row_text(ex, r)}")
    return "\n".join(lines)


def query_table(ex: Explorer, result: QueryResult, *, latents: int = 10) -> str:
    """The query's latents (with names) and the ranked rows of every other stream."""
    lines = [f"query: {result.query} through {result.stream} (encoded alone) — "
             f"{len(result.latents)} active latents"]
    if not result.latents:
        lines.append("  (no latent fires: nothing to rank)")
    else:
        lines.append(f"  {'latent':>6} {'value':>7}  name / words")
        for lat, v in result.latents[:latents]:
            desc = headline(ex.names, lat) or "—"
            lines.append(f"  {lat:>6} {v:>7.3f}  {_short(desc, 70)}")
        if len(result.latents) > latents:
            lines.append(f"  … {len(result.latents) - latents} more")
    for stream, ranked in result.ranked.items():
        lines.append("")
        lines.append(f"rows of {stream} by cosine of sparse codes ({ex.stats.n_rows:,} rows of the "
                     f"{ex.stats.settings.split} split):")
        if not ranked:
            lines.append("  (none)")
        for rank, (r, score) in enumerate(ranked, 1):
            lines.append(f"  {rank:>2}. {score:6.3f}  {_row_text(ex, r, 70)}")
    return "\n".join(lines)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def write_grid(ex: Explorer, result: QueryResult, path: str | Path, *, cell: int = 128, columns: int | None = None) -> Path:
    """A PNG: one band per ranked stream, its top rows left to right (the row's image,
    or its caption when it has none), with rank, score and caption."""
    images = RowImages(ex.store)
    bands = [(s, ranked[:columns] if columns else ranked) for s, ranked in result.ranked.items()]
    n_cols = max([len(r) for _, r in bands] + [1])
    pad, text_h, head_h = 6, 34, 24
    W = pad + n_cols * (cell + pad)
    H = head_h + len(bands) * (head_h + cell + text_h + pad) + pad
    canvas = Image.new("RGB", (max(W, 480), H), "white")
    draw = ImageDraw.Draw(canvas)
    small, big = _font(11), _font(14)
    draw.text((pad, 4), _short(f"{result.query} -> latents of {result.stream}", 90), fill="black", font=big)
    y = head_h
    meta = ex.store.rows()
    for stream, ranked in bands:
        draw.text((pad, y + 4), f"{stream}: top rows by cosine of sparse codes", fill="#333", font=big)
        y += head_h
        for j, (r, score) in enumerate(ranked):
            x = pad + j * (cell + pad)
            im = images.load(meta[r])
            if im is not None:
                im = ImageOps.contain(im, (cell, cell))
                canvas.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
            else:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline="#bbb", fill="#f4f4f4")
                body = "\n".join(textwrap.wrap(meta[r].caption or meta[r].row_id, 18)[:7])
                draw.multiline_text((x + 4, y + 4), body, fill="black", font=small)
            caption = textwrap.wrap(f"{j + 1}. {score:.2f} {meta[r].caption or meta[r].row_id}", 20)[:2]
            draw.multiline_text((x, y + cell + 2), "\n".join(caption), fill="black", font=small)
        y += cell + text_h + pad
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
