"""USAE's source draws (Thasarathan et al. 2025, arXiv 2502.03714; docs/method.md §1.10):
each training step encodes one stream, drawn at random, whose code decodes every stream.

The draw is a pure function of the model's ``source_draws`` buffer — (seed, steps
drawn) — hashed with SplitMix64 in integer arithmetic: the same sources on every CPU
and device, and, the buffer being saved with the weights, a resumed run draws what the
uninterrupted one drew, bit for bit. The seed comes from PyTorch's generator when the
model is built (under the run's seed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One SplitMix64 output of state ``x`` (Steele et al. 2014): a well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def drawn(seed: int, count: int, n: int) -> int:
    """The position (0 … n − 1) of the source drawn at the ``count``-th step of ``seed``."""
    return splitmix64((seed & MASK) ^ splitmix64(count)) % n


def new_state() -> Tensor:
    """[2] int64: a fresh (seed, steps drawn), the seed from PyTorch's generator."""
    import torch

    return torch.tensor([int(torch.randint(0, 2**62, ())), 0], dtype=torch.int64)


def draw_source(state: Tensor, ids: list[int]) -> int:
    """The model index of this step's source among the streams ``ids`` given, advancing
    ``state`` [2] (in place) by one draw."""
    seed, count = (int(v) for v in state.tolist())
    state[1] += 1
    return ids[drawn(seed, count, len(ids))]
