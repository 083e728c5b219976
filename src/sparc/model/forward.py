"""The training forward's assembly (:meth:`sparc.model.SPARC.forward`): the chosen
latents' values, the firing counters, the AuxK codes, one decode for every code and the
losses (docs/method.md §2, §4).

One encoder call and one decoder call serve the codes and the AuxK codes, so each weight
gets a single gradient tensor. The codes go to the decoder as the rows of one CSR matrix
(:func:`code_rows`): for SPARC and the TopK rules, k entries per (stream, sample) row; a
rule with padding (BatchTopK) gives only its chosen entries; nested prefixes
(Matryoshka) split every row into one row per prefix group, so each group is decoded on
its own in the same single decode, and the prefixes' reconstructions are cumulative sums
over the groups (docs/method.md §1.9).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sparc.model.kernels import uniform_crow
from sparc.model.kernels.autograd import DecodeSelected
from sparc.model.methods import METHODS
from sparc.model.objective import auxk_selection, reconstruction_losses
from sparc.model.outputs import ForwardOutput
from sparc.model.selection import selection_rule
from sparc.model.usae import draw_source

if TYPE_CHECKING:
    from sparc.model.engine import StepEngine
    from sparc.model.sparc import SPARC


def code_rows(idx_sbw: Tensor, val_sbw: Tensor, keep_sbw: Tensor | None,
              group_bounds: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(crow, col, val): the codes [S', B, w] as CSR rows for one decode.

    Without padding (``keep_sbw`` None) and groups, row a·B + b holds the w entries of
    stream a, sample b, as they are. With ``keep_sbw``, only the kept entries. With
    ``group_bounds`` [P − 1] (the first latent of each prefix group after the first),
    the rows are ordered (stream a, group g, sample b): row (a·P + g)·B + b holds the
    entries of (a, b) whose latent lies in group g, in their order."""
    n, B, w = idx_sbw.shape
    if keep_sbw is None and group_bounds is None:
        return uniform_crow(n * B, w, idx_sbw.device), idx_sbw.reshape(-1), val_sbw.reshape(-1)
    col, val = idx_sbw.reshape(-1), val_sbw.reshape(-1)
    key = torch.arange(n * B, device=col.device).repeat_interleave(w)  # the entry's (a, b) row
    P = 1
    if group_bounds is not None:
        P = group_bounds.numel() + 1
        g = torch.bucketize(col, group_bounds, right=True)
        key = (key // B * P + g) * B + key % B
    if keep_sbw is not None:
        kept = keep_sbw.reshape(-1)
        key, col, val = key[kept], col[kept], val[kept]
    if group_bounds is not None:
        order = torch.argsort(key, stable=True)
        key, col, val = key[order], col[order], val[order]
    crow = torch.zeros(n * P * B + 1, dtype=torch.long, device=col.device)
    torch.cumsum(torch.bincount(key, minlength=n * P * B), 0, out=crow[1:])
    return crow, col, val


def group_bounds_of(model: SPARC, device: torch.device) -> Tensor | None:
    """[P − 1]: where each nested prefix group after the first starts (None: no prefixes)."""
    sizes = model.cfg.matryoshka
    return torch.tensor(sizes[:-1], dtype=torch.long, device=device) if len(sizes) > 1 else None


def training_forward(model: SPARC, inputs: Mapping[str, Tensor], engine: StepEngine | None) -> ForwardOutput:
    """:meth:`sparc.model.SPARC.forward`."""
    rule = selection_rule(model.cfg.topk)
    targets = None
    if model.training and METHODS.get(model.cfg.method).sampled_source:
        # USAE: one stream of those given, drawn for this step, is encoded alone; its
        # code decodes every stream given (the targets).
        targets = model._streams_of(inputs)
        source = model.names[draw_source(model.source_draws, targets)]
        chosen = model.choose_for_step({source: inputs[source]}, engine=engine)
        chosen = chosen._replace(x_bd=model._side_by_side(inputs, targets))
    else:
        chosen = model.choose_for_step(inputs, engine=engine)
    ids, (idx_sbk, keep), pre_sbk, x_bd = chosen.ids, chosen.selection, chosen.pre, chosen.x_bd
    n, B, k = idx_sbk.shape
    D = model.W_dec.shape[1]
    if model.training:
        with torch.no_grad():
            fired = torch.relu(pre_sbk) if keep is None else torch.relu(pre_sbk) * keep
            model.count_firing(ids, idx_sbk, fired, None if engine is None else engine.reduce_firing)
            if chosen.logits is not None and rule.n_thresholds(len(model.names)):
                rule.observe(chosen.logits, chosen.selection, model.selection_context(ids), model.cfg.threshold_decay)
    aux = auxk_selection(model, ids, chosen.logits_at, B)
    if aux is None:
        val_sbk = torch.relu(model.values_at(ids, idx_sbk, pre_sbk, x_bd, engine=engine, keep=keep))
    else:
        aux_idx, aux_pre, aux_keep, has_dead = aux
        ka = aux_idx.shape[2]
        both = None if keep is None else torch.cat([keep, aux_keep > 0], dim=2)
        pre = model.values_at(ids, torch.cat([idx_sbk, aux_idx], dim=2), torch.cat([pre_sbk, aux_pre], dim=2), x_bd,
                              engine=engine, keep=both)
        val_sbk, aux_val = torch.relu(pre[..., :k]), torch.relu(pre[..., k:]) * aux_keep
    if keep is not None:
        val_sbk = val_sbk * keep  # the padding's values are 0 (they take no gradient either)
    bounds = group_bounds_of(model, x_bd.device)
    P = 1 if bounds is None else bounds.numel() + 1
    own = None
    if model.cfg.exclusive:
        # Stream-exclusive latents (docs/method.md §1.11) are decoded in their own rows,
        # in the source's columns only: the other streams' decoder rows, zero, then get
        # no gradient (the main rows carry them with value 0).
        own = (model.latent_owner[idx_sbk] >= 0).to(val_sbk.dtype)
    crow, col, val = code_rows(idx_sbk, val_sbk if own is None else val_sbk * (1 - own), keep, bounds)
    R = n * P * B
    E = 0 if own is None else n * B
    if own is not None:
        crow = torch.cat([crow, crow[-1] + uniform_crow(E, k, idx_sbk.device)[1:]])
        col = torch.cat([col, idx_sbk.reshape(-1)])
        val = torch.cat([val, (val_sbk * own).reshape(-1)])
    if aux is not None:
        crow = torch.cat([crow, crow[-1] + uniform_crow(n * B, ka, idx_sbk.device)[1:]])
        col = torch.cat([col, aux_idx.reshape(-1)])
        val = torch.cat([val, aux_val.reshape(-1)])
    # Under a rule that shares latents the n sources of a sample have the same entries:
    # each selected decoder row is read once for all of them.
    shared = (n, P * B) if rule.shares_latents else (1, 0)
    lo = hi = None
    if aux is not None or own is not None:  # AuxK and exclusive rows: their own stream only
        starts = torch.tensor([model.cols[i].start for i in ids], device=x_bd.device).repeat_interleave(B)
        stops = torch.tensor([model.cols[i].stop for i in ids], device=x_bd.device).repeat_interleave(B)
        times = (own is not None) + (aux is not None)
        lo = torch.cat([torch.zeros(R, dtype=torch.long, device=x_bd.device), starts.repeat(times)])
        hi = torch.cat([torch.full((R,), D, dtype=torch.long, device=x_bd.device), stops.repeat(times)])
    out = DecodeSelected.apply(model.kernels, model.W_dec, crow, col, val, shared,
                               None if engine is None else engine.grad_buffer("W_dec"), lo, hi,
                               None if engine is None else engine.table_step("W_dec"))
    # The first R rows: source a's code decoded into every stream's columns (per prefix
    # group, with prefixes). The pieces are cut with one split, whose backward puts the
    # gradient together once; indexing a piece per stream pair would allocate a zero
    # tensor of the whole output for each pair (most of a step with large batches).
    main_rd, own_rd, aux_rd = out.split([R, E, out.shape[0] - R - E])
    if E:
        main_rd = main_rd + own_rd
    if P > 1:  # prefix p's reconstruction: groups 0..p summed
        main_rd = main_rd.view(n, P, B, D).cumsum(1).view(R, D)
    # The losses in the weights' dtype even under autocast: sums of squares over
    # thousands of columns are no place for bfloat16.
    with torch.autocast(x_bd.device.type, enabled=False):
        return reconstruction_losses(model, ids, idx_sbk, val_sbk, main_rd, aux_rd, x_bd, aux, prefixes=P,
                                     targets=targets)
