"""How a method chooses each sample's active latents: a selection rule, registered by
name (``SPARCConfig.topk``).

A rule takes the encoder logits of the streams given, ``[S', B, L]`` (S' streams, B
samples), and returns a :class:`Selection`: the chosen latents ``[S', B, w]`` and, for
rules whose rows hold different numbers of latents (BatchTopK), a keep mask that is
False on the padding of the shorter rows. The TopK rules choose exactly w = k per row
and return no mask, so they pay nothing for it. The model does everything else (the
values at those latents, the ReLU, zeroing the padding, the decodes and losses), so a
new rule is a new class here or in its own module (listed in :data:`SELECTION_RULES`),
plus its tests. Attributes tell the model what the rule promises:

- ``shares_latents`` — every stream of a sample gets the same latents: each selected
  decoder row is then read once for all of them (docs/method.md §4.2);
- ``certifiable`` — the choice is the model's global TopK, which the certified bf16
  pass may make when every stream is present (docs/method.md §4.3);
- ``per_stream`` — each stream chooses from its own logits only, so the joint encoding
  of a sample is its independent one (evaluation encodes once);
- ``batch_wide`` — a training choice depends on the whole batch (BatchTopK), which the
  ranks of a data-parallel run hold in parts (such runs train in one process);
- :meth:`SelectionRule.n_thresholds` — how many inference thresholds the model keeps
  for the rule (the buffer ``SPARC.batch_threshold``, saved with the weights; 0: none),
  estimated by :meth:`SelectionRule.observe` during training and read by
  :meth:`SelectionRule.choose` in eval mode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sparc.errors import SparcError
from sparc.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor
# PyTorch is imported where it is used: SPARCConfig's checks read this registry when the
# sparc command builds its flags, which must not load it (sparc/lazy.py).


class Selection(NamedTuple):
    """The latents a rule chose for the streams given."""

    idx: Tensor
    """[S', B, w] int64: the chosen latents, distinct within a row; padding slots hold latents not chosen."""
    keep: Tensor | None
    """[S', B, w] bool: False on padding (a row with fewer than w latents). None: every slot is chosen (TopK)."""


class Context(NamedTuple):
    """What a rule may read besides the logits."""

    training: bool
    """Training mode (BatchTopK chooses from the batch) or inference (it thresholds)."""
    threshold: Tensor | None
    """The model's inference thresholds (``SPARC.batch_threshold``; negative: not yet estimated), or None."""
    streams: tuple[int, ...]
    """The model's indices of the S' streams given."""
    exclusive: Tensor | None = None
    """[L] bool: the stream-exclusive latents (docs/method.md §1.11), whose logit only their own stream gives (None: none)."""


class SelectionRule:
    """Chooses the latents of each stream and sample from the logits ``[S', B, L]``."""

    @dataclass(frozen=True)
    class Options:
        """A rule's settings (none for the rules here)."""

    name: str
    """The name it is registered under (set by the registry)."""
    shares_latents = False
    certifiable = False
    per_stream = False
    batch_wide = False

    def n_thresholds(self, n_streams: int) -> int:
        """How many inference thresholds a model of ``n_streams`` streams keeps (0: none)."""
        return 0

    def choose(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        """The latents chosen (no gradient flows through the choice)."""
        raise NotImplementedError

    def choose_alone(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        """Each stream encoded alone, as if it were the only stream given (the
        independent encoding that tests alignment honestly)."""
        if self.per_stream or logits_sbl.shape[0] == 1:
            return self.choose(logits_sbl, k, ctx)
        parts = [self.choose(logits_sbl[a:a + 1], k, ctx._replace(streams=(i,))) for a, i in enumerate(ctx.streams)]
        return stack_selections(parts, logits_sbl)

    def observe(self, logits_sbl: Tensor, sel: Selection, ctx: Context, decay: float) -> None:
        """Update the inference thresholds (``ctx.threshold``, in place) from a training
        batch's choice; rules without thresholds have nothing to do."""


SELECTION_RULES: Registry[SelectionRule] = Registry("selection rule", ("sparc.model.selection",), name_attribute="name")


@SELECTION_RULES.register("global")
class GlobalTopK(SelectionRule):
    """SPARC's rule: one set of k latents per sample, the top k of the logits summed
    over the streams given (docs/method.md §1.3)."""

    shares_latents = True
    certifiable = True

    def choose(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        score = logits_sbl.sum(0)
        n = logits_sbl.shape[0]
        if ctx.exclusive is not None and n > 1:
            # An exclusive latent's one logit counts once for every stream given, as a
            # shared latent's S' logits do (the others are exactly 0; docs/method.md §1.11).
            score = score.where(~ctx.exclusive, score * n)
        return Selection(score.topk(k, dim=1).indices.expand(n, -1, -1), None)

    def choose_alone(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        return Selection(logits_sbl.topk(k, dim=2).indices, None)  # the top k of one stream: local TopK


@SELECTION_RULES.register("local")
class LocalTopK(SelectionRule):
    """Each stream its own top k (the paper's local-TopK baseline; for a global model,
    the independent encoding of each stream)."""

    per_stream = True

    def choose(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        return Selection(logits_sbl.topk(k, dim=2).indices, None)


def rows_of_mask(score_sbl: Tensor, mask_sbl: Tensor) -> Selection:
    """Each row's latents where ``mask_sbl`` [S', B, L], highest score first, padded to the
    widest row of all (w ≥ 1) with latents outside the mask, kept False: padding never
    repeats a chosen latent, so a code's indices stay distinct within a row."""
    import torch

    counts = mask_sbl.sum(2)
    w = max(1, int(counts.max())) if counts.numel() else 1
    idx = torch.where(mask_sbl, score_sbl, float("-inf")).topk(w, dim=2).indices
    return Selection(idx, torch.arange(w, device=score_sbl.device) < counts[..., None])


class BatchTopK(SelectionRule):
    """BatchTopK (Bussmann et al. 2024, arXiv 2412.06410): in training, the top B·k
    scores of the whole batch, so a sample gets as many latents as its scores earn; at
    inference, every latent whose score exceeds the threshold estimated in training
    (the running mean of the smallest positive score kept), so a row's code does not
    depend on its batch (docs/method.md §1.8)."""

    batch_wide = True

    def scores(self, logits_sbl: Tensor) -> Tensor:
        """[S'', B, L]: what the rule ranks (S'' = 1 for one mask for every stream)."""
        raise NotImplementedError

    def threshold_of(self, ctx: Context) -> Tensor | None:
        """[S'', 1, 1] thresholds of the scores, or None while not yet estimated."""
        raise NotImplementedError

    def choose(self, logits_sbl: Tensor, k: int, ctx: Context) -> Selection:
        score_sbl = self.scores(logits_sbl)
        sel = rows_of_mask(score_sbl, self.mask(score_sbl, k, None if ctx.training else self.threshold_of(ctx)))
        n = logits_sbl.shape[0]
        if sel.idx.shape[0] != n:  # one mask for every stream
            sel = Selection(sel.idx.expand(n, -1, -1), sel.keep.expand(n, -1, -1))
        return sel

    @staticmethod
    def mask(score_sbl: Tensor, k: int, theta: Tensor | None) -> Tensor:
        """[S'', B, L] bool: scores above ``theta`` [S'', 1, 1]; without one (training, or
        never trained) the top B·k of each score table."""
        import torch

        if theta is not None:
            return score_sbl > theta
        n, B, L = score_sbl.shape
        top = score_sbl.reshape(n, B * L).topk(B * k, dim=1, sorted=False).indices
        return torch.zeros(n, B * L, dtype=torch.bool, device=score_sbl.device).scatter_(1, top, True).view(n, B, L)

    def observe(self, logits_sbl: Tensor, sel: Selection, ctx: Context, decay: float) -> None:
        score_sbl = self.scores(logits_sbl)
        for a in range(score_sbl.shape[0]):
            kept = score_sbl[a].gather(1, sel.idx[a]).masked_fill(~sel.keep[a], float("-inf"))
            positive = kept[kept > 0]
            if positive.numel():
                self.update(ctx, a, positive.min(), decay)

    def update(self, ctx: Context, a: int, least: Tensor, decay: float) -> None:
        raise NotImplementedError


def running_min_(theta: Tensor, least: Tensor, decay: float) -> None:
    """θ ← the first batch's least kept score, then decay·θ + (1 − decay)·least (the
    reference implementations' running estimate)."""
    least = least.to(theta.dtype)
    if bool(theta < 0):
        theta.copy_(least)
    else:
        theta.mul_(decay).add_((1 - decay) * least)


@SELECTION_RULES.register("batch-global")
class GlobalBatchTopK(BatchTopK):
    """BatchTopK of the summed logits: one mask for every stream of a sample. Its one
    threshold is kept per stream summed (θ = least kept sum / S'), so a subset of streams
    — one stream alone — compares its summed logits with S'·θ."""

    shares_latents = True

    def n_thresholds(self, n_streams):
        return 1

    def scores(self, logits_sbl):
        return logits_sbl.sum(0, keepdim=True)

    def threshold_of(self, ctx):
        if ctx.threshold is None or bool(ctx.threshold[0] < 0):
            return None
        return (ctx.threshold[0] * len(ctx.streams)).view(1, 1, 1)

    def choose_alone(self, logits_sbl, k, ctx):
        # Each stream's own logits against its share of the threshold (θ·1), as a
        # one-stream encoding compares them.
        theta = None if ctx.training or self.threshold_of(ctx) is None else ctx.threshold[0].view(1, 1, 1)
        return rows_of_mask(logits_sbl, self.mask(logits_sbl, k, theta))

    def update(self, ctx, a, least, decay):
        running_min_(ctx.threshold[0], least / len(ctx.streams), decay)


@SELECTION_RULES.register("batch-local")
class LocalBatchTopK(BatchTopK):
    """BatchTopK of each stream's own logits, with a threshold per stream."""

    per_stream = True

    def n_thresholds(self, n_streams):
        return n_streams

    def scores(self, logits_sbl):
        return logits_sbl

    def threshold_of(self, ctx):
        if ctx.threshold is None:
            return None
        theta = ctx.threshold[list(ctx.streams)]
        if bool((theta < 0).any()):
            return None
        return theta.view(-1, 1, 1)

    def update(self, ctx, a, least, decay):
        running_min_(ctx.threshold[ctx.streams[a]], least, decay)


def stack_selections(parts: list[Selection], logits_sbl: Tensor) -> Selection:
    """One selection of the streams of ``logits_sbl`` from one selection per stream (a
    rule's choices for each stream alone), padded to a common width."""
    import torch

    w = max(p.idx.shape[2] for p in parts)
    if all(p.keep is None and p.idx.shape[2] == w for p in parts):
        return Selection(torch.cat([p.idx for p in parts]), None)
    # Rebuilt from each stream's mask, so the padding is latents the stream did not choose.
    mask = torch.zeros(logits_sbl.shape, dtype=torch.bool, device=logits_sbl.device)
    for a, p in enumerate(parts):
        keep = torch.ones_like(p.idx[0], dtype=torch.bool) if p.keep is None else p.keep[0]
        mask[a].scatter_(1, p.idx[0], keep)
    return rows_of_mask(logits_sbl, mask)


def selection_rule(name: str) -> SelectionRule:
    """The rule registered as ``name``; a one-line error naming the rules otherwise."""
    if name not in (names := SELECTION_RULES.names()):
        raise SparcError(f"topk must be {' or '.join(map(repr, names))}, got {name!r}")
    return _instance(name)


@functools.cache
def _instance(name: str) -> SelectionRule:
    return SELECTION_RULES.get(name)()  # one per process: rules hold no state
