"""What every kernel path offers: the :class:`Kernels` protocol, and the Adam step the
fused path takes inside the backward pass (:class:`TableStep`).

Sparse codes are the rows of a CSR matrix [R, L]: row r holds the entries
``col[crow[r]:crow[r+1]]`` (latent ids) with values ``val[...]``. Rows may have
different lengths, so the main codes (k entries) and the AuxK codes (k_aux entries) go
through one call. A weight table ``W_ld`` [L, D] holds one row per latent (the encoder
or the decoder of all streams side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from torch import Tensor


class TableStep(NamedTuple):
    """One Adam step of a weight table, taken by the fused kernels while the backward pass
    forms its gradient, so the gradient is never written out (docs/method.md §4.2;
    :meth:`sparc.train.optim.SPARCAdam.table_step` makes them)."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    scalars: tuple
    """(1 − β1, β2, 1 − β2, lr / bias correction 1, √bias correction 2, eps, tiny), in the table's dtype."""
    bounds: list[int]
    """The stream blocks' column bounds (the decoder constraint and the bf16 copy work per block)."""
    shadow: tuple[Tensor, Tensor, Tensor] | None
    """(W16 as int16, wn, dwn): where the encoder's new bf16 copy and norms go; None for the decoder."""
    done: Callable[[], None]
    """Called once the rows are stepped."""


class Kernels(Protocol):
    """The sparse primitives of the efficient formulation (docs/method.md §4). Every path
    computes the same maths; they differ in speed and in round-off. A path falls back to
    the PyTorch kernels for tensors it does not serve (another device or dtype)."""

    name: str
    """``"pytorch"``, ``"fused"`` or ``"triton"``."""
    steps_tables: bool
    """Whether :meth:`adam_step`, :meth:`spmm_t_step` and :meth:`spmm_t_sddmm_step` exist:
    the optimizer step taken in the kernels' pass over a table (fused path only)."""
    keeps_grad_buffers: bool
    """Whether the weight gradients may go into buffers kept across steps (a saving only
    where the kernels write the gradient themselves)."""

    def spmm(self, crow: Tensor, col: Tensor, val: Tensor, W_ld: Tensor, *, shared: tuple[int, int] = (1, 0),
             lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
        """[R, D] = Σ_{e in row r} val[e] · W[col[e]] (a decode). ``shared = (n, G)``: the
        first n·G rows are n blocks of G rows with the same latents block to block (the
        streams of a sample under global TopK), so each weight row is read once for them.
        ``lo``/``hi`` [R]: row r is decoded in its columns ``lo[r]:hi[r]`` only, 0 elsewhere."""
        ...

    def sddmm(self, crow: Tensor, col: Tensor, A_rd: Tensor, W_ld: Tensor, *,
              shared: tuple[int, int] = (1, 0)) -> Tensor:
        """[nnz] = W[col[e]] · A[row(e)] (a gather-dot)."""
        ...

    def spmm_t(self, crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, n_latents: int, *,
               arow: Tensor | None = None, lo: Tensor | None = None, hi: Tensor | None = None,
               out: Tensor | None = None, accumulate: bool = False) -> Tensor:
        """[L, D] = Σ_{e: col[e] = l} val[e] · A[row(e)] (a weight gradient). Row r reads
        ``A[arow[r], lo[r]:hi[r]]`` (default ``A[r]``, all columns); with ``out`` the result
        is written there (added with ``accumulate``) and ``out`` returned."""
        ...

    def spmm_t_sddmm(self, crow: Tensor, col: Tensor, val: Tensor, A_rd: Tensor, W_ld: Tensor, *,
                     out: Tensor | None = None, accumulate: bool = False, shared: tuple[int, int] = (1, 0),
                     lo: Tensor | None = None, hi: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(spmm_t(...), sddmm(...))``: a decode's weight and value gradients, row r in its
        columns ``lo[r]:hi[r]``."""
        ...

    def block_row_sum(self, W_ld: Tensor, coef_sl: Tensor, cols: list[slice]) -> Tensor:
        """[D] = Σ_l coef[i, l] · W[l, cols[i]] in the columns of each block i, 0 elsewhere."""
        ...

    def normalize_rows_(self, W_ld: Tensor, bounds: list[int]) -> None:
        """Scale each row to unit norm within every column block [bounds[i], bounds[i+1])."""
        ...

    def remove_parallel_(self, W_ld: Tensor, G_ld: Tensor, bounds: list[int]) -> None:
        """``G[l] −= (W[l]·G[l]) W[l]`` within every column block (W's rows unit there)."""
        ...

    def bf16_shadow(self, W_ld: Tensor, bounds: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        """(bfloat16 copy of W, wn [S, L], dwn [S, L]): per block the norms of each row and of
        its rounding error, rounded up (float64; docs/method.md §4.3)."""
        ...

    def stream_dots(self, idx_bm: Tensor, U_bd: Tensor, W_ld: Tensor, bounds: list[int],
                    bias_sl: Tensor | None = None) -> Tensor:
        """[S, B, m] = W[idx[b, j], block s] · U[b, block s] (+ bias[s, idx[b, j]])."""
        ...

    def top_candidates(self, Z16_bl: Tensor, bias_l: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """The n latents of largest ``float(Z16) + bias`` per row, their least, ``max |float(Z16)|``."""
        ...

    def block_sse(self, M_rd: Tensor, b_pre: Tensor, X_bd: Tensor, n: int,
                  cols: list[slice]) -> tuple[Tensor, Tensor]:
        """(num [n, B, T], den [B, T]), differentiable: every (source, target) NMSE's
        numerator and norm (docs/method.md §2.1)."""
        ...
