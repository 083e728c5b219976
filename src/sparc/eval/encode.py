"""Joint and independent codes of a batch from one set of logits, and decoding.

Encoding dominates the cost of an evaluation (one B×D by D×L product per chunk). The
joint code (all streams together, the model's forward) and the independent code (each
stream alone, ``model.encode({s: x_s})``) need the same per-stream logits, so they are
computed once here and both TopKs taken from them. The arithmetic mirrors
:meth:`sparc.model.SPARC.encode` step by step, so the codes are bitwise equal to
calling the model twice (the tests check it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sparc.model import SPARC, SparseCode


class BatchCodes(NamedTuple):
    """Codes of one batch under both encodings (the same objects when the model is local)."""

    joint: dict[str, SparseCode]
    independent: dict[str, SparseCode]


@torch.no_grad()
def encode_batch(model: SPARC, x: Mapping[str, Tensor]) -> BatchCodes:
    """Joint and independent codes of the streams in ``x`` (inputs L2-normalised)."""
    ids = sorted(model.stream_index(s) for s in x)
    B, dtype = next(iter(x.values())).shape[0], model.W_enc.dtype
    x_bd = torch.cat([
        x[s].to(dtype) if i in ids else model.b_pre.new_zeros(B, d)
        for i, (s, d) in enumerate(model.streams.items())
    ], dim=1)
    u_bd = x_bd - model.b_pre
    logits_sbl = u_bd.new_empty(len(ids), B, model.n_latents)
    for n, i in enumerate(ids):
        col = model.cols[i]
        torch.addmm(model.b_lat[i], u_bd[:, col], model.W_enc[:, col].t(), out=logits_sbl[n])
    k = model.cfg.k
    independent = {}
    for n, i in enumerate(ids):
        idx = logits_sbl[n].topk(k, dim=1).indices
        independent[model.names[i]] = SparseCode(idx, torch.relu(logits_sbl[n].gather(1, idx)), model.n_latents)
    if model.cfg.topk == "local" or len(ids) == 1:
        return BatchCodes(independent, independent)
    idx = logits_sbl.sum(0).topk(k, dim=1).indices
    joint = {
        model.names[i]: SparseCode(idx, torch.relu(logits_sbl[n].gather(1, idx)), model.n_latents)
        for n, i in enumerate(ids)
    }
    return BatchCodes(joint, independent)


def _decode(W_ld: Tensor, code: SparseCode) -> Tensor:
    """Σ_j values[:, j] · W[indices[:, j]]: a gather of k rows, O(B·k·D)."""
    return F.embedding_bag(code.indices, W_ld, per_sample_weights=code.values.to(W_ld.dtype), mode="sum")


@torch.no_grad()
def decode_all(model: SPARC, code: SparseCode) -> Tensor:
    """[B, Σd]: ``code`` decoded into every stream at once (slice with ``model.cols``)."""
    return _decode(model.W_dec, code) + model.b_pre


@torch.no_grad()
def decode(model: SPARC, code: SparseCode, stream: str) -> Tensor:
    """[B, d_stream]: ``code`` decoded into ``stream`` (as :meth:`SPARC.decode`)."""
    col = model.cols[model.stream_index(stream)]
    return _decode(model.W_dec[:, col], code) + model.b_pre[col]
