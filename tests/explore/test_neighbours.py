"""Nearest latents by decoder cosine equal the brute-force computation."""

import numpy as np
import torch

from sparc.explore.neighbours import ALL, nearest_latents
from sparc.model import SPARC, SPARCConfig


def test_nearest_latents_match_brute_force():
    torch.manual_seed(0)
    model = SPARC({"a": 6, "b": 4}, SPARCConfig(n_latents=30, k=3))
    got = nearest_latents(model, n=4, block=7)
    dirs = {s: model.decoder_directions(s).numpy() for s in model.names}
    cos = {s: d @ d.T for s, d in dirs.items()}
    cos[ALL] = (cos["a"] + cos["b"]) / 2
    for s, c in cos.items():
        np.fill_diagonal(c, -np.inf)
        ids, vals = got[s]
        assert ids.shape == (30, 4)
        for lat in range(30):
            np.testing.assert_allclose(vals[lat], np.sort(c[lat])[::-1][:4], rtol=1e-5, atol=1e-6)
            assert lat not in ids[lat]
    some = nearest_latents(model, [3, 17], n=2)
    np.testing.assert_array_equal(some[ALL][0], got[ALL][0][[3, 17], :2])
