"""Pictures of heatmaps and of word attributions: an image with its map laid over it
(the original's ``show_cam_on_image``: jet colours, half opacity), and a caption with each
word shaded by its score, as PNG and as HTML."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sparc.atomic import atomic_path, write_text
from sparc.errors import SparcError


def _jet(m: np.ndarray) -> np.ndarray:
    try:
        from matplotlib import colormaps
    except ImportError:
        raise SparcError("heatmap pictures need matplotlib: pip install 'sparc-sae[localize]'") from None
    return (colormaps["jet"](np.clip(m, 0, 1))[..., :3] * 255).astype(np.uint8)


def overlay(image: Image.Image, map_: np.ndarray, *, alpha: float = 0.5, max_side: int | None = None) -> Image.Image:
    """``image`` with ``map_`` (H×W in [0, 1], resized to the image if needed) over it."""
    image = image.convert("RGB")
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    heat = Image.fromarray(_jet(map_)).resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image, heat, alpha)


def with_legend(im: Image.Image, title: str) -> Image.Image:
    """``im`` above a strip that says what it shows: ``title`` (the prompt or latents and
    the method) and the colour scale, from the map's lowest (0) to its highest (1) value."""
    font = _font(13)
    pad, bar_h = 6, 10
    width = max(im.width, 320)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines, line = [], ""
    for word in title.split():  # wrapped to the picture's width
        trial = f"{line} {word}".strip()
        if line and probe.textlength(trial, font=font) > width - 2 * pad:
            lines.append(line)
            trial = word
        line = trial
    lines.append(line)
    strip_h = pad + 17 * len(lines) + bar_h + 20
    out = Image.new("RGB", (width, im.height + strip_h), "white")
    out.paste(im, ((width - im.width) // 2, 0))
    d = ImageDraw.Draw(out)
    y = im.height + pad
    for text in lines:
        d.text((pad, y), text, fill=(30, 30, 30), font=font)
        y += 17
    bar = Image.fromarray(_jet(np.tile(np.linspace(0, 1, width - 2 * pad)[None, :], (bar_h, 1))))
    out.paste(bar, (pad, y))
    small = _font(11)
    d.text((pad, y + bar_h + 2), "0 (lowest)", fill=(90, 90, 90), font=small)
    right = "1 (highest of this map)"
    d.text((width - pad - probe.textlength(right, font=small), y + bar_h + 2), right, fill=(90, 90, 90), font=small)
    return out


def save_png(im: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "WEBP" if path.suffix.lower() == ".webp" else "PNG"
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt)
    return path


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def words_png(words: list[str], scores: np.ndarray, *, width: int = 640, font_size: int = 18,
              title: str | None = None) -> Image.Image:
    """The words on a white page, each on a red background as strong as its score."""
    font = _font(font_size)
    pad, gap, line_h = 8, font_size // 3, int(font_size * 1.5)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed, x, y = [], pad, pad + (line_h if title else 0)
    for w, s in zip(words, scores):
        wlen = probe.textlength(w, font=font)
        if x + wlen > width - pad and x > pad:
            x, y = pad, y + line_h
        placed.append((w, float(s), x, y, wlen))
        x += wlen + gap
    im = Image.new("RGB", (width, y + line_h + pad), "white")
    d = ImageDraw.Draw(im)
    if title:
        d.text((pad, pad), title, fill=(90, 90, 90), font=_font(max(10, font_size - 4)))
    for w, s, x0, y0, wlen in placed:
        a = max(0.0, min(1.0, s))
        bg = (255, int(255 - 200 * a), int(255 - 200 * a))
        d.rectangle([x0 - 2, y0 - 1, x0 + wlen + 2, y0 + font_size + 4], fill=bg)
        d.text((x0, y0), w, fill="black", font=font)
    return im


def words_html(words: list[str], scores: np.ndarray, *, title: str | None = None) -> str:
    """A standalone HTML page with the words shaded (the score in each word's tooltip)."""
    spans = " ".join(
        f'<span title="{float(s):.3f}" style="background: rgba(255, 55, 55, {max(0.0, min(1.0, float(s))):.3f}); '
        f'padding: 1px 2px; border-radius: 3px">{html.escape(w)}</span>'
        for w, s in zip(words, scores))
    head = f"<p style=\"color:#666\">{html.escape(title)}</p>\n" if title else ""
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sparc word attribution</title></head>\n"
            f"<body style=\"font: 18px/1.8 sans-serif; max-width: 48em; margin: 2em\">\n{head}<p>{spans}</p>\n"
            "</body></html>\n")


def write_words(words: list[str], scores: np.ndarray, png: str | Path, *, title: str | None = None) -> tuple[Path, Path]:
    """``png`` and the same name with ``.html``."""
    png = Path(png)
    save_png(words_png(words, scores, title=title), png)
    page = png.with_suffix(".html")
    write_text(page, words_html(words, scores, title=title))
    return png, page
