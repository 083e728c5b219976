"""Weights from the Hugging Face Hub, or a local folder of a Hub model.

The options, loading and weights id that ``dinov2-hf``, ``hf-clip`` and
``sentence-transformers`` (and so ``minilm``) share. :class:`CacheDir` alone is also the
``cache_dir`` option of ``dinov2-timm`` and ``open-clip``, whose libraries download their
weights through the Hub too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sparc.errors import SparcError
from sparc.extract.backbones._common import hf_hub_hint, is_local_path, one_line, path_identity

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class CacheDir:
    """The download-cache option of the families whose weights come through the Hub."""

    cache_dir: Path | None = None
    """Download cache of the weights (none: the Hugging Face cache, HF_HOME)."""

    @property
    def cache_folder(self) -> str | None:
        """``cache_dir`` as text, as the loading libraries take it."""
        return os.fspath(self.cache_dir) if self.cache_dir is not None else None


@dataclass(frozen=True, kw_only=True)
class HubOptions(CacheDir):
    """Where a Hub model's files come from (each family adds its own ``model``)."""

    revision: str | None = None
    """Hub revision (branch, tag or commit)."""

    offline: bool = False
    """Use only the local Hugging Face cache."""


def hub_args(name: str, options: HubOptions) -> tuple[str, dict[str, Any]]:
    """What ``from_pretrained`` takes for ``name``: the folder (``~`` expanded) or Hub id,
    and ``revision``, ``cache_dir`` and ``local_files_only`` (always true for a folder)."""
    local = is_local_path(name)
    return (str(Path(name).expanduser()) if local else name), {
        "revision": options.revision,
        "cache_dir": options.cache_folder,
        "local_files_only": options.offline or local,
    }


def load_from_hub(load: Callable[..., T], name: str, options: HubOptions, *, what: str) -> T:
    """``load(source, revision=..., cache_dir=..., local_files_only=...)`` (see :func:`hub_args`),
    with a folder that does not load, weights that are not available and a bad model
    reported as one-line SparcErrors starting with ``what``."""
    source, kwargs = hub_args(name, options)
    try:
        return load(source, **kwargs)
    except OSError as e:
        why = one_line(f"{type(e).__name__}: {e}", 160)
        if is_local_path(name):
            raise SparcError(f"{what}: could not load the model folder {name} ({why})") from None
        raise SparcError(
            f"{what}: {name} is not available ({why}); "
            + hf_hub_hint(name, "or download it into a folder and pass model=FOLDER")
        ) from None
    except ValueError as e:
        raise SparcError(f"{what}: could not load {name} ({one_line(e, 200)})") from None


def hub_weights_id(name: str, options: HubOptions) -> Any:
    """What identifies the weights: a folder's content digest, or the Hub id and revision."""
    if is_local_path(name):
        return path_identity(name)
    return {"hf": name, "revision": options.revision}
