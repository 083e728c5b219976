"""Deterministic train/val/test assignment by group.

Each group id is hashed with its seed (``blake2b(f"{seed}:{group_id}")``) to a number
in ``[0, 1)`` which is cut by the split fractions. A row's split therefore depends
only on its group id, the seed and the fractions: no group is ever split across two
splits, and re-importing the same data in any order gives the same splits.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Sequence

import numpy as np

from sparc.errors import SparcError


class Split(enum.StrEnum):
    """A subset of the rows of a store; ``ALL`` is every row."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"
    ALL = "all"

    @classmethod
    def parse(cls, split: str | Split) -> Split:
        """Return ``split`` as a :class:`Split`; SparcError for unknown names."""
        try:
            return cls(split)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise SparcError(f"unknown split {split!r}; choose one of: {choices}") from None

    @property
    def code(self) -> int:
        """Value stored in ``splits.npy`` (``-1`` for ``ALL``, which is not stored)."""
        return _CODES[self]


_CODES = {Split.TRAIN: 0, Split.VAL: 1, Split.TEST: 2, Split.ALL: -1}
STORED_SPLITS = (Split.TRAIN, Split.VAL, Split.TEST)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions: three numbers >= 0 summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not math.isfinite(f) or f < 0 for f in fr):
        raise SparcError(
            f"split fractions must be three numbers >= 0 (train, val, test), got {fractions!r}"
        )
    if abs(sum(fr) - 1.0) > 1e-6:
        raise SparcError(f"split fractions must sum to 1, got {fr} (sum {sum(fr):g})")
    return fr  # type: ignore[return-value]


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (train, val, test) → the checked fractions; one-line errors."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = None
    if values is None or len(values) != 3:
        raise SparcError(f"--splits must be three fractions TRAIN,VAL,TEST (e.g. 0.8,0.1,0.1), got {text!r}")
    return check_fractions(values)


def group_uniform(group_ids: Sequence[str], seed: int) -> np.ndarray:
    """Hash each group id with ``seed`` to a float64 in ``[0, 1)``, shape ``[n]``."""
    digests = b"".join(
        hashlib.blake2b(f"{seed}:{g}".encode(), digest_size=8).digest() for g in group_ids
    )
    h_n = np.frombuffer(digests, dtype="<u8")
    # Top 53 bits -> exactly representable, strictly below 1.
    return (h_n >> np.uint64(11)).astype(np.float64) * 2.0**-53


def assign_splits(
    group_ids: Sequence[str], fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each row, int8 ``[n]``.

    Parameters
    ----------
    group_ids
        Group id of every row.
    fractions
        ``(train, val, test)`` fractions, summing to 1.
    seed
        Changes the assignment; the same seed always gives the same one.
    """
    f_train, f_val, _ = check_fractions(fractions)
    u_n = group_uniform(group_ids, seed)
    codes_n = np.full(u_n.shape, Split.TEST.code, dtype=np.int8)
    codes_n[u_n < f_train + f_val] = Split.VAL.code
    codes_n[u_n < f_train] = Split.TRAIN.code
    return codes_n
