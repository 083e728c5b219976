"""The training engine: what a training step needs beyond the model's maths.

A :class:`~sparc.model.SPARC` is parameters and maths; its :meth:`~sparc.model.SPARC.forward`
gives the same losses with or without an engine. A :class:`StepEngine` — built and owned
by the trainer, passed to the training forward — makes the step fast and data-parallel:

- the gradient buffers of the two [L, D] tables, kept across steps (docs/method.md §4.2);
- the optimizer step of those tables taken inside the backward pass, where the fused
  kernels serve them (:meth:`StepEngine.step_tables_in_backward`; the optimizer gives
  the steps, :class:`sparc.train.optim.SPARCAdam`);
- the firing counters shared by the processes of a data-parallel run (docs/method.md §2.3);
- the certified bf16 selection's state: whether it is on, its bf16 copy of W_enc and the
  width of its candidate lists (docs/method.md §4.3).

None of this is saved with the model; a resumed run rebuilds it (the candidate width
starts afresh, which changes no result: docs/method.md §4.3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sparc.model import certified
from sparc.model.kernels import TableStep

if TYPE_CHECKING:
    from sparc.model.sparc import SPARC


class StepEngine:
    """The training step's state for one model.

    Parameters
    ----------
    model
        The model it serves (its weights' device decides what ``auto`` means).
    bf16_select
        The certified bf16 selection: ``on``, ``off`` or ``auto`` (on where the device has
        bf16 matrix units); default ``SPARC_BF16_SELECT``, else ``auto``.
    gradient_buffers
        Write the two tables' gradients into buffers kept across steps, which become their
        ``.grad``: for loops of ``loss.backward()``, optimizer step,
        ``zero_grad(set_to_none=True)`` (the trainer's). A ``.grad`` held past the next
        backward is overwritten, and ``torch.autograd.grad`` does not see these two.
    reduce_firing
        Count firing over every process that trains this model on parts of one batch:
        ``reduce_firing(t)`` sums the int64 tensor ``t`` in place over the processes (e.g.
        ``torch.distributed.all_reduce``). Each training forward then advances the counters
        by the rows of all processes and resets a latent's counter where it fired in any
        of them, so every process keeps the counters one process would keep on the whole
        batch; every process must then run every training forward (zero rows if it has
        none). None: this process alone.
    """

    def __init__(self, model: SPARC, *, bf16_select: str | None = None, gradient_buffers: bool = True,
                 reduce_firing: Callable[[Tensor], None] | None = None):
        self.model = model
        choice = certified.default_choice() if bf16_select is None else bf16_select
        self.bf16_select = certified.resolve(choice, model.W_enc.device.type)
        """``"on"`` or ``"off"``, resolved for the model's device."""
        self.candidates = certified.Candidates(model.cfg.k, model.n_latents - model.cfg.k)
        """Extra candidates beyond k, adapted to the rows whose certificate fails."""
        self.shadow: certified.Shadow | None = None
        """The bf16 copy of W_enc, when the optimizer's step made it."""
        self.certified_stats = (0, 0)
        """(rows certified, rows chosen) by the certified selection."""
        self.reduce_firing = reduce_firing
        self._grad_buffers: dict[str, Tensor] | None = {} if gradient_buffers else None
        self._step_provider: Callable[[str], TableStep | None] | None = None

    # ------------------------------------------------------------------ selection

    @property
    def certifies(self) -> bool:
        """Whether global TopK is chosen through the certified bf16 pass."""
        return self.bf16_select == "on" and self.model.W_enc.dtype == torch.float32

    @torch.no_grad()
    def certified_global_topk(self, u_bd: Tensor) -> certified.Selection:
        """The model's global TopK of ``u = x − b_pre`` [B, D] (every stream present),
        through the certified bf16 pass (docs/method.md §4.3)."""
        m = self.model
        bounds = m.block_bounds
        sel = certified.global_topk(u_bd, m.W_enc, m.b_lat, bounds, m.cfg.k, self.candidates.m,
                                    certified.shadow_of(m.W_enc, bounds, self.shadow, m.kernels), m.kernels)
        rows = u_bd.shape[0]
        self.certified_stats = (self.certified_stats[0] + rows - sel.n_fallback, self.certified_stats[1] + rows)
        self.candidates.update(sel.n_retried, sel.n_fallback, rows)
        return sel

    # ------------------------------------------------------------------ the tables' gradients and steps

    def grad_buffer(self, name: str) -> Tensor | None:
        """The persistent gradient buffer of the model's table ``name`` (None: allocate as usual)."""
        if self._grad_buffers is None or not self.model.training:
            return None
        p = getattr(self.model, name)
        if not self.model.kernels.keeps_grad_buffers:
            return None
        buf = self._grad_buffers.get(name)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._grad_buffers[name] = torch.empty_like(p, memory_format=torch.contiguous_format)
        return buf

    def step_tables_in_backward(self, provider: Callable[[str], TableStep | None] | None) -> None:
        """Let the backward pass take the optimizer step of ``W_enc`` and ``W_dec``: at each
        training backward, ``provider(name)`` gives that table's step (or None, for its
        gradient as usual) and the fused kernels apply it while they form the gradient,
        which is then never written out (docs/method.md §4.2). Only the backward of a
        training forward given this engine steps them; the tables get no ``.grad``, so this
        is for a loop of one ``loss.backward()`` and the optimizer's ``step()`` for the
        other parameters (:class:`sparc.train.optim.SPARCAdam` with ``in_backward=True``,
        which refuses a second backward before its ``step()``). ``None``: off."""
        self._step_provider = provider

    def table_step(self, name: str) -> Callable[[], TableStep | None] | None:
        """What the backward of table ``name`` calls for its step (None: no step there)."""
        if self._step_provider is None or not self.model.training or not torch.is_grad_enabled():
            return None
        provider = self._step_provider
        return lambda: provider(name)
