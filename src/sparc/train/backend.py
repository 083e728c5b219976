"""The backend a run computes with: its kernel path and its encoder selection.

Both set the run's rounding (docs/method.md §4.2–4.3): the fused, Triton and PyTorch
kernels agree to round-off, not bit for bit, and the certified bf16 selection reads
its values from other dots than the float32 product. So a run records the backend it
started with, resolved for its device (never ``auto``), and a resumed run — on this
machine or another — keeps it: a resume repeats the uninterrupted run bit for bit only
on the same path. A resume whose recorded path cannot run here is refused, naming the
option that continues on another path. The trainer gives the kernel path to the model
(:meth:`sparc.model.SPARC.use_kernels`) and the selection to its training engine
(:class:`sparc.model.engine.StepEngine`): nothing is set for the whole process, so two
models in one process may compute on two paths.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

from sparc.device import check_device
from sparc.errors import SparcError
from sparc.model import certified, kernels


@dataclass(frozen=True)
class Backend:
    """A kernel path and an encoder selection; ``auto`` in a request means "decide for
    the device" (a fresh run) or "as recorded" (a resumed run)."""

    kernels: Literal["auto", "fused", "triton", "pytorch"] = "auto"
    """Sparse kernels (docs/method.md §4.2)."""
    bf16_select: Literal["auto", "on", "off"] = "auto"
    """The certified bf16 selection (docs/method.md §4.3)."""

    def __post_init__(self):
        if self.kernels not in kernels.CHOICES:
            raise SparcError(f"kernels must be one of {', '.join(kernels.CHOICES)}, got {self.kernels!r}")
        certified.resolve(self.bf16_select, "cpu")  # the same one-line error for a bad value

    def resolved(self, device: str) -> Backend:
        """Each ``auto`` decided for float32 weights on ``device``: from ``SPARC_KERNELS`` /
        ``SPARC_BF16_SELECT`` where set, else from the hardware."""
        dev = torch.device(check_device(device))
        # A path asked for by name must run here (one-line error otherwise); auto falls back.
        k = (kernels.resolve(kernels.default_choice(), dev, torch.float32) if self.kernels == "auto"
             else kernels.check(self.kernels, dev, torch.float32))
        b = certified.default_choice() if self.bf16_select == "auto" else self.bf16_select
        return Backend(k, certified.resolve(b, dev.type))

    @property
    def is_resolved(self) -> bool:
        """Whether neither choice is ``auto`` (as a run records them)."""
        return "auto" not in (self.kernels, self.bf16_select)

    def over(self, recorded: Backend) -> Backend:
        """This request on a resumed run that recorded ``recorded``: each ``auto`` kept as recorded."""
        return Backend(recorded.kernels if self.kernels == "auto" else self.kernels,
                       recorded.bf16_select if self.bf16_select == "auto" else self.bf16_select)

    def check(self, device: str, *, run: str = "this run") -> None:
        """Nothing if this (resolved) backend runs on ``device``; else a one-line error
        saying why not and which option continues on another path."""
        if not self.is_resolved:
            raise ValueError(f"check() needs a resolved backend, got {self}")  # callers resolve first
        try:
            runs = kernels.check(self.kernels, torch.device(device), torch.float32)
        except SparcError as e:
            runs, why = None, str(e).split(";")[0]
        else:
            why = f"they do not run on {device}"
        if runs != self.kernels:
            other = "pytorch" if self.kernels != "pytorch" else "auto"
            raise SparcError(f"{run} computes with the {self.kernels} kernels, which cannot run here ({why}); "
                             f"pass --kernels {other} to continue on another rounding path (the rest of the run "
                             "will not repeat the uninterrupted one bit for bit)")

    def describe_change(self, recorded: Backend) -> str | None:
        """A line for a resume that leaves the recorded backend, or None when it keeps it."""
        changed = [f"--{f.name.replace('_', '-')} {getattr(self, f.name)} (recorded: {getattr(recorded, f.name)})"
                   for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(recorded, f.name)]
        if not changed:
            return None
        return (f"continuing with {', '.join(changed)}: from here the run takes another rounding path and "
                "will not repeat the uninterrupted one bit for bit")
