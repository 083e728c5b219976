"""Typed outputs of the model: sparse codes, reconstructions and named losses."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from sparc.model.selection import Selection

KeyT = TypeVar("KeyT")


class SparseCode(NamedTuple):
    """The k active latents of each sample of one stream.

    ``values`` may hold zeros: under global TopK a selected latent is ReLU'd per
    stream, so it can be inactive in one stream and active in another; under BatchTopK
    the rows with fewer latents than the widest are padded with entries of value 0.
    """

    indices: Tensor
    """[batch, k] int64 latent ids (BatchTopK: [batch, w], w the widest row's count)."""
    values: Tensor
    """[batch, k] non-negative activations."""
    n_latents: int
    """Size of the latent space, for :meth:`dense`."""

    def dense(self) -> Tensor:
        """The code as a dense [batch, n_latents] tensor."""
        out = self.values.new_zeros(self.values.shape[0], self.n_latents)
        return out.scatter_add_(1, self.indices, self.values)  # a padding entry may repeat a latent (value 0)

    def l0(self) -> Tensor:
        """[batch] number of nonzero entries per sample."""
        return (self.values > 0).sum(dim=1)


class StreamLogits(NamedTuple):
    """Encoder logits of a batch for the streams given, before any selection
    (:meth:`SPARC.logits`); :meth:`SPARC.select` turns them into codes."""

    streams: tuple[str, ...]
    """Names of the streams, in the model's order."""
    logits: Tensor
    """[n_streams, batch, n_latents] ``W_enc^s (x_s − b_pre^s) + b_lat^s``, without gradient."""


class Chosen(NamedTuple):
    """The latents a training forward chose (:meth:`SPARC.choose_for_step`)."""

    ids: list[int]
    """The model's indices of the streams given, in model order."""
    selection: Selection
    """The chosen latents [S', B, w] and their keep mask (None: no padding)."""
    pre: Tensor
    """[S', B, w] their logits, without gradient."""
    logits_at: Callable[[int, Tensor], Tensor]
    """``logits_at(a, latents)``: the logits [B, m] of the a-th stream given at ``latents`` [m] (for AuxK)."""
    x_bd: Tensor
    """[B, D] the inputs side by side (differentiable)."""
    logits: Tensor | None
    """[S', B, L] the logits the choice was made from (None: the certified bf16 pass made it)."""


class Losses(NamedTuple):
    """Loss components of one batch (docs/method.md §2). Per-term values are unweighted."""

    total: Tensor
    """The training objective: mean self NMSE + auxk_coef·mean AuxK + cross_coef·mean cross NMSE."""
    self_nmse: dict[str, Tensor]
    """NMSE of each stream's reconstruction."""
    cross_nmse: dict[tuple[str, str], Tensor]
    """NMSE of stream ``target`` reconstructed from stream ``source``, keyed (target, source)."""
    auxk: dict[str, Tensor]
    """AuxK NMSE of each stream (0 when the stream has no dead latent)."""
    prefix_nmse: dict[int, Tensor] = {}  # noqa: RUF012 (a NamedTuple's default: never mutated)
    """Matryoshka: the mean self NMSE of each nested prefix, keyed by its size (empty otherwise)."""

    def named(self) -> dict[str, float]:
        """Flat name → value view for logging."""
        out = {"loss": self.total.item()}
        out.update({f"nmse/{s}": v.item() for s, v in self.self_nmse.items()})
        out.update({f"cross_nmse/{t}<-{s}": v.item() for (t, s), v in self.cross_nmse.items()})
        out.update({f"auxk/{s}": v.item() for s, v in self.auxk.items()})
        out.update({f"prefix_nmse/{m}": v.item() for m, v in self.prefix_nmse.items()})
        return out


class OnAccess(Mapping[KeyT, Tensor]):
    """A mapping whose tensors are made on first access (then kept): the reconstructions
    of a training forward, which the step itself never reads (its losses come from the
    decoded rows directly), cost a pass over [sources, batch, D] only when asked for."""

    def __init__(self, makers: dict[KeyT, Callable[[], Tensor]]):
        self._makers, self._made = makers, {}

    def __getitem__(self, key: KeyT) -> Tensor:
        if key not in self._made:
            self._made[key] = self._makers[key]()
        return self._made[key]

    def __iter__(self) -> Iterator[KeyT]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)

    def __repr__(self) -> str:
        return f"OnAccess({list(self._makers)})"


class ForwardOutput(NamedTuple):
    """Everything one forward pass computes."""

    codes: dict[str, SparseCode]
    """Sparse code of each stream given."""
    recons: Mapping[str, Tensor]
    """Reconstruction of each stream from its own code (made on access)."""
    cross_recons: Mapping[tuple[str, str], Tensor]
    """Reconstruction of ``target`` from the code of ``source``, keyed (target, source)
    (made on access)."""
    losses: Losses


def row_nmse(recon: Tensor, target: Tensor) -> Tensor:
    """[batch] ‖recon − target‖² / ‖target‖² of each row (docs/method.md §2); not finite
    where ‖target‖ = 0."""
    return (recon - target).pow(2).sum(-1) / target.pow(2).sum(-1)


def nmse(recon: Tensor, target: Tensor) -> Tensor:
    """Normalised MSE: the mean of :func:`row_nmse` over the batch."""
    return row_nmse(recon, target).mean()


def zero_like_loss(ref: Tensor) -> Tensor:
    return torch.zeros((), dtype=ref.dtype, device=ref.device)
