"""Unit-L2 normalisation of feature vectors, as SPARC expects its inputs."""

from __future__ import annotations

import numpy as np


def l2_normalize(x_nd: np.ndarray) -> np.ndarray:
    """Scale every row of float32 ``x_nd`` to unit L2 norm, in place; zero rows stay zero."""
    sq_n = np.einsum("nd,nd->n", x_nd, x_nd)
    # Squares of tiny or huge vectors under/overflow float32: redo those rows in float64.
    safe_n = (sq_n > 1e-30) & (sq_n < 1e30)
    x_nd /= np.sqrt(np.where(safe_n, sq_n, 1.0))[:, None]
    if not safe_n.all():
        rows = np.flatnonzero(~safe_n)
        x64 = x_nd[rows].astype(np.float64)
        norm = np.linalg.norm(x64, axis=1, keepdims=True)
        x_nd[rows] = x64 / np.where(norm > 0, norm, 1.0)
    return x_nd
