"""Atomic writes: a file or directory appears complete or not at all.

Everything sparc writes goes to a temporary sibling first and is moved into place
with :func:`os.replace`, so an interrupted command never leaves a half-written
checkpoint, store or report behind. Replacing a directory takes two renames (the old
one aside to ``.NAME.old``, the new one in): a process killed between them leaves the
old one there, which :func:`recover_swap` puts back and readers use meanwhile
(:func:`current_dir`). A failed write (full disk, file-size limit, read-only folder)
raises a one-line :class:`SparcError` and leaves what was at the path untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparc.errors import SparcError

WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
"""Errors that mean the output could not be written: no space, file too large, quota
exceeded, read-only file system."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    On an exception the temporary file or directory is removed and ``path`` is left
    untouched. An existing directory at ``path`` is replaced as a whole.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise write_error(path, e) from None
    target = tmp if is_dir else tmp / path.name
    try:
        try:
            yield target
        except Exception as e:
            if is_write_failure(e):
                raise write_error(path, e) from None
            raise
        if is_dir:
            recover_swap(path)
        if is_dir and path.is_dir():
            # os.replace cannot replace a non-empty directory: swap it out first.
            old = old_of(path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_write_failure(e: BaseException) -> bool:
    """Whether ``e`` says that an output could not be written (an OSError reading some
    input stays itself). torch.save and safetensors report such failures in their own
    exception types."""
    if isinstance(e, OSError):
        return e.errno in WRITE_ERRNOS
    text = str(e)
    return ("inline_container" in text or "write failed" in text
            or any(f"os error {n})" in text for n in WRITE_ERRNOS))


def write_error(path: Path, e: BaseException) -> SparcError:
    """A one-line error for a failed write of ``path``."""
    reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:200]
    return SparcError(f"could not write {path} ({reason}); free disk space or raise the file-size limit, "
                      "or choose another output; what was there before is intact")


def old_of(path: Path) -> Path:
    """Where a directory swap keeps the previous ``path`` between its two renames."""
    return path.with_name(f".{path.name}.old")


def recover_swap(path: str | os.PathLike) -> None:
    """Undo a directory swap cut between its renames: put ``.NAME.old`` back at ``path``
    when ``path`` is missing. Only a writer holding the folder's lock may call it."""
    path = Path(path)
    old = old_of(path)
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def current_dir(path: str | os.PathLike) -> Path:
    """``path``, or its previous version while a swap is cut between its renames (for
    readers, which must not move anything)."""
    path = Path(path)
    if not path.exists() and old_of(path).is_dir():
        return old_of(path)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
