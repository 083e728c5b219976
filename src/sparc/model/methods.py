"""The methods ``sparc train --method`` names: each a selection rule
(:mod:`sparc.model.selection`) and the loss terms it trains with
(:mod:`sparc.model.objective`), registered by name (docs/method.md §1.8–1.10).

A method fixes the settings that make it what it is — its selection rule, whether
it has the cross loss, whether the dictionary is nested — and leaves the others
(k, L, the AuxK and cross weights) to the config. :func:`resolve` fills a config's
method-given settings and checks the ones given against the method; a config written
before methods had names (no ``method``) is read as the method its settings make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sparc.errors import SparcError
from sparc.registry import Registry

if TYPE_CHECKING:
    from sparc.model.config import SPARCConfig


class Method:
    """A named method: its selection rule and loss terms."""

    @dataclass(frozen=True)
    class Options:
        """A method's settings live in :class:`~sparc.model.config.SPARCConfig`."""

    name: str
    """The name it is registered under (set by the registry)."""
    topk: str = "global"
    """Its selection rule."""
    cross: bool = True
    """Whether it trains with the cross-reconstruction loss (cross_coef > 0; default 1)."""
    nested: bool = False
    """Whether the dictionary is nested (Matryoshka prefixes, ``SPARCConfig.matryoshka``)."""
    sampled_source: bool = False
    """Whether a training step encodes one stream drawn at random, whose code decodes
    every stream, the loss summed over the targets (USAE, :mod:`sparc.model.usae`)."""


METHODS: Registry[Method] = Registry("method", ("sparc.model.methods",), name_attribute="name")


@METHODS.register("sparc")
class SPARCMethod(Method):
    """Global TopK and the cross loss (Nasiri-Sarvi et al. 2025): the default."""


@METHODS.register("local")
class LocalMethod(Method):
    """Each stream its own top k, with the cross loss: the paper's local-TopK baseline."""

    topk = "local"


@METHODS.register("no-cross")
class NoCrossMethod(Method):
    """Global TopK without the cross loss (cross_coef 0): the paper's ablation."""

    cross = False


@METHODS.register("batchtopk")
class BatchTopKMethod(Method):
    """BatchTopK of the summed logits, one mask for every stream (Bussmann et al. 2024), with the cross loss."""

    topk = "batch-global"


@METHODS.register("batchtopk-local")
class LocalBatchTopKMethod(Method):
    """BatchTopK of each stream's own logits (Bussmann et al. 2024), with the cross loss."""

    topk = "batch-local"


@METHODS.register("matryoshka")
class MatryoshkaMethod(Method):
    """Nested prefixes of the dictionary, each reconstructing every stream (Bussmann et al. 2025), on SPARC's global TopK and cross loss."""

    nested = True


@METHODS.register("usae")
class UniversalMethod(Method):
    """Universal SAEs (Thasarathan et al. 2025): per step one stream drawn at random is encoded with its own TopK and decodes every stream, the NMSE summed over the targets; at inference each stream its own TopK."""

    topk = "local"
    sampled_source = True


class Resolved(NamedTuple):
    """A config's method-given settings, filled."""

    method: str
    topk: str
    cross_coef: float
    matryoshka: tuple[int, ...]


def default_prefixes(n_latents: int, k: int) -> tuple[int, ...]:
    """L/16, L/4, L (Bussmann et al. 2025 use a few prefixes growing geometrically), each
    at least k so that a prefix can hold a sample's latents."""
    return tuple(sorted({max(k, n_latents // 16), max(k, n_latents // 4), n_latents}))


def inferred(cfg: SPARCConfig) -> str:
    """The method of a config that names none, from its settings: prefixes make
    Matryoshka, global TopK without the cross loss no-cross, otherwise the method of
    the rule (whatever its cross weight)."""
    if cfg.matryoshka:
        return "matryoshka"
    topk = cfg.topk or "global"
    if topk == "global":
        return "no-cross" if cfg.cross_coef == 0 else "sparc"
    return next(name for name in METHODS.names() if METHODS.get(name).topk == topk)


def resolve(cfg: SPARCConfig) -> Resolved:
    """The method and its settings of ``cfg``; a one-line error where a setting given
    does not go with the method."""
    from sparc.model.selection import selection_rule

    if cfg.topk is not None:
        selection_rule(cfg.topk)  # an unknown rule is named as such
    name = cfg.method or inferred(cfg)
    if name not in METHODS.names():
        raise SparcError(f"unknown method {name!r}; choose one of {', '.join(METHODS.names())}")
    m = METHODS.get(name)
    if cfg.topk is not None and cfg.topk != m.topk:
        raise SparcError(f"method {name!r} chooses latents by topk {m.topk!r}, not {cfg.topk!r}; "
                         f"drop --topk, or pick the method of that rule")
    cross = (1.0 if m.cross else 0.0) if cfg.cross_coef is None else cfg.cross_coef
    if m.cross and cross == 0 and m.topk == "global" and not m.nested:
        raise SparcError(f"method {name!r} trains with the cross loss; cross_coef 0 is the method 'no-cross'")
    if not m.cross and cross != 0:
        raise SparcError(f"method {name!r} has no cross loss (cross_coef 0), got cross_coef {cross:g}")
    if m.sampled_source and cross == 0:
        raise SparcError(f"method {name!r} decodes every stream from the one drawn: it needs cross_coef > 0")
    prefixes = tuple(cfg.matryoshka)
    if prefixes and not m.nested:
        raise SparcError(f"matryoshka prefix sizes go with --method matryoshka, not {name!r}")
    if m.nested:
        prefixes = prefixes or default_prefixes(cfg.n_latents, cfg.k)
        check_prefixes(prefixes, cfg.n_latents, cfg.k)
    return Resolved(name, m.topk, cross, prefixes)


def check_prefixes(sizes: tuple[int, ...], n_latents: int, k: int) -> None:
    """Nested prefix sizes: growing, ending at L, none smaller than k."""
    if any(not isinstance(s, int) or s < 1 for s in sizes):
        raise SparcError(f"matryoshka prefix sizes must be positive latent counts, got {list(sizes)}")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise SparcError(f"matryoshka prefix sizes must grow (each prefix holds the one before), got {list(sizes)}")
    if sizes[-1] != n_latents:
        raise SparcError(f"the last matryoshka prefix must be the whole dictionary, n_latents={n_latents}, "
                         f"got {list(sizes)}; end the sizes with {n_latents}")
    if k > sizes[0]:
        raise SparcError(f"k={k} is larger than the smallest matryoshka prefix ({sizes[0]}): a sample's latents "
                         "could not all lie in it; use a smaller k or a larger first prefix")
