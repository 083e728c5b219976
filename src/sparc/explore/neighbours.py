"""Nearest latents by decoder cosine, within each stream and over all streams.

Each latent has a unit decoder direction per stream (:meth:`SPARC.decoder_directions`).
Within stream ``s`` two latents are close when their directions there are; over all
streams the score is the mean of the per-stream cosines, which is the cosine of the
directions concatenated across streams (each is unit norm). Computed in blocks of
latents, so memory stays ``block × L`` whatever L.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sparc.model import SPARC

ALL = "all streams"


@torch.no_grad()
def nearest_latents(model: SPARC, latents: Sequence[int] | None = None, *, n: int = 5,
                    block: int = 1024) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each of ``latents`` (default all), its ``n`` nearest other latents.

    Returns
    -------
    dict
        Stream name (and :data:`ALL`) → (ids int64 [len(latents), n], cosines float32 [same]).
    """
    L = model.n_latents
    latents = np.arange(L) if latents is None else np.asarray(latents, dtype=np.int64)
    n = min(n, L - 1)
    dirs = {s: model.decoder_directions(s).float() for s in model.names}
    out_ids = {s: np.zeros((len(latents), n), dtype=np.int64) for s in [*model.names, ALL]}
    out_cos = {s: np.zeros((len(latents), n), dtype=np.float32) for s in [*model.names, ALL]}
    for a in range(0, len(latents), block):
        ids = torch.from_numpy(latents[a:a + block])
        total = None
        for s, d in dirs.items():
            cos = d[ids] @ d.T
            cos[torch.arange(len(ids)), ids] = -np.inf  # not itself
            total = cos.clone() if total is None else total + cos
            top = cos.topk(n, dim=1)
            out_ids[s][a:a + block], out_cos[s][a:a + block] = top.indices.numpy(), top.values.numpy()
        top = (total / len(dirs)).topk(n, dim=1)
        out_ids[ALL][a:a + block], out_cos[ALL][a:a + block] = top.indices.numpy(), top.values.numpy()
    return {s: (out_ids[s], out_cos[s]) for s in out_ids}
