"""Import of the original code's checkpoint (``msae_checkpoint.pth``, docs/method.md §6).

The original keeps one ``nn.Linear`` per stream: ``encoders.<s>.weight`` [L, d_s],
``decoders.<s>.weight`` [d_s, L], ``pre_biases.<s>`` [d_s], ``latent_biases.<s>`` [L]
and ``stats_last_nonzero_<s>`` [L] (steps since the latent last fired, plus one). The
training arguments sit beside it in ``run_config.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.model.config import SPARCConfig
from sparc.model.sparc import SPARC
from sparc.pickles import load_weights_only

_ENC = re.compile(r"^encoders\.(.+)\.weight$")


def read_reference(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """The state dict at ``path`` (a ``.pth`` file or a directory holding one) and the
    ``run_config.json`` beside it ({} when absent)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.pth")) + sorted(path.glob("*.pt"))
        if not found:
            raise SparcError(f"no .pth checkpoint in {path}; pass the msae_checkpoint.pth file")
        path = found[0]
    state = load_weights_only(path, "checkpoint")
    if isinstance(state, Mapping) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, Mapping):
        raise SparcError(f"{path} holds a {type(state).__name__}, not a state dict; pass msae_checkpoint.pth")
    run_config = {}
    cfg_file = path.parent / "run_config.json"
    if cfg_file.exists():
        try:
            run_config = json.loads(cfg_file.read_text())
        except ValueError as e:
            raise SparcError(f"{cfg_file} is not valid JSON ({e}); fix or remove it and pass topk and k") from None
        if not isinstance(run_config, dict):
            raise SparcError(f"{cfg_file} must hold a JSON object of training arguments")
    return dict(state), run_config


def from_reference(
    source: str | Path | Mapping[str, Tensor],
    *,
    topk: str | None = None,
    k: int | None = None,
    auxk: int | None = None,
    batch_size: int | None = None,
    **overrides,
) -> SPARC:
    """Build a :class:`SPARC` whose outputs equal the original model's.

    Parameters
    ----------
    source
        Path to ``msae_checkpoint.pth`` (or its directory), or the state dict itself.
    topk, k, auxk
        Override (or supply, when there is no ``run_config.json``) the training
        arguments; ``topk`` is "global" or "local" (the original's ``topk_type``).
    batch_size
        Converts the original's step counters into sample counters (default: the run's
        batch size, else 256).
    overrides
        Any other :class:`SPARCConfig` field.
    """
    if isinstance(source, Mapping):
        state, run = dict(source), {}
    else:
        state, run = read_reference(source)
    streams: dict[str, int] = {}
    for key, t in state.items():
        m = _ENC.match(key)
        if m:
            streams[m.group(1)] = int(t.shape[1])
    if not streams:
        raise SparcError("no 'encoders.<stream>.weight' tensors found; this is not an original SPARC checkpoint")
    n_latents = int(state[f"encoders.{next(iter(streams))}.weight"].shape[0])
    topk = topk or run.get("topk_type") or run.get("topk")
    k = k or run.get("k")
    if topk is None or k is None:
        raise SparcError("the checkpoint has no run_config.json: pass topk ('global'/'local') and k")
    topk = "local" if "local" in str(topk) else "global"
    if auxk is None:  # the original's default is 64; an explicit null turns AuxK off
        auxk = run.get("auxk", 64) or 0
    batch_size = batch_size or run.get("batch_size") or 256
    cfg = SPARCConfig(n_latents=n_latents, k=int(k), topk=topk, auxk=int(auxk), **overrides)
    model = SPARC(streams, cfg)
    with torch.no_grad():
        for i, (s, col) in enumerate(zip(model.names, model.cols)):
            d = streams[s]
            expected = {
                f"encoders.{s}.weight": (n_latents, d),
                f"decoders.{s}.weight": (d, n_latents),
                f"pre_biases.{s}": (d,),
                f"latent_biases.{s}": (n_latents,),
            }
            for key, shape in expected.items():
                if key not in state:
                    raise SparcError(f"checkpoint lacks {key}; it is incomplete")
                if tuple(state[key].shape) != shape:
                    raise SparcError(f"checkpoint tensor {key} has shape {tuple(state[key].shape)}, expected {shape}")
            model.W_enc[:, col] = state[f"encoders.{s}.weight"]
            model.W_dec[:, col] = state[f"decoders.{s}.weight"].t()
            model.b_pre[col] = state[f"pre_biases.{s}"]
            model.b_lat[i] = state[f"latent_biases.{s}"]
            steps = state.get(f"stats_last_nonzero_{s}")
            if steps is not None:
                # steps since last fire + 1  →  samples since last fire.
                model.samples_since_fired[i] = (steps.long() - 1).clamp_min(0) * batch_size
    return model


def to_reference(model: SPARC, *, batch_size: int = 256) -> dict[str, Tensor]:
    """The original code's state dict for ``model`` (the inverse of :func:`from_reference`)."""
    state: dict[str, Tensor] = {}
    for i, (s, col) in enumerate(zip(model.names, model.cols)):
        state[f"encoders.{s}.weight"] = model.W_enc[:, col].detach().clone()
        state[f"decoders.{s}.weight"] = model.W_dec[:, col].detach().t().clone()
        state[f"pre_biases.{s}"] = model.b_pre[col].detach().clone()
        state[f"latent_biases.{s}"] = model.b_lat[i].detach().clone()
        state[f"stats_last_nonzero_{s}"] = model.samples_since_fired[i] // batch_size + 1
    return state
