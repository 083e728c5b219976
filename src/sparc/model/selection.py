"""How a method chooses each sample's active latents: a selection rule, registered by
name (``SPARCConfig.topk``).

A rule takes the encoder logits of the streams given, ``[S', B, L]`` (S' streams, B
samples), and returns the chosen latents ``[S', B, k]``: k per stream and sample. The
model does everything else (the values at those latents, the ReLU, the decodes and
losses), so a new rule is a new class here or in its own module (listed in
:data:`SELECTION_RULES`), plus its tests. Two attributes tell the model what the rule
promises, for speed only:

- ``shares_latents`` — every stream of a sample gets the same latents: each selected
  decoder row is then read once for all of them (docs/method.md §4.2);
- ``certifiable`` — the choice is the model's global TopK, which the certified bf16
  pass may make when every stream is present (docs/method.md §4.3).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparc.errors import SparcError
from sparc.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor


class SelectionRule:
    """Chooses k latents per stream and sample from the logits ``[S', B, L]``."""

    @dataclass(frozen=True)
    class Options:
        """A rule's settings (none for the TopK rules)."""

    name: str
    """The name it is registered under (set by the registry)."""
    shares_latents = False
    certifiable = False

    def choose(self, logits_sbl: Tensor, k: int) -> Tensor:
        """[S', B, k] int64: the latents chosen (no gradient flows through the choice)."""
        raise NotImplementedError


SELECTION_RULES: Registry[SelectionRule] = Registry("selection rule", ("sparc.model.selection",), name_attribute="name")


@SELECTION_RULES.register("global")
class GlobalTopK(SelectionRule):
    """SPARC's rule: one set of k latents per sample, the top k of the logits summed
    over the streams given (docs/method.md §1.3)."""

    shares_latents = True
    certifiable = True

    def choose(self, logits_sbl: Tensor, k: int) -> Tensor:
        return logits_sbl.sum(0).topk(k, dim=1).indices.expand(logits_sbl.shape[0], -1, -1)


@SELECTION_RULES.register("local")
class LocalTopK(SelectionRule):
    """Each stream its own top k (the paper's local-TopK baseline; for a global model,
    the independent encoding of each stream)."""

    def choose(self, logits_sbl: Tensor, k: int) -> Tensor:
        return logits_sbl.topk(k, dim=2).indices


def selection_rule(name: str) -> SelectionRule:
    """The rule registered as ``name``; a one-line error naming the rules otherwise."""
    if name not in (names := SELECTION_RULES.names()):
        raise SparcError(f"topk must be {' or '.join(map(repr, names))}, got {name!r}")
    return _instance(name)


@functools.cache
def _instance(name: str) -> SelectionRule:
    return SELECTION_RULES.get(name)()  # one per process: rules hold no state
