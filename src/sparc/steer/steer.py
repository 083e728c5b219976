"""Steering: features of some streams → their code → the code edited → the features of
any stream decoded from it (docs/method.md §7.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.model import SPARC, SparseCode
from sparc.steer.edits import Edit, apply_edits


class Steered(NamedTuple):
    """What one steering did."""

    code: SparseCode
    """The code before the edits."""
    edited: SparseCode
    """The code after them."""
    before: dict[str, Tensor]
    """Target stream → its features decoded from the unedited code [B, d_t]."""
    after: dict[str, Tensor]
    """Target stream → its features decoded from the edited code [B, d_t]."""


@torch.no_grad()
def steer(model: SPARC, inputs: Mapping[str, Tensor], edits: list[Edit], targets: list[str] | None = None,
          *, source: str | None = None) -> Steered:
    """Encode ``inputs`` (the streams given, jointly: one code; the model's own selection),
    apply ``edits`` and decode into ``targets`` (default: every stream). ``source``: the
    stream whose code is edited (default: the first given; under global TopK every given
    stream has the same latents)."""
    if not inputs:
        raise SparcError("steering needs the features of at least one stream")
    codes = model.encode(dict(inputs))
    source = source or next(iter(inputs))
    if source not in codes:
        raise SparcError(f"stream {source!r} is not among the streams given ({', '.join(inputs)})")
    targets = list(targets or model.names)
    for t in targets:
        model.stream_index(t)  # an unknown stream is a one-line error
    code = codes[source]
    edited = apply_edits(code, edits)
    before = {t: model.decode(code, t) for t in targets}
    after = {t: model.decode(edited, t) for t in targets}
    return Steered(code, edited, before, after)
