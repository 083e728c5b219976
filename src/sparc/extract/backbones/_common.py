"""Helpers shared by the backbone families: optional imports, weight files and ids, error text.

Options reach a family already typed and checked by its options dataclass (see
:mod:`sparc.options`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from sparc.errors import SparcError
from sparc.extract.files import existing_file


def one_line(text: object, limit: int = 300) -> str:
    """``text`` squeezed onto one line (for SparcError messages), cut at ``limit``."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def require(module: str, *, extra: str, pip: str | None = None) -> ModuleType:
    """Import ``module`` or raise a SparcError saying which extra to install.

    A package that is installed but fails to import (e.g. torchvision built for another
    torch, which open_clip and timm import) is reported with the underlying error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or module).split(".")[0]
        hint = f"pip install 'sparc-sae[{extra}]'" + (f" (or: pip install {pip})" if pip else "")
        if missing == module.split(".")[0]:
            raise SparcError(f"backbone needs the Python package {module!r}, which is not installed; {hint}") from None
        if missing == "torchvision":
            hint = f"install the torchvision build that matches torch {torch.__version__} (same release pairing and CPU/CUDA variant)"
        raise SparcError(f"{module} is installed but needs {missing!r}, which is not installed; {hint}") from None
    except Exception as e:  # noqa: BLE001 - installed but broken (ABI mismatch, torchvision operators, ...)
        msg = one_line(f"{type(e).__name__}: {e}")
        hint = ""
        if "torchvision" in msg:
            hint = (
                f"; install a torchvision build that matches torch {torch.__version__} "
                "(same version pairing and CPU/CUDA variant)"
            )
        raise SparcError(f"{module} is installed but cannot be imported ({msg}){hint}") from None


def require_attr(module: str, name: str, *, extra: str) -> Any:
    """``module.name`` (e.g. ``transformers.CLIPModel``, imported lazily by transformers),
    with a failure to import it reported as a SparcError."""
    mod = require(module, extra=extra)
    try:
        return getattr(mod, name)
    except AttributeError:
        raise SparcError(f"{module} {getattr(mod, '__version__', '')} has no {name}; upgrade it") from None
    except Exception as e:  # noqa: BLE001 - e.g. transformers' lazy import tripping over torchvision
        msg = one_line(f"{type(e).__name__}: {e}", 200)
        hint = ""
        if importlib.util.find_spec("torchvision") is not None:
            hint = (
                f"; a torchvision that does not match torch {torch.__version__} breaks {module}'s imports: "
                "uninstall torchvision or install the matching build"
            )
        raise SparcError(f"cannot import {module}.{name} ({msg}){hint}") from None


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) for the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def path_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies local weights: their content digest (and the file or folder name).

    The absolute path is left out on purpose, so moving weights does not invalidate
    cached features. For a directory (a Hugging Face / sentence-transformers model
    folder) the digest covers every file's relative name and content.
    """
    p = Path(path).expanduser().resolve()
    if p.is_file():
        return {"name": p.name, "sha256": file_sha256(p)}
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
            h.update(str(f.relative_to(p)).encode() + b"\0" + file_sha256(f).encode() + b"\n")
        return {"name": p.name, "sha256": h.hexdigest()}
    raise SparcError(f"weights path {str(p)!r} does not exist")


def weights_file(path: str | os.PathLike[str] | None, what: str) -> str | None:
    """A local weights option: the file's absolute path as text (None when not given), or a
    SparcError ``<what> not found: '<path>'``."""
    return None if path is None else str(existing_file(path, what).resolve())


def is_local_path(name: str) -> bool:
    """Whether a model name refers to an existing local file or directory."""
    return Path(name).expanduser().exists()


def package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def prepare_model(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Frozen inference copy: eval mode, no gradients, on ``device`` in ``dtype``."""
    model.eval()
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype)


def hf_hub_hint(repo: str, alternative: str) -> str:
    """How to make a Hugging Face Hub repo available offline (one line)."""
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"with internet, download it into the Hugging Face cache (`hf download {repo}`; cache: HF_HOME, now "
        f"{home}), {alternative}"
    )


def model_label(name: str) -> str:
    """A model name for fingerprints: the folder/file name of a local path, else the name."""
    return Path(name).expanduser().name if is_local_path(name) else name
