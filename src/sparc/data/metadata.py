"""Read row metadata (ids, groups, images, captions, labels) from CSV or JSONL."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparc.data.rows import RowMeta
from sparc.errors import SparcError

COLUMNS = ("row_id", "group_id", "image", "caption", "labels")


def parse_labels(value: Any) -> tuple[str, ...]:
    """Labels from a list, a JSON list string (``'["a", "b"]'``) or ``'a|b'``."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            return tuple(part.strip() for part in text.split("|") if part.strip())
    if not isinstance(value, list):
        raise ValueError(f"labels must be a list or a '|'-separated string, got {value!r}")
    return tuple(str(v) for v in value)


def _text(value: Any) -> str | None:
    """Optional text field: empty -> None, anything else -> str."""
    if value is None or value == "":
        return None
    return str(value)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record) pairs of a CSV file (with header) or JSONL lines (unparsed)."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if line.strip():
                    yield i, line
    else:
        with open(path, encoding="utf-8", newline="") as f:
            # strict: an unterminated quote is an error, not a field that swallows rows.
            reader = csv.DictReader(f, strict=True)
            if reader.fieldnames is None or "row_id" not in reader.fieldnames:
                raise ValueError(f"the header must name a 'row_id' column (found {reader.fieldnames})")
            start = reader.line_num + 1
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    raise CsvLineError(start, f"{e} (an unterminated quote?)") from None
                if None in rec or None in rec.values():
                    raise CsvLineError(start, f"the row has {len(rec) - (None in rec) + len(rec.get(None) or [])} "
                                       f"fields where the header has {len(reader.fieldnames)} (a stray quote or comma?)")
                yield start, rec
                start = reader.line_num + 1


class CsvLineError(ValueError):
    """A CSV record that does not parse cleanly, and the line it starts on."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line


def read_metadata(path: str | os.PathLike) -> dict[str, RowMeta]:
    """Read metadata keyed by row id; SparcError naming the file and line if bad.

    The file is CSV (header with a ``row_id`` column) or JSON lines (``.jsonl``); other
    columns are ``group_id`` (the split unit), ``image`` (the retrieval identity: rows
    with the same image), ``caption`` and ``labels`` (JSON list or ``'|'``-separated),
    all optional.
    """
    path = Path(path)
    if not path.is_file():
        raise SparcError(f"metadata file not found: '{path}'")
    out: dict[str, RowMeta] = {}
    line = 0
    try:
        for line, rec in _records(path):
            if isinstance(rec, str):
                rec = json.loads(rec)
                if not isinstance(rec, dict):
                    raise ValueError("each line must be a JSON object")
            if rec.get("row_id") in (None, ""):
                raise ValueError("missing row_id")
            meta = RowMeta(
                row_id=str(rec["row_id"]),
                group_id=_text(rec.get("group_id")),
                image=_text(rec.get("image")),
                caption=_text(rec.get("caption")),
                labels=parse_labels(rec.get("labels")),
            )
            if meta.row_id in out:
                raise ValueError(f"duplicate row_id {meta.row_id!r}")
            out[meta.row_id] = meta
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        line = e.line if isinstance(e, CsvLineError) else line
        where = f" line {line}" if line else ""
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SparcError(
            f"bad metadata in '{path}'{where}: {reason}; columns are {', '.join(COLUMNS)} "
            "(labels as a JSON list or 'a|b')"
        ) from None
    return out
