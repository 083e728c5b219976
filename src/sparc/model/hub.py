"""A model folder on the Hugging Face Hub (``huggingface_hub``, extra ``sparc-sae[hub]``).

A model repository holds what a model folder holds — ``config.json`` and
``model.safetensors`` (docs/formats.md) — and a model card, ``README.md``.

- :func:`from_pretrained` — a local model folder, or ``org/name`` downloaded into (or,
  with ``HF_HUB_OFFLINE=1``, read from) the Hub's cache;
- :func:`save_pretrained` — a folder ready to upload.

Publishing a run (``sparc push``, its card written from the run's settings and
evaluations) is :mod:`sparc.publish`, above training: this module knows models only.

Every failure — no network, a repository that does not exist or is private, a missing
file, no token — is one :class:`~sparc.errors.SparcError` line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sparc.errors import SparcError
from sparc.model.files import CONFIG_FILE, WEIGHTS_FILE

if TYPE_CHECKING:
    from types import ModuleType

    from sparc.model import SPARC

FILES = (CONFIG_FILE, WEIGHTS_FILE)
CARD = "README.md"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def hub_library() -> ModuleType:
    """The ``huggingface_hub`` package, or a one-line error saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise SparcError("sharing models needs the huggingface_hub package: pip install 'sparc-sae[hub]'") from None
    return huggingface_hub


def one_line(e: BaseException) -> str:
    """An exception's message on one line, cut at 300 characters (its type when empty)."""
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(e).__name__)


def from_pretrained(name: str | Path, *, revision: str | None = None, device: str = "cpu",
                    cache_dir: str | Path | None = None, token: str | bool | None = None) -> SPARC:
    """A model from a local model folder (a finished run is one), or from the Hub
    repository ``org/name`` at ``revision`` (default: its main branch), through the
    Hub's cache."""
    from sparc.model import SPARC

    path = Path(name)
    if path.is_dir():
        return SPARC.load(path, device=device)
    text = str(name)
    if not REPO_ID.fullmatch(text):
        raise SparcError(f"{text} is neither a folder nor a Hub repository name (org/name)")
    return SPARC.load(download(text, revision=revision, cache_dir=cache_dir, token=token), device=device)


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             token: str | bool | None = None) -> Path:
    """The local folder of ``repo_id``'s model files, downloaded when not cached."""
    hub = hub_library()
    from huggingface_hub import errors

    try:
        return Path(hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                          allow_patterns=list(FILES)))
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        raise SparcError(f"{repo_id} is not in the Hugging Face cache and the Hub cannot be reached "
                         f"({one_line(e)}); connect, or unset HF_HUB_OFFLINE, or load a local folder") from None
    except errors.RepositoryNotFoundError:
        raise SparcError(f"no Hub repository {repo_id} (or it is private: log in with `hf auth login`)") from None
    except errors.RevisionNotFoundError:
        raise SparcError(f"{repo_id} has no revision {revision!r}") from None
    except Exception as e:  # the network's failures (httpx, OS) have no common base
        raise SparcError(f"could not download {repo_id} ({one_line(e)})") from None


def save_pretrained(model: SPARC, folder: str | Path, *, card: str | None = None) -> Path:
    """Write ``model`` (config.json, model.safetensors) and, if given, its model card."""
    from sparc.atomic import write_text

    folder = Path(folder)
    model.save(folder)
    if card is not None:
        write_text(folder / CARD, card)
    return folder
