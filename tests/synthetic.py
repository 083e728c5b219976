"""Small synthetic feature stores for tests: streams that share latent concepts, so a
SPARC model has something to align."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparc.data.rows import RowMeta
from sparc.data.writer import StoreWriter

DIMS = {"dino": 12, "clip_img": 8, "clip_txt": 8}


def concept_features(n_rows: int, dims: dict[str, int], n_concepts: int = 16, seed: int = 0):
    """Each row mixes 2 of ``n_concepts`` concepts; each stream sees them through its own
    random linear map plus noise. Returns (features per stream, concept ids [n, 2])."""
    rng = np.random.default_rng(seed)
    concepts = np.stack([rng.choice(n_concepts, 2, replace=False) for _ in range(n_rows)])
    weights = rng.uniform(0.5, 1.5, size=(n_rows, 2))
    z = np.zeros((n_rows, n_concepts))
    np.put_along_axis(z, concepts, weights, axis=1)
    feats = {}
    for s, d in dims.items():
        basis = rng.normal(size=(n_concepts, d))
        feats[s] = (z @ basis + 0.05 * rng.normal(size=(n_rows, d))).astype(np.float32)
    return feats, concepts


def make_store(path: Path, n_rows: int = 400, dims: dict[str, int] = DIMS, seed: int = 0,
               **writer_kwargs) -> Path:
    """Write a store of ``n_rows`` rows (groups of 2 rows share an image)."""
    feats, concepts = concept_features(n_rows, dims, seed=seed)
    meta = [
        RowMeta(row_id=f"r{i}", group_id=f"img{i // 2}", image=f"img{i // 2}.png",
                caption=f"concepts {a} and {b}", labels=(f"c{a}", f"c{b}"))
        for i, (a, b) in enumerate(concepts)
    ]
    with StoreWriter(path, dims, **writer_kwargs) as w:
        for start in range(0, n_rows, 128):
            w.append({s: x[start:start + 128] for s, x in feats.items()}, meta[start:start + 128])
    return path
