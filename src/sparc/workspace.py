"""Folders sparc writes: one writer at a time, nothing of the user's deleted, and
recovery from any interruption (docs/formats.md, "Writing safely").

- :func:`exclusive_lock` — an OS file lock (``flock``) on ``.<name>.lock`` beside the
  folder, held for the whole command. The OS releases it when the process dies, so a
  killed writer never leaves a stale lock; a second writer gets a one-line error naming
  the process that holds it.
- :func:`mark` / :func:`remove_owned` — the command that makes an output folder writes
  sparc's marker into it (``.sparc.json``: format, kind, command), and ``--overwrite``
  (or any replacement) deletes a folder only when it carries the marker of its kind and
  nothing but entries sparc writes there. Never by file names: a folder that merely
  holds a ``config.json`` or ``report.json`` is not sparc's. Anything else is refused,
  with the reason named.
- :func:`check_not_input` — an output may not be, contain or lie inside an input of
  the same command.
- :func:`clean_stale` — temporary files and folders (``.NAME.*.tmp``) that a killed
  writer left are removed by the next writer, which holds the lock, so their owner is
  gone; a directory swap cut between its two renames is completed
  (:func:`sparc.atomic.recover_swap`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sparc.atomic import recover_swap, write_json
from sparc.errors import SparcError

MARKER = ".sparc.json"
"""sparc's marker in each output folder it makes (docs/formats.md, "Writing safely")."""
MARKER_FORMAT = "sparc-folder"


@dataclass(frozen=True)
class FolderKind:
    """What sparc writes in one kind of output folder."""

    name: str
    """What the folder is, for messages ("run directory", ...)."""
    kind: str
    """The kind its marker names."""
    entries: tuple[str, ...]
    """Glob patterns of every entry sparc writes there (temporaries and marker included)."""

    @property
    def a(self) -> str:
        """The name with its article, for messages."""
        return f"{'an' if self.name[0] in 'aeiou' else 'a'} {self.name}"


TEMPORARY = (".*.tmp", ".*.old", ".*.lock", MARKER)
"""What sparc may leave in any folder it writes, besides the folder's own entries."""
# The run directory's kinds are sparc.train.rundir's (RUN, STARTED_RUN), made from the
# layout it owns; this module stays free of the model and training imports.
STORE = FolderKind("feature store", "store",
                   ("manifest.json", "rows.jsonl", "splits.npy", "features", "parts", "truth.npz",
                    *TEMPORARY))
EVAL = FolderKind("evaluation", "evaluation", ("eval.json", "eval.md", "plots", *TEMPORARY))
EXTRACTION_WORK = FolderKind("extraction's work folder", "extraction-work", ("*",))
LOCALISATION = FolderKind("localisation", "localisation",
                          ("localisation.md", "localisation.json", "examples.png", *TEMPORARY))
STATS = FolderKind("statistics folder", "stats", ("stats.json", "stats.safetensors", "names.json", *TEMPORARY))
REPORT = FolderKind("report", "report", ("index.html", "report.json", "data", "assets", "thumbs", "heatmaps",
                                         "plots", *TEMPORARY))


# ---------------------------------------------------------------------------- locks


def lock_file(target: Path) -> Path:
    """Where the lock of ``target`` lives: beside it, so it survives the folder's
    replacement and never sits among the files it protects."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold the writer's lock of ``target`` for the ``with`` block.

    Raises a one-line :class:`SparcError` naming the holder when another process has
    it. The lock file is removed on release; a process that opened it just before then
    sees, once it holds the lock, that the path no longer names its file, and starts over.
    """
    path = lock_file(Path(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise SparcError(f"{target} is being written by {holder}; wait for it to finish or stop it "
                             f"(one writer at a time)") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({command})\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def writing(target: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold ``target``'s writer lock and first remove what a killed writer of it left
    (:func:`clean_stale`): how every command starts writing an output."""
    with exclusive_lock(target, command):
        clean_stale(target)
        yield


# ---------------------------------------------------------------------------- ownership


def mark(folder: str | os.PathLike, kind: FolderKind, command: str) -> None:
    """Write sparc's marker of ``kind`` into ``folder``, which ``command`` is making."""
    write_json(Path(folder) / MARKER, {"format": MARKER_FORMAT, "version": 1, "kind": kind.kind, "command": command})


def marked_as(path: Path) -> str | None:
    """The kind named by ``path``'s marker, or None when it has no valid marker."""
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or not isinstance(data.get("kind"), str):
        return None
    return data["kind"]


def foreign_entry(path: Path, kind: FolderKind) -> str | None:
    """Why ``path`` is not a folder of ``kind`` that sparc made — no marker, another
    kind's marker, or the first entry sparc does not write there — or None when sparc
    owns all of it."""
    marked = marked_as(path)
    if marked is None:
        return f"no sparc marker {MARKER}; sparc replaces only the folders it marked when it made them"
    if marked != kind.kind:
        return f"its marker says {marked}"
    for name in sorted(p.name for p in path.iterdir()):
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in kind.entries):
            return repr(name)
    return None


def check_replaceable(path: str | os.PathLike, kind: FolderKind, hint: str = "choose another output path") -> None:
    """Refuse, in one line ending with ``hint``, to replace ``path`` unless it is absent,
    an empty folder, or a ``kind`` folder that sparc made and nothing else wrote into."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise SparcError(f"{path} exists and is not {kind.a}; refusing to replace it: {hint}")
    if not any(path.iterdir()):
        return
    foreign = foreign_entry(path, kind)
    if foreign is not None:
        raise SparcError(f"{path} is not {kind.a} written by sparc ({foreign}); refusing to replace it: {hint}")


def remove_owned(path: str | os.PathLike, kind: FolderKind) -> None:
    """Delete ``path`` if sparc made it as a ``kind`` folder; refuse anything else."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise SparcError(f"{path} is not {kind.a}; refusing to replace it: choose another output path")
    check_replaceable(path, kind)
    shutil.rmtree(path)


def inside(base: str | os.PathLike, rel: str | os.PathLike, what: str) -> Path:
    """``base / rel``, when it stays inside ``base`` with every symlink resolved; else a
    one-line refusal naming ``what`` (the input that pointed there). Paths read from a
    run, store or report folder pass through here: a folder that came from elsewhere
    must not make sparc read, copy or publish a file outside it."""
    base = Path(base)
    path = base / rel
    if Path(rel).is_absolute() or not path.resolve().is_relative_to(base.resolve()):
        raise SparcError(f"{what} points to {str(rel)!r}, outside {base}; refusing it: an input folder may only "
                         "point inside itself")
    return path


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], flag: str = "--out") -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs``."""
    o = Path(out).resolve()
    for i in inputs:
        p = Path(i).resolve()
        if o == p or p.is_relative_to(o) or o.is_relative_to(p):
            raise SparcError(f"{flag} {out} overlaps the input {i}; write the output somewhere else")


# ---------------------------------------------------------------------------- temporaries


def clean_stale(folder: str | os.PathLike, *, beside: bool = True) -> None:
    """Remove what killed writers of ``folder`` left: temporaries inside it and (with
    ``beside``) its own ``.NAME.*.tmp`` siblings; complete cut directory swaps.

    Call only while holding ``folder``'s lock: then no live process owns them.
    """
    folder = Path(folder)
    if beside and folder.parent.is_dir():
        for p in folder.parent.glob(f".{folder.name}.*.tmp"):
            _remove(p)
    recover_swap(folder)
    # Inside a folder only when sparc marked it: a user's own ".x.old" or ".y.tmp" stay.
    if folder.is_dir() and not folder.is_symlink() and marked_as(folder) is not None:
        for p in list(folder.iterdir()):
            if p.name.startswith(".") and p.name.endswith(".old") and p.is_dir():
                base = p.with_name(p.name[1:-4])
                recover_swap(base)
                if base.exists() and p.exists():
                    _remove(p)
        for p in folder.glob(".*.tmp"):
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
