"""Per-row metadata (:class:`RowMeta`) and its ``rows.jsonl`` encoding."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RowMeta:
    """What is known about one row besides its features.

    Parameters
    ----------
    row_id
        Unique id of the row (e.g. ``"<image>#<caption index>"``).
    group_id
        Rows sharing a group id always land in the same split (e.g. all captions of
        one image, or near-duplicates). Defaults to ``row_id``.
    image
        Image path or id, if any. It is also the retrieval identity: rows with the same
        ``image`` show the same image, and only they are correct matches of one another
        in the evaluation's headline retrieval; a row without one is its own image.
    caption
        Caption text, if any.
    labels
        Class names attached to the row (may be empty).
    """

    row_id: str
    group_id: str | None = None
    image: str | None = None
    caption: str | None = None
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.row_id, str):
            raise TypeError(f"RowMeta.row_id must be a str, got {type(self.row_id).__name__}")
        if self.group_id is None:
            object.__setattr__(self, "group_id", self.row_id)
        elif not isinstance(self.group_id, str):
            raise TypeError(f"RowMeta.group_id must be a str, got {type(self.group_id).__name__}")
        if not isinstance(self.labels, tuple):
            # Accept any iterable of names but store an immutable tuple.
            object.__setattr__(self, "labels", tuple(self.labels))
        if not all(isinstance(label, str) for label in self.labels):
            raise TypeError("RowMeta.labels must be strings")


def encode_rows(meta: Iterable[RowMeta]) -> str:
    """Encode rows as JSON lines (one object per row, each ending in a newline)."""
    return "".join(
        json.dumps(
            {
                "row_id": m.row_id,
                "group_id": m.group_id,
                "image": m.image,
                "caption": m.caption,
                "labels": list(m.labels),
            },
            ensure_ascii=False,
        )
        + "\n"
        for m in meta
    )


def decode_row(line: str) -> RowMeta:
    """Decode one ``rows.jsonl`` line; raises ``ValueError``/``KeyError`` if malformed."""
    obj = json.loads(line)
    return RowMeta(
        row_id=obj["row_id"],
        group_id=obj.get("group_id"),
        image=obj.get("image"),
        caption=obj.get("caption"),
        labels=tuple(obj.get("labels") or ()),
    )


def group_ids(meta: Sequence[RowMeta]) -> list[str]:
    """The group id of every row (``row_id`` where none was given)."""
    return [m.group_id for m in meta]  # type: ignore[misc]  # set in __post_init__
