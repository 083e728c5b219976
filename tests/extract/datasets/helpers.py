"""Helpers for the dataset adapter tests: tiny images and JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def make_image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
