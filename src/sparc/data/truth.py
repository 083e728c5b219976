"""``truth.npz``: the planted ground truth a synthetic store carries (``sparc synth``).

A store made by :func:`sparc.data.planted.make_planted` knows what generated it: the
concepts, each one's kind, its true direction in every stream where it is present, and
the true code of every row. :class:`PlantedTruth` is that knowledge, read and written as
one NumPy archive beside the store's manifest (docs/formats.md, "Planted truth").
Nothing in it is pickled: it loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparc.errors import SparcError

TRUTH = "truth.npz"
"""The file's name inside the store's folder."""
FORMAT = "sparc-truth"
VERSION = 1
KINDS = ("shared", "exclusive", "parent", "child")
"""A concept is ``shared`` (present in every stream), ``exclusive`` (present in one stream
only, its ``home``), a ``parent`` (present in every stream, with children) or a ``child``
(present in every stream, active only on rows where its parent is active)."""


@dataclass(frozen=True, eq=False)
class PlantedTruth:
    """What generated a planted store. Concepts are numbered 0..C-1; arrays are NumPy."""

    streams: tuple[str, ...]
    """Stream names, in the store's order."""
    kind: np.ndarray
    """[C] str: each concept's kind, one of :data:`KINDS`."""
    home: np.ndarray
    """[C] int64: an exclusive concept's stream (index into ``streams``), −1 for the others."""
    parent: np.ndarray
    """[C] int64: a child's parent concept, −1 for the others."""
    directions: dict[str, np.ndarray]
    """Stream → [C, d] float32: concept c's true unit direction in that stream; a zero row
    where c is not present."""
    code_indptr: np.ndarray
    """[N + 1] int64: row i's active concepts are ``code_concept[code_indptr[i]:code_indptr[i+1]]``."""
    code_concept: np.ndarray
    """[nnz] int64: the active concepts of each row, ascending within a row."""
    code_value: np.ndarray
    """[nnz] float32: their values (before the non-linearity, the noise and the row's L2 normalisation)."""
    nonlinear: int = -1
    """The stream made mildly non-linear (index into ``streams``), −1 for none."""
    nonlinear_strength: float = 0.0
    """Its strength (docs/formats.md): 0 linear, 1 a full tanh at the signal's scale."""
    noise: float = 0.0
    """Standard deviation of the Gaussian noise added to each coordinate."""

    def __post_init__(self) -> None:
        C, N = len(self.kind), len(self.code_indptr) - 1
        problems = []
        if set(self.directions) != set(self.streams):
            problems.append(f"directions for {sorted(self.directions)} but streams {list(self.streams)}")
        if any(a.shape[0] != C or a.ndim != 2 for a in self.directions.values()):
            problems.append(f"a direction table is not [{C}, d]")
        if self.home.shape != (C,) or self.parent.shape != (C,):
            problems.append(f"home / parent are not [{C}]")
        if not set(self.kind.tolist()) <= set(KINDS):
            problems.append(f"unknown kinds {sorted(set(self.kind.tolist()) - set(KINDS))}")
        if N < 0 or self.code_indptr[0] != 0 or self.code_indptr[-1] != len(self.code_concept) \
                or len(self.code_value) != len(self.code_concept) or np.any(np.diff(self.code_indptr) < 0):
            problems.append("the row codes are not a valid CSR table")
        elif len(self.code_concept) and (self.code_concept.min() < 0 or self.code_concept.max() >= C):
            problems.append("a row code names a concept that does not exist")
        if problems:
            raise SparcError(f"{TRUTH} is not valid ({problems[0]}); make the store again with 'sparc synth'")

    # ------------------------------------------------------------------ questions

    @property
    def n_concepts(self) -> int:
        return len(self.kind)

    @property
    def n_rows(self) -> int:
        return len(self.code_indptr) - 1

    def present(self, stream: str) -> np.ndarray:
        """[C] bool: the concepts present in ``stream`` (a nonzero true direction there)."""
        return np.any(self.directions[stream] != 0, axis=1)

    def in_all(self, streams: list[str] | tuple[str, ...] | None = None) -> np.ndarray:
        """[C] bool: the concepts present in every one of ``streams`` (default: all)."""
        out = np.ones(self.n_concepts, dtype=bool)
        for s in streams or self.streams:
            out &= self.present(s)
        return out

    def active(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), C] bool: which concepts are active on each of ``rows``."""
        return self.codes(rows) > 0

    def codes(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), C] float32: the true codes of ``rows`` (dense)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.n_concepts), dtype=np.float32)
        starts, ends = self.code_indptr[rows], self.code_indptr[rows + 1]
        counts = ends - starts
        r = np.repeat(np.arange(len(rows)), counts)
        pos = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        out[r, self.code_concept[pos]] = self.code_value[pos]
        return out

    # ------------------------------------------------------------------ file

    def save(self, path: str | os.PathLike) -> None:
        """Write the archive to ``path`` (a file name ending in ``.npz``)."""
        arrays = {
            "format": np.array(FORMAT), "version": np.array(VERSION, dtype=np.int64),
            "streams": np.array(self.streams, dtype=str), "kind": self.kind.astype(str),
            "home": self.home.astype(np.int64), "parent": self.parent.astype(np.int64),
            "code_indptr": self.code_indptr.astype(np.int64), "code_concept": self.code_concept.astype(np.int64),
            "code_value": self.code_value.astype(np.float32),
            "nonlinear": np.array(self.nonlinear, dtype=np.int64),
            "nonlinear_strength": np.array(self.nonlinear_strength, dtype=np.float64),
            "noise": np.array(self.noise, dtype=np.float64),
        }
        arrays.update({f"direction_{s}": self.directions[s].astype(np.float32) for s in self.streams})
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PlantedTruth:
        """Read ``path``; a one-line SparcError for a file that is not a valid truth archive."""
        fix = "make the store again with 'sparc synth'"
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {name: z[name] for name in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SparcError(f"cannot read {path} ({reason}); {fix}") from None
        if str(data.get("format", "")) != FORMAT:
            raise SparcError(f"{path} is not a sparc truth file; {fix}")
        if int(data.get("version", -1)) != VERSION:
            raise SparcError(f"{path} has truth format version {int(data.get('version', -1))}, this sparc reads "
                             f"{VERSION}; {fix}")
        try:
            streams = tuple(str(s) for s in data["streams"])
            return cls(streams=streams, kind=data["kind"].astype(str), home=data["home"], parent=data["parent"],
                       directions={s: data[f"direction_{s}"] for s in streams},
                       code_indptr=data["code_indptr"], code_concept=data["code_concept"],
                       code_value=data["code_value"], nonlinear=int(data["nonlinear"]),
                       nonlinear_strength=float(data["nonlinear_strength"]), noise=float(data["noise"]))
        except KeyError as e:
            raise SparcError(f"{path} lacks the array {e.args[0]!r}; {fix}") from None


def load_truth(store_path: str | os.PathLike, n_rows: int | None = None) -> PlantedTruth | None:
    """The planted truth of the store at ``store_path``, or None when it carries none.
    With ``n_rows`` (the store's), a truth covering another number of rows is refused."""
    path = Path(store_path) / TRUTH
    if not path.is_file():
        return None
    truth = PlantedTruth.load(path)
    if n_rows is not None and truth.n_rows != n_rows:
        raise SparcError(f"{path} holds the codes of {truth.n_rows:,} rows but the store has {n_rows:,}; "
                         "a planted store cannot grow: make a new one with 'sparc synth --rows N'")
    return truth
