"""Exact global TopK from a bfloat16 encoder pass, certified row by row (docs/method.md §4.3).

The encoder product is needed only to *choose* the k latents of each sample; their values
can be computed exactly afterwards. So the choice is made from a bfloat16 product (4–6×
faster than float32 where the hardware has bf16 matrix units) and then made exact:

1. ``z̃ = bf16(u) · bf16(W_enc)ᵀ`` (float32 accumulation, one rounding to bf16), plus the
   summed latent biases; its top ``k + m`` latents are the *candidates*.
2. The candidates' per-stream logits are recomputed in float32 from the float32 weights
   (:meth:`sparc.model.kernels.base.Kernels.stream_dots`), and the top k of their sums chosen.
3. A per-row certificate from a rounding-error bound of the bf16 product proves that no
   latent outside the candidates can beat the k-th chosen one. For every latent l,
   with ``u = ũ + Δu`` and ``W = W̃ + ΔW`` per stream block s,

       z_l = ũ·W̃_l + Σ_s (ũ_s·ΔW_ls + Δu_s·W_ls) + b_l, so
       z_l ≤ out_l + 2⁻⁸|out_l| + Σ_s (‖ũ_s‖ (‖ΔW_ls‖ + γ ‖W̃_ls‖) + ‖Δu_s‖ ‖W_ls‖) + b_l

   (Cauchy–Schwarz per block; ``γ`` bounds the float32 accumulation over D terms, 2⁻⁸ the
   output's rounding to bf16, bounded through the rounded output õ_l: |out_l − õ_l| ≤
   2⁻⁸|õ_l|/(1 − 2⁻⁸)). Over the non-candidates this is at most the candidates' least
   ``z̃`` plus 2⁻⁸·min(max|õ|, |z̃_least| + max|b|) (õ + 2⁻⁸|õ| grows with õ, and a
   non-candidate has õ_l ≤ z̃_least − b_l) plus the error term with each stream's
   largest row norms. The row is certified when that lies below the k-th chosen sum by more than
   the float32 path's own round-off. Rows that cannot be certified get a second round
   with 4m extra candidates; those that fail again choose from a float32 product over
   all latents (their values from the same dots).

The result — indices, values, hence losses and gradients — is the float32 model's:
indices equal wherever float32 itself separates the k-th and (k+1)-th latent (a closer
tie is a tie in float32 too), values to round-off. ``tests/model/test_certified.py``
checks this, near-ties included.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.model import isa
from sparc.model.kernels import Kernels
from sparc.options import env_choice

BF16_UNIT = 2.0**-8
"""Unit roundoff of bfloat16 (8 significant bits, round to nearest)."""
FP32_UNIT = 2.0**-24

CHOICES = ("auto", "on", "off")


def default_choice() -> str:
    """The choice of a training engine built without one: ``SPARC_BF16_SELECT``, else ``auto``."""
    return env_choice("SPARC_BF16_SELECT", CHOICES)


def resolve(choice: str, device_type: str) -> str:
    """``"on"`` (where this device has bf16 matrix units: CPUs with AVX512-BF16 or AMX,
    CUDA GPUs with bf16) or ``"off"`` (float32 selection): what ``choice`` (one of
    :data:`CHOICES`) means on this device."""
    if choice not in CHOICES:
        raise SparcError(f"bf16 selection must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "auto":
        return "on" if _bf16_fast(device_type) else "off"
    return choice


@functools.cache
def _bf16_fast(device_type: str) -> bool:
    """Whether this device has bf16 matrix units that PyTorch uses: CUDA GPUs with bf16;
    CPUs with AVX512-BF16 or AMX (4–6× float32's product at paper size, BENCHMARKS.md)
    under a oneDNN build. Decided from the hardware alone, never by timing, so that every
    process on a machine takes the same path: the two paths' values differ in round-off,
    and a run, its resumption and a rerun must agree bit for bit."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and isa.onednn_allows_bf16()


class Candidates:
    """How many extra candidates m the selection takes beyond k. Rows whose certificate
    fails get a second round with 4m extra (each costs ~2.5 rows of the first round at
    m = k), and rows that fail again a float32 pass over W_enc (~3–8 ms for a batch at
    paper size). So m doubles when more than one row in 5 needs the second round (it
    would cost more than wider candidates for all) or more than one in 64 the float32
    pass; after ``patience`` batches with at most one row in 20 retried and none
    beyond that rate falling back, it halves (not below ``floor``), following the
    logits as training sharpens them. A few rows that no m short of all latents
    certifies (exact ties, an input equal to the pre-bias) take the fallback instead
    of widening every row's candidates for good."""

    def __init__(self, m: int, limit: int, *, floor: int = 16, patience: int = 100):
        self.m, self.limit, self.floor, self.patience = min(m, limit), limit, floor, patience
        self.clean = 0
        """Batches since the last widening (or the last halving) with few rows retried."""

    def update(self, n_retried: int, n_fallback: int, n_rows: int) -> None:
        if n_retried * 5 > n_rows or n_fallback * 64 > n_rows:
            self.m, self.clean = min(2 * self.m, self.limit), 0
            return
        if n_retried * 20 > n_rows:
            return
        self.clean += 1
        if self.clean >= self.patience and self.m > self.floor:
            self.m, self.clean = max(self.m // 2, self.floor), 0


class Shadow(NamedTuple):
    """The bf16 copy of W_enc and its error norms, valid for one version of W_enc."""

    key: tuple
    W16: Tensor
    """[L, D] bfloat16: W_enc rounded to nearest."""
    wn: Tensor
    """[S, L] float64: ‖W_enc[l, block s]‖."""
    dwn: Tensor
    """[S, L] float64: ‖W_enc[l, block s] − W16[l, block s]‖."""


def shadow_key(W_enc: Tensor, bounds: list[int]) -> tuple:
    """Identifies W_enc's current values: any in-place update bumps its version counter."""
    return (W_enc.data_ptr(), W_enc._version, tuple(W_enc.shape), tuple(bounds))


def shadow_of(W_enc: Tensor, bounds: list[int], cached: Shadow | None, kernels: Kernels) -> Shadow:
    """The shadow of W_enc's current values: ``cached`` if it was made from them (the
    fused optimizer step writes it, :mod:`sparc.train.optim`), else built now."""
    key = shadow_key(W_enc, bounds)
    if cached is not None and cached.key == key:
        return cached
    return Shadow(key, *kernels.bf16_shadow(W_enc.detach(), bounds))


class Selection(NamedTuple):
    idx: Tensor
    """[B, k] int64: the chosen latents, by decreasing summed logit."""
    pre: Tensor
    """[S, B, k]: each stream's logit at them (with latent bias, before the ReLU)."""
    n_fallback: int
    """Rows recomputed in float32 because their certificate failed in both rounds."""
    n_retried: int
    """Rows whose certificate failed with the first round's candidates."""


@torch.no_grad()
@torch.autocast("cuda", enabled=False)
@torch.autocast("cpu", enabled=False)  # float32's choice whatever the caller's autocast
def global_topk(u_bd: Tensor, W_enc: Tensor, b_lat: Tensor, bounds: list[int], k: int, m: int,
                shadow: Shadow, K: Kernels) -> Selection:
    """The global TopK of ``u = x − b_pre`` [B, D] (all S streams present) under ``W_enc``
    [L, D] and ``b_lat`` [S, L], chosen through the bf16 ``shadow`` with ``m`` extra
    candidates, certified; uncertified rows in float32; dots by the kernels ``K``."""
    B, D = u_bd.shape
    L, S = W_enc.shape[0], len(bounds) - 1
    # u's bf16 copy and, per stream block, ‖u_s‖ and ‖u_s − ũ_s‖ rounded up past their
    # summation error, in one pass (as for W_enc); ‖ũ_s‖ ≤ ‖u_s‖ + ‖u_s − ũ_s‖.
    u16, un_sb, dun_sb = K.bf16_shadow(u_bd, bounds)
    un, dun = (un_sb + dun_sb).t(), dun_sb.t()                                            # [B, S]
    blocks = list(zip(bounds[:-1], bounds[1:]))
    out16 = u16 @ shadow.W16.t()                                                         # [B, L]
    b_sum = b_lat.detach().sum(0)                                                        # [L]
    W, b = W_enc.detach(), b_lat.detach()
    # Every latent outside the candidates has z̃ ≤ the candidates' least, so its exact
    # logit is at most that plus the error bound (module docstring) with each stream's
    # largest row norms — a bound per row, no pass over [B, L].
    gamma = D * FP32_UNIT / (1 - D * FP32_UNIT)
    dw_max = (shadow.dwn + gamma * (1 + BF16_UNIT) * shadow.wn).max(1).values              # [S]
    w_max = shadow.wn.max(1).values                                                       # [S]
    err = (un @ dw_max + dun @ w_max).float()                                             # [B]
    # The float32 path's values lie within γ Σ_s ‖u_s‖‖W_ls‖ of the exact ones, like ours.
    slack = (2 * gamma * (un + dun) @ w_max).float()                                      # [B]

    def choose(rows: Tensor | None, n_cand: int) -> tuple[Tensor, Tensor, Tensor]:
        """(idx [R, k], pre [S, R, k], not certified [R]) of the rows given (None: all)
        from the top ``n_cand`` of the bf16 product."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        cand, z_least, abs_max = K.top_candidates(pick(out16), b_sum, n_cand)             # [R, n_cand], [R], [R]
        if n_cand < L:
            # out_l rounded to bf16 is within 2⁻⁸|out_l| of its float32 accumulation; |out_l|
            # is at most the row's largest, and since o + 2⁻⁸|o| grows with o, a non-candidate
            # (out_l ≤ z_least − b_l) is within 2⁻⁸(|z_least| + max|b|): the smaller of the two.
            out_max = torch.minimum(abs_max, z_least.abs() + b_sum.abs().max())
            ub_max = (z_least + out_max * (BF16_UNIT * 1.01) + z_least.abs() * 8 * FP32_UNIT
                      + pick(err) * (1 + 1e-5))
        else:
            ub_max = torch.full((cand.shape[0],), float("-inf"), device=u_bd.device)
        pre_c = K.stream_dots(cand, pick(u_bd), W, bounds, b)                              # [S, R, n_cand]
        top = pre_c.sum(0).topk(k, dim=1)
        least = top.values[:, -1]
        bad = ~(ub_max + pick(slack) + least.abs() * 4 * FP32_UNIT < least)
        return cand.gather(1, top.indices), pre_c.gather(2, top.indices.expand(S, -1, k)), bad

    idx, pre, bad = choose(None, min(L, k + m))
    n_retried = int(bad.sum())
    if n_retried and k + m < L:
        # A second round for those rows alone, from 4m extra candidates of the same
        # product: far cheaper than a float32 pass over W_enc, and the same dots, so a
        # row certified in either round gets the same latents and values.
        rows = bad.nonzero().squeeze(1)
        idx[rows], pre[:, rows], bad_rows = choose(rows, min(L, k + 4 * m))
        bad = torch.zeros_like(bad)
        bad[rows] = bad_rows
    n_bad = int(bad.sum())
    if n_bad:
        # These rows choose from a float32 product over all latents; their values come
        # from the same dots as the certified rows', so a row's values never depend on
        # whether it fell back (nor on m, which a resumed run starts afresh).
        rows = bad.nonzero().squeeze(1)
        u_rows = u_bd[rows]
        logits = torch.stack([torch.addmm(b_lat[s], u_rows[:, a:b], W_enc[:, a:b].t())
                              for s, (a, b) in enumerate(blocks)])                         # [S, n_bad, L]
        fidx = logits.sum(0).topk(k, dim=1).indices
        idx[rows] = fidx
        pre[:, rows] = K.stream_dots(fidx, u_rows, W, bounds, b)
    return Selection(idx, pre, n_bad, n_retried)
