"""A model folder: ``config.json`` (the streams, in order, and the model's settings) and
``model.safetensors`` (the weights); docs/formats.md. :meth:`sparc.model.SPARC.save` and
:meth:`~sparc.model.SPARC.load` go through here; a run directory is resolved to its
model folder by :mod:`sparc.train.rundir`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sparc.atomic import atomic_path, write_json
from sparc.errors import SparcError
from sparc.jsonio import from_json
from sparc.model.config import SPARCConfig

if TYPE_CHECKING:
    import torch

    from sparc.model.sparc import SPARC

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
"""config.json versions: 1 kept the streams as a name → dim object (order = key order);
2 keeps them as a list with each stream's column range."""


@dataclass(frozen=True)
class StreamEntry:
    """One stream of a config.json (version 2), in the model's order."""

    name: str
    dim: int
    columns: tuple[int, int]
    """The stream's columns of the weights, [start, stop)."""


def config_dict(model: SPARC) -> dict:
    """What ``config.json`` holds. The streams are a list, so their order (which fixes the
    weights' column ranges) never depends on how a JSON tool orders keys."""
    return {
        "format": "sparc-model",
        "version": FORMAT_VERSION,
        "streams": [{"name": s, "dim": d, "columns": [c.start, c.stop]}
                    for (s, d), c in zip(model.streams.items(), model.cols)],
        "config": model.cfg.to_dict(),
        "layout": {
            "W_enc": "[n_latents, sum(dims)]; stream s owns the columns 'streams[s].columns'",
            "W_dec": "[n_latents, sum(dims)]; unit-norm rows within each stream's columns",
            "b_pre": "[sum(dims)]",
            "b_lat": "[n_streams, n_latents]",
            "samples_since_fired": "[n_streams, n_latents] int64",
        },
    }


def save(model: SPARC, path: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into directory ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(path / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "sparc-model"})
    write_json(path / CONFIG_FILE, config_dict(model))
    return path


def check_folder(path: str | Path) -> Path:
    """``path`` if it holds a model's two files, else a one-line error (no PyTorch needed:
    a wrong path is said at once)."""
    path = Path(path)
    if not (path / CONFIG_FILE).exists() or not (path / WEIGHTS_FILE).exists():
        raise SparcError(
            f"{path} holds no sparc model (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "pass a run directory written by 'sparc train' or 'sparc import-checkpoint' "
            "(a run still training: sparc.train.rundir.load_model reads its checkpoint)"
        )
    return path


def load(cls: type[SPARC], path: str | Path, device: str | torch.device = "cpu") -> SPARC:
    """The model saved in folder ``path`` (see :meth:`sparc.model.SPARC.load`)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = check_folder(path)
    cfg_file, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    try:
        meta = json.loads(cfg_file.read_text())
        streams = streams_of_config(meta, what=f"{cfg_file}: streams")
        cfg = SPARCConfig.from_dict(meta["config"], what=f"{cfg_file}: config")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SparcError(f"{cfg_file} is not a valid sparc config ({e}); re-save the model") from None
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise SparcError(f"{weights} is truncated or corrupt ({e}); restore it from a checkpoint or retrain") from None
    dtype = state.get("W_enc", torch.empty(0)).dtype
    # The config's sizes are checked against the weights' shapes on the meta device first,
    # so an untrusted config.json cannot make sparc allocate what the weights do not hold.
    cls(streams, cfg, device="meta", dtype=dtype).check_state(state, source=str(weights))
    model = cls(streams, cfg, device=device, dtype=dtype)
    model.load_state_dict_checked(state, source=str(weights))
    return model


def streams_of_config(meta: dict, *, what: str = "config.json: streams") -> dict[str, int]:
    """Stream name → dim, in the model's order, from a config.json of any version."""
    version, streams = meta.get("version"), meta["streams"]
    if version == 1:
        # Order = JSON key order: right for files as sparc wrote them.
        return dict(from_json(dict[str, int], streams, what=what))
    if version != FORMAT_VERSION:
        raise ValueError(f"version {version!r} is not one this sparc reads (1, {FORMAT_VERSION})")
    entries = from_json(tuple[StreamEntry, ...], streams, what=what)
    if not entries:
        raise TypeError("'streams' must be a non-empty list")
    out: dict[str, int] = {}
    offset = 0
    for entry in entries:
        if entry.name in out or entry.dim < 1:
            raise TypeError(f"stream entry {entry.name!r} needs a new name and a positive dim")
        if list(entry.columns) != [offset, offset + entry.dim]:
            raise ValueError(f"stream {entry.name!r} claims columns {list(entry.columns)}, but its place in the "
                             f"list gives [{offset}, {offset + entry.dim}]")
        out[entry.name] = entry.dim
        offset += entry.dim
    return out
