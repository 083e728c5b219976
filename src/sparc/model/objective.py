"""What a method minimises: its loss terms and how they add up (docs/method.md §2).

:func:`auxk_selection` picks each stream's AuxK latents among its dead ones;
:func:`reconstruction_losses` turns the decoded rows of a training forward into every
(source, target) NMSE — a source's code decoded into each stream — and the AuxK terms;
:func:`total_loss` weighs them into the one number the optimizer sees. A method with
other terms (nested prefixes, sampled sources) adds them here, beside these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sparc.model.config import SPARCConfig
from sparc.model.methods import METHODS
from sparc.model.outputs import ForwardOutput, Losses, OnAccess, SparseCode, zero_like_loss

if TYPE_CHECKING:
    from sparc.model.sparc import SPARC


def total_loss(self_nmse: dict[str, Tensor], cross_nmse: dict[tuple[str, str], Tensor],
               auxk: dict[str, Tensor], cfg: SPARCConfig, nested: Tensor | None = None) -> Tensor:
    """SPARC's objective: the mean self-reconstruction NMSE, plus ``auxk_coef`` times the
    mean AuxK term and ``cross_coef`` times the mean cross-reconstruction NMSE.

    ``nested`` [P, S', S'] (Matryoshka; docs/method.md §1.9): every prefix's (source,
    target) NMSE; the reconstruction terms are then the mean over the P prefixes of
    each prefix's mean self NMSE plus ``cross_coef`` times its mean cross NMSE (the
    last prefix, the whole dictionary, is the one ``self_nmse``/``cross_nmse`` hold)."""
    summed = nested is None and METHODS.get(cfg.method).sampled_source
    if summed:
        # USAE (docs/method.md §1.10): each source's NMSE summed over its targets — the
        # paper's Σ_j ‖x_j − D_j(z_i)‖² in NMSE — averaged over the sources encoded: in
        # training the one drawn, so the loss is that sum; in evaluation every stream,
        # so it is the training loss's expectation over the draw.
        total = torch.stack(list(self_nmse.values())).sum()
        if cross_nmse and cfg.cross_coef:
            total = total + cfg.cross_coef * torch.stack(list(cross_nmse.values())).sum()
        total = total / len(self_nmse)
    elif nested is None:
        total = torch.stack(list(self_nmse.values())).mean()
    else:
        P, n = nested.shape[:2]
        diag = torch.eye(n, dtype=torch.bool, device=nested.device)
        per_prefix = nested[:, diag].mean(1)
        if n > 1 and cfg.cross_coef:
            per_prefix = per_prefix + cfg.cross_coef * nested[:, ~diag].mean(1)
        total = per_prefix.mean()
    if cfg.auxk_coef and cfg.auxk:
        total = total + cfg.auxk_coef * torch.stack(list(auxk.values())).mean()
    if nested is None and not summed and cross_nmse and cfg.cross_coef:
        total = total + cfg.cross_coef * torch.stack(list(cross_nmse.values())).mean()
    return total


@torch.no_grad()
def auxk_selection(model: SPARC, ids: list[int], logits_at: Callable[[int, Tensor], Tensor], B: int):
    """The AuxK latents of each stream: its top-k_aux dead latents by logit (docs/method.md §2).
    ``logits_at(a, latents)`` gives the logits [B, m] of the a-th stream given at ``latents``.

    Returns None when AuxK is off or no stream has a dead latent; else (idx [S', B,
    ka], pre [S', B, ka] (their logits), keep [S', B, ka] (0 where a stream has fewer
    than ka dead latents: padding), has_dead [S'] bool) with ka = min(k_aux, most
    dead latents of any stream).
    """
    if model.cfg.auxk == 0:
        return None
    dead = model.dead_mask()[ids]
    n_dead = dead.sum(1)
    if int(n_dead.max()) == 0:
        return None
    n, device, dtype = len(ids), model.W_enc.device, model.W_enc.dtype
    ka = min(model.cfg.auxk, int(n_dead.max()))
    idx = torch.zeros(n, B, ka, dtype=torch.long, device=device)
    pre = torch.zeros(n, B, ka, dtype=dtype, device=device)
    keep = torch.zeros(n, B, ka, dtype=dtype, device=device)
    for a in range(n):
        dead_l = dead[a].nonzero().squeeze(1)
        m = min(ka, dead_l.numel())
        if m:
            top = logits_at(a, dead_l).topk(m, dim=1)
            idx[a, :, :m] = dead_l[top.indices]
            pre[a, :, :m] = top.values
            idx[a, :, m:] = idx[a, :, :1]  # padding, zeroed by keep
            pre[a, :, m:] = pre[a, :, :1]
            keep[a, :, :m] = 1
    return idx, pre, keep, n_dead > 0


def reconstruction_losses(model: SPARC, ids: list[int], idx_sbk: Tensor, val_sbk: Tensor, main_rd: Tensor,
                          aux_rd: Tensor, x_bd: Tensor, aux, *, prefixes: int = 1,
                          targets: list[int] | None = None) -> ForwardOutput:
    """The forward's output from its decoded rows: ``main_rd`` [n·P·B, D] (source a's code,
    cut to prefix p, decoded into every stream's columns: row block a·P + p; P =
    ``prefixes``, 1 without nested prefixes), ``aux_rd`` (the AuxK codes, each in its
    own stream's columns), the inputs ``x_bd`` [B, D] and ``aux`` (the AuxK selection or
    None; :mod:`sparc.model.forward`). The sources are the streams ``ids``; the targets
    ``targets`` (default: the sources; USAE: every stream given, its one source among them)."""
    n, B, _ = idx_sbk.shape
    D, P = model.W_dec.shape[1], prefixes
    names = [model.names[i] for i in ids]
    targets = ids if targets is None else targets
    # Every (source, target) pair's NMSE at once: the residual of each source's decode in
    # all columns, its squares summed per stream block (docs/method.md §2.1); absent
    # streams' columns weigh 0.
    num_abt, den_bt = model.kernels.block_sse(main_rd, model.b_pre, x_bd, n * P, [model.cols[i] for i in targets])
    pair_all = num_abt.div(den_bt).mean(1)                                  # [source·prefix, target]
    nested = None
    if P > 1:
        nested = pair_all.view(n, P, n).transpose(0, 1)                     # [prefix, source, target]
        pair_at = nested[-1]
        main_abd = main_rd.view(n, P, B, D)[:, -1]                          # the whole dictionary's
    else:
        pair_at = pair_all                                                  # [source, target]
        main_abd = main_rd.view(n, B, D)                                    # source a → all streams
    # Made on access (OnAccess), as this forward would have made them: the pre-bias as it
    # is now (an optimizer step may follow), the same grad mode, no autocast.
    b_pre, grad, device = model.b_pre.clone(), torch.is_grad_enabled(), x_bd.device.type

    def recon(a: int, col: slice) -> Callable[[], Tensor]:
        def make() -> Tensor:
            with torch.set_grad_enabled(grad), torch.autocast(device, enabled=False):
                return main_abd[a, :, col] + b_pre[col]
        return make

    recons: dict[str, Callable[[], Tensor]] = {}
    cross: dict[tuple[str, str], Callable[[], Tensor]] = {}
    self_nmse: dict[str, Tensor] = {}
    cross_nmse: dict[tuple[str, str], Tensor] = {}
    for a, t in enumerate(targets):
        col_t = model.cols[t]
        for b, s in enumerate(ids):
            if s == t:
                recons[model.names[t]] = recon(b, col_t)
                self_nmse[model.names[t]] = pair_at[b, a]
            else:
                cross[(model.names[t], model.names[s])] = recon(b, col_t)
                cross_nmse[(model.names[t], model.names[s])] = pair_at[b, a]

    auxk = {s: zero_like_loss(x_bd) for s in names}
    if aux is not None:
        has_dead = aux[3]
        # Stream a's AuxK code reconstructs what its own code left, x_a − decode_a (the
        # decode without gradient; also the NMSE's norm), in a's columns. Only those
        # columns are computed: the pieces are cut by one unbind.
        main_const = main_abd.detach()
        for a, (s, aux_bd) in enumerate(zip(names, aux_rd.view(n, B, D).unbind(0))):
            if has_dead[a]:
                col = model.cols[ids[a]]
                target = x_bd[:, col] - main_const[a, :, col]
                res = aux_bd[:, col] + model.b_pre[col] - target
                auxk[s] = ((res * res).sum(1) / (target * target).sum(1)).mean()
    total = total_loss(self_nmse, cross_nmse, auxk, model.cfg, nested)
    codes = {s: SparseCode(idx_sbk[j], val_sbk[j], model.n_latents) for j, s in enumerate(names)}
    prefix_nmse = {}
    if nested is not None:  # each prefix's mean self NMSE, for the log
        diag = torch.eye(n, dtype=torch.bool, device=nested.device)
        prefix_nmse = dict(zip(model.cfg.matryoshka, nested[:, diag].mean(1).detach().unbind(0)))
    return ForwardOutput(codes, OnAccess(recons), OnAccess(cross),
                         Losses(total, self_nmse, cross_nmse, auxk, prefix_nmse))
