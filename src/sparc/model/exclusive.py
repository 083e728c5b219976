"""Stream-exclusive latents (``--exclusive STREAM:N``; docs/method.md §1.11): N latents
that belong to one stream only, as Dedicated Feature Crosscoders give each model its
own (arXiv 2602.11729).

They are the last latents of the dictionary, in the order the streams are named (the
shared ones come first). An exclusive latent of stream s has encoder and decoder rows,
and a latent bias, exactly zero in every other stream, kept so through training:

- its logit in another stream is then exactly 0 (a zero row, a zero bias), so its value
  there is ReLU(0) = 0, whose gradient is 0 — the encoder rows and biases there never
  get a gradient, and Adam with zero gradients and zero moments does not move them;
- the training forward decodes its entries in its own stream's columns only
  (:mod:`sparc.model.forward`), so the other streams' decoder rows get no gradient either;
- under global TopK its one logit counts once for every stream given
  (:class:`sparc.model.selection.GlobalTopK`), as a shared latent gets a logit from each;
- the decoder normalisation leaves a zero row zero (it divides by max(norm, tiny)), and
  a latent never counts as dead where it does not belong, so AuxK and re-initialisation
  never write there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparc.errors import SparcError

if TYPE_CHECKING:
    from torch import Tensor

    from sparc.model.sparc import SPARC


def parse(specs: tuple[str, ...], n_latents: int) -> list[tuple[str, int]]:
    """(stream, N) of each ``STREAM:N``; one-line errors for a bad spec, N < 1, a stream
    named twice, or as many exclusive latents as the dictionary has (none left shared)."""
    out: list[tuple[str, int]] = []
    for spec in specs:
        stream, sep, count = str(spec).rpartition(":")
        try:
            n = int(count)
        except ValueError:
            n = None
        if not sep or not stream or n is None:
            raise SparcError(f"--exclusive takes STREAM:N (e.g. dino:12), got {spec!r}")
        if n < 1:
            raise SparcError(f"--exclusive {spec}: a stream's exclusive latents must number at least 1, got {n}")
        if stream in dict(out):
            raise SparcError(f"--exclusive names stream {stream!r} twice; give each stream once")
        out.append((stream, n))
    total = sum(n for _, n in out)
    if out and total >= n_latents:
        raise SparcError(f"--exclusive gives {total} exclusive latents, but n_latents is {n_latents}: "
                         "some must stay shared; give fewer or raise --n-latents")
    return out


def check_streams(specs: tuple[str, ...], n_latents: int, names: list[str] | tuple[str, ...]) -> None:
    """A one-line error for a stream of ``--exclusive`` that the model does not have."""
    for stream, _ in parse(specs, n_latents):
        if stream not in names:
            raise SparcError(f"--exclusive names stream {stream!r}, which is not among the streams "
                             f"({', '.join(names)}); use one of those")


def owners(specs: tuple[str, ...], n_latents: int, names: list[str]) -> Tensor:
    """[L] int64: the stream index that owns each latent, −1 for a shared one."""
    import torch

    check_streams(specs, n_latents, names)
    owner = torch.full((n_latents,), -1, dtype=torch.int64)
    start = n_latents - sum(n for _, n in parse(specs, n_latents))
    for stream, n in parse(specs, n_latents):
        owner[start:start + n] = names.index(stream)
        start += n
    return owner


def allowed(model: SPARC) -> Tensor:
    """[S, L] bool: where latent l belongs to stream s (shared, or exclusive to s)."""
    import torch

    owner = model.latent_owner
    return (owner == -1) | (owner == torch.arange(len(model.names), device=owner.device)[:, None])


def zero_outside_(model: SPARC) -> None:
    """Zero the encoder and decoder rows and the latent biases of every exclusive latent
    in the streams it does not belong to (at initialisation)."""
    ok = allowed(model)
    for s, col in enumerate(model.cols):
        out = ~ok[s]
        model.W_enc.data[out, col] = 0
        model.W_dec.data[out, col] = 0
        model.b_lat.data[s, out] = 0
