"""Adam with the decoder constraint, fused with the step where the kernels allow.

:class:`SPARCAdam` is ``torch.optim.Adam`` (same hyperparameters, same state and
``state_dict``, so checkpoints move between the two) whose :meth:`~SPARCAdam.step` also
applies the decoder constraint of docs/method.md §1.7 — drop the decoder gradient's
radial component, step, renormalise each decoder row per stream — so a training loop
calls only ``step()``.

With the fused CPU kernels (float32 weights, :mod:`sparc.model.kernels`), the model's two
[L, D] tables are stepped by one numba pass each instead of PyTorch's several: for
``W_dec`` projection, Adam and renormalisation read and write each row once; for
``W_enc`` the same pass writes the bf16 copy and norms the certified selection needs
next (docs/method.md §4.3), so the next forward does not build them. Everything else
(the biases; any other device or dtype) goes through ``torch.optim.Adam`` itself.

With ``in_backward=True`` those two passes move into the backward pass: the kernels
that form each table's gradient step the table row by row as they go, so the 84 MB
gradients are never written or read back (:meth:`SPARCAdam.table_step`). The step is
the same arithmetic; the tables get no ``.grad``, so this suits one backward per step
with nothing between backward and ``step()`` that reads the tables' gradients — the
trainer's single-process loop, not data-parallel training (whose gradients are summed
over processes before the step).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch.autograd.graph import increment_version

from sparc.errors import SparcError
from sparc.model import SPARC, certified
from sparc.model.engine import StepEngine
from sparc.model.kernels import TableStep


class SPARCAdam(torch.optim.Adam):
    """Adam over ``model``'s parameters, applying the decoder constraint in :meth:`step`.

    Parameters
    ----------
    model
        The SPARC model whose parameters are optimised (all of them, one group).
    lr, eps, betas
        As for ``torch.optim.Adam``.
    engine
        The model's training engine (:mod:`sparc.model.engine`): the fused step writes the
        bf16 copy its certified selection reads next, and with ``in_backward`` the
        engine's backward takes the tables' steps.
    in_backward
        Step ``W_enc`` and ``W_dec`` during the backward pass, where the fused kernels
        serve them (module docstring); needs the ``engine`` the training forward is given.
    """

    def __init__(self, model: SPARC, *, lr: float, eps: float = 1e-8, betas=(0.9, 0.999),
                 engine: StepEngine | None = None, in_backward: bool = False):
        if in_backward and engine is None:
            raise ValueError("in_backward=True needs the engine whose training forward takes the steps")
        fused_ok = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64,
                                                                      torch.float16, torch.bfloat16)
                       for p in model.parameters())
        super().__init__(model.parameters(), lr=lr, eps=eps, betas=betas, fused=fused_ok)
        self.model, self.engine = model, engine
        self._stepped: set[str] = set()  # tables stepped in backward since the last step()
        if engine is not None:
            # This optimizer now drives the engine: a hook left by an earlier one is
            # replaced (held weakly, so the engine does not keep the optimizer alive).
            ref = weakref.WeakMethod(self.table_step)
            engine.step_tables_in_backward((lambda name: (fn := ref()) and fn(name)) if in_backward else None)

    def _fused_tables(self) -> bool:
        m = self.model
        if len(self.param_groups) != 1 or self.param_groups[0].get("amsgrad") or self.param_groups[0].get(
                "weight_decay") or self.param_groups[0].get("maximize"):
            return False
        return m.kernels.steps_tables and all(p.device.type == "cpu" and p.dtype == torch.float32
                                              and p.is_contiguous() for p in (m.W_enc, m.W_dec))

    @torch.no_grad()
    def step(self, closure=None):
        """Project the decoder gradient, take the Adam step, renormalise the decoder."""
        if closure is not None:
            raise NotImplementedError("SPARCAdam.step takes no closure")
        m = self.model
        self._stepped.clear()
        if not self._fused_tables():
            m.remove_parallel_grad_()
            super().step()
            m.normalize_decoder_()
            return
        tables = [p for p in (m.W_enc, m.W_dec) if p.grad is not None]
        saved = [(p, p.grad) for p in tables]
        for p in tables:  # Adam itself steps the rest
            p.grad = None
        try:
            super().step()
        finally:
            for p, g in saved:
                p.grad = g
        for p in tables:
            self._step_table(p, decoder=p is m.W_dec)

    def table_step(self, name: str) -> TableStep | None:
        """The next Adam step of the model's table ``name`` ("W_enc" or "W_dec"), for the
        backward pass to take (``in_backward=True``, :meth:`StepEngine.step_tables_in_backward`);
        None where the fused kernels do not serve it (its gradient then goes to ``.grad``
        and :meth:`step` steps it)."""
        if not self._fused_tables():
            return None
        if name in self._stepped:
            raise SparcError(f"{name} was already stepped in a backward pass since the last optimizer step(): "
                             "with in_backward=True each backward must be followed by step() (no gradient "
                             "accumulation); use SPARCAdam(..., in_backward=False) for that")
        self._stepped.add(name)
        p = getattr(self.model, name)
        return self._prepare_table(p, decoder=p is self.model.W_dec)

    def _prepare_table(self, p: torch.Tensor, *, decoder: bool) -> TableStep:
        """Advance ``p``'s step count and give the step's state, scalars and bf16-copy buffers."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        step = float(state["step"])
        lr = float(group["lr"])
        bc1, bc2 = 1 - beta1**step, 1 - beta2**step
        engine = self.engine
        bounds = self.model.block_bounds
        f32 = np.float32
        S, (L, D) = len(bounds) - 1, p.shape
        shadow = None
        if not decoder and engine is not None and engine.certifies:
            old = engine.shadow  # made from the values this step replaces: its buffers are free
            if old is not None and old.W16.shape == (L, D) and old.wn.shape == (S, L):
                shadow = (old.W16.view(torch.int16), old.wn, old.dwn)
            else:
                wn = torch.empty(S, L, dtype=torch.float64)
                shadow = (torch.empty(L, D, dtype=torch.int16), wn, torch.empty_like(wn))

        def done() -> None:
            # Written through numpy: tell autograd (and the shadow's cache key) that p changed.
            increment_version(p)
            if shadow is not None:
                W16, wn, dwn = shadow
                engine.shadow = certified.Shadow(certified.shadow_key(p, bounds), W16.view(torch.bfloat16), wn, dwn)

        scalars = (f32(1 - beta1), f32(beta2), f32(1 - beta2), f32(lr / bc1), f32(bc2**0.5), f32(group["eps"]),
                   f32(torch.finfo(p.dtype).tiny))
        return TableStep(state["exp_avg"], state["exp_avg_sq"], scalars, bounds, shadow, done)

    def _step_table(self, p: torch.Tensor, *, decoder: bool) -> None:
        self.model.kernels.adam_step(p.detach(), p.grad, self._prepare_table(p, decoder=decoder), decoder=decoder)
