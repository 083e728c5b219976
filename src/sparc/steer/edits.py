"""Edits of sparse codes: set, add, scale or zero chosen latents.

An edit names latents and what to do with their values in every row of a code:

- ``set``   — the value becomes ``value`` (the latent fires at that strength);
- ``add``   — ``value`` is added (a concept pushed in; its values may differ per latent,
  e.g. the code of a caption);
- ``scale`` — the value is multiplied by ``value`` (0 ablates, 2 doubles);
- ``zero``  — the value becomes 0 (ablation).

Values never go below 0: codes are ReLU outputs, and a decoder direction taken with a
negative weight is no concept of the dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sparc.errors import SparcError
from sparc.model import SparseCode

Op = Literal["set", "add", "scale", "zero"]
OPS: tuple[Op, ...] = ("set", "add", "scale", "zero")


@dataclass(frozen=True)
class Edit:
    """One edit: ``op`` on ``latents``, with one value for all or one per latent."""

    op: Op
    latents: tuple[int, ...]
    values: tuple[float, ...] = (0.0,)
    """One value for every latent, or one per latent (``add`` of a caption's code)."""

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise SparcError(f"an edit is one of {', '.join(OPS)}, got {self.op!r}")
        if not self.latents:
            raise SparcError(f"a {self.op} edit needs at least one latent")
        if len(self.values) not in (1, len(self.latents)):
            raise SparcError(f"a {self.op} edit has {len(self.latents)} latents and {len(self.values)} values; "
                             "give one value or one per latent")

    def value_of(self, i: int) -> float:
        return self.values[0] if len(self.values) == 1 else self.values[i]


def parse_edit(op: Op, text: str) -> Edit:
    """``"12,40=0.5"`` (latents, then a value) or ``"12,40"`` (zero) → an :class:`Edit`;
    one-line errors for anything else."""
    latents_text, sep, value_text = text.partition("=")
    try:
        latents = tuple(int(x) for x in latents_text.split(",") if x.strip())
    except ValueError:
        latents = ()
    if not latents:
        raise SparcError(f"--{op} {text!r}: give latent ids, e.g. --{op} 12,40" + ("" if op == "zero" else "=0.5"))
    if op == "zero":
        if sep:
            raise SparcError(f"--zero {text!r}: zero takes no value (use --set L=V or --scale L=F)")
        return Edit("zero", latents)
    try:
        value = float(value_text)
    except ValueError:
        raise SparcError(f"--{op} {text!r}: give a value after '=', e.g. --{op} {latents_text}=0.5") from None
    return Edit(op, latents, (value,))


def check_latents(edits: list[Edit], n_latents: int) -> None:
    for e in edits:
        bad = [lat for lat in e.latents if not 0 <= lat < n_latents]
        if bad:
            raise SparcError(f"latent {bad[0]} does not exist; this model has {n_latents} latents (0 to {n_latents - 1})")


def apply_edits(code: SparseCode, edits: list[Edit]) -> SparseCode:
    """``code`` with ``edits`` applied in order, in every row; the result's rows hold the
    latents with a value above 0 (padded with value-0 entries to the widest row)."""
    check_latents(edits, code.n_latents)
    z = code.dense().clone()
    for e in edits:
        idx = torch.tensor(e.latents, dtype=torch.long, device=z.device)
        v = torch.tensor([e.value_of(i) for i in range(len(e.latents))], dtype=z.dtype, device=z.device)
        if e.op == "set":
            z[:, idx] = v
        elif e.op == "add":
            z[:, idx] += v
        elif e.op == "scale":
            z[:, idx] *= v
        else:
            z[:, idx] = 0
    z.clamp_(min=0)
    width = max(1, int((z > 0).sum(1).max())) if z.numel() else 1
    values, indices = z.topk(width, dim=1)
    return SparseCode(indices, values, code.n_latents)
