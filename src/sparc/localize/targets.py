"""The scalar a heatmap differentiates, from the SPARC codes (docs/method.md §5.7).

A :class:`Query` says what to look for in an image stream:

- **latents** — the sum of the image stream's values at the given latents, the image
  encoded alone (``sparc heatmap --latent``);
- **a text** (its features in a text stream) — the prompt of the localisation protocols:

  - ``sum``: the image stream's values summed over the text's active latents;
  - ``cross``: the dot product of the text's code and the image stream's code;
  - ``dense`` (a diagnostic): the image stream's ReLU'd encoder logits summed over the
    text's active latents (the text encoded alone), BEFORE any TopK
    (:meth:`SPARC.latent_logits`): what the latents read from the image whether or not
    the image's own TopK keeps them;
  - ``clip_sim`` (the original's baseline, no SPARC): ``scale · cos(image feature, text
    feature)`` for an image and a text stream that are the two towers of one CLIP model.

  Codes of a text query come from the joint encoding of the image and the text
  (``encoding="joint"``, what the original does: under global TopK both share the
  latents chosen from their summed logits) or from each encoded alone
  (``"independent"``). For a local-TopK model the two are the same.

Codes come from :meth:`SPARC.encode`: its values are differentiable with respect to the
inputs, and the latents are chosen without gradient, as in the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.model import SPARC

Target = Literal["sum", "cross", "dense", "clip_sim"]
Encoding = Literal["joint", "independent"]


@dataclass(frozen=True)
class Query:
    """What one map looks for (see the module docstring)."""

    latents: tuple[int, ...] = ()
    """Latents of the image stream (a latent query); with a text and the ``sum`` target,
    the latents summed instead of the text's active ones (the ``class`` variant)."""
    text_stream: str | None = None
    """The text stream of a text query."""
    text: Tensor | None = None
    """The text's features in ``text_stream`` [d], L2-normalised."""
    target: Target = "sum"
    encoding: Encoding = "joint"
    scale: float = 1.0
    """``clip_sim``: the CLIP model's logit scale."""

    def __post_init__(self) -> None:
        if self.text is None and not self.latents:
            raise SparcError("a query needs latents or a text")
        if self.target not in ("sum", "cross", "dense", "clip_sim"):
            raise SparcError(f"target must be sum, cross, dense or clip_sim, got {self.target!r}")
        if self.target == "clip_sim" and self.text is None:
            raise SparcError("the clip_sim target needs a text")
        if self.encoding not in ("joint", "independent"):
            raise SparcError(f"encoding must be joint or independent, got {self.encoding!r}")


def check_latents(model: SPARC, latents: Sequence[int]) -> tuple[int, ...]:
    """The latent ids, or a one-line error naming the range."""
    out = tuple(int(x) for x in latents)
    bad = [x for x in out if not 0 <= x < model.n_latents]
    if bad:
        raise SparcError(f"latent {bad[0]} does not exist; this model has {model.n_latents} latents "
                         f"(0 to {model.n_latents - 1})")
    return out


def target_values(model: SPARC, stream: str, x: Tensor, queries: Sequence[Query]) -> Tensor:
    """[P] target of row ``p`` of the image features ``x`` [P, d] (L2-normalised,
    differentiable) for ``queries[p]``."""
    if len(queries) != x.shape[0]:
        raise ValueError("one query per row")
    out = x.new_zeros(x.shape[0])
    groups: dict[tuple, list[int]] = {}
    for p, q in enumerate(queries):
        key = ("latents",) if q.text is None else ("text", q.text_stream, q.target, q.encoding, bool(q.latents))
        groups.setdefault(key, []).append(p)
    for key, rows in groups.items():
        idx = torch.tensor(rows, device=x.device)
        xs = x[idx]
        if key[0] == "latents":
            code = model.encode({stream: xs})[stream]
            want = torch.zeros(len(rows), model.n_latents, dtype=torch.bool, device=x.device)
            for j, p in enumerate(rows):
                want[j, list(queries[p].latents)] = True
            vals = code.values * want.gather(1, code.indices)
        else:
            _, ts, target, encoding, given = key
            t = torch.stack([queries[p].text for p in rows]).to(xs.device, xs.dtype)
            if target == "clip_sim":
                scale = torch.tensor([queries[p].scale for p in rows], dtype=xs.dtype, device=xs.device)
                out = out.index_put((idx,), scale * (xs * t).sum(dim=1))
                continue
            if target == "dense":
                with torch.no_grad():
                    txt = model.encode({ts: t}, alone=True)[ts]
                h = model.latent_logits(stream, xs, txt.indices)
                out = out.index_put((idx,), (torch.relu(h) * (txt.values > 0).to(h.dtype)).sum(dim=1))
                continue
            if encoding == "joint":
                codes = model.encode({stream: xs, ts: t})
                img, txt = codes[stream], codes[ts]
            else:
                img = model.encode({stream: xs}, alone=True)[stream]
                with torch.no_grad():
                    txt = model.encode({ts: t}, alone=True)[ts]
            if given:  # the sum over given latents, codes from the joint / independent encoding
                dense_txt = torch.zeros(len(rows), model.n_latents, dtype=img.values.dtype, device=x.device)
                for j, p in enumerate(rows):
                    dense_txt[j, list(queries[p].latents)] = 1.0
            else:
                dense_txt = txt.dense().detach()
            weight = dense_txt.gather(1, img.indices)
            vals = img.values * (weight if target == "cross" else (weight > 0).to(img.values.dtype))
        out = out.index_put((idx,), vals.sum(dim=1))
    return out
