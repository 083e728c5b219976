"""The SPARC model: one sparse latent space shared by several streams.

Conventions
-----------
- Streams keep the order they were given in; ``S`` streams with dims ``d_s``,
  ``D = Σ d_s``, ``L`` latents, ``k`` active latents, batch ``B``.
- All streams live side by side in one set of tensors: ``W_enc`` [L, D] and ``W_dec``
  [L, D] (row l = latent l; stream s owns the columns ``cols[s]``), ``b_pre`` [D],
  ``b_lat`` [S, L]. So the summed logits of all streams are one product, and a decode
  gathers k rows that serve every stream at once. ``W_dec`` is the transpose of the
  paper's ``W_dec^s`` ∈ R^{d_s×L}: each latent's decoder direction is a row, of unit norm
  within each stream's columns.
- Inputs are expected L2-normalised per vector (the feature store does it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from sparc.errors import SparcError
from sparc.model import exclusive, files, usae
from sparc.model import kernels as kernel_paths
from sparc.model.config import SPARCConfig, TopK
from sparc.model.engine import StepEngine
from sparc.model.forward import training_forward
from sparc.model.kernels import Kernels, uniform_crow
from sparc.model.kernels.autograd import DecodeSelected, SelectLogits
from sparc.model.methods import METHODS
from sparc.model.outputs import Chosen, ForwardOutput, SparseCode, StreamLogits
from sparc.model.selection import Context, Selection, selection_rule


class SPARC(nn.Module):
    """Concept-aligned sparse autoencoder over several streams.

    Parameters
    ----------
    streams
        Stream name → input dimension, in a fixed order.
    cfg
        Hyperparameters; see :class:`SPARCConfig`.
    kernels
        The kernel path's choice (:mod:`sparc.model.kernels`): ``auto``, ``fused``,
        ``triton`` or ``pytorch``; default ``SPARC_KERNELS``, else ``auto``. The path that
        runs is resolved for the weights' device and dtype (:attr:`kernels`).
    """

    def __init__(
        self,
        streams: Mapping[str, int],
        cfg: SPARCConfig = SPARCConfig(),
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        kernels: str | None = None,
    ):
        super().__init__()
        if not streams:
            raise SparcError("a SPARC model needs at least one stream")
        for name, dim in streams.items():
            if not isinstance(dim, int) or dim < 1:
                raise SparcError(f"stream {name!r} has invalid dimension {dim!r}")
        self.cfg = cfg
        self.streams: dict[str, int] = dict(streams)
        self.names: list[str] = list(self.streams)
        self.cols: list[slice] = []
        offset = 0
        for dim in self.streams.values():
            self.cols.append(slice(offset, offset + dim))
            offset += dim
        L, D, S = cfg.n_latents, offset, len(self.names)
        kw = {"device": device, "dtype": dtype}
        self.W_enc = nn.Parameter(torch.empty(L, D, **kw))
        self.W_dec = nn.Parameter(torch.empty(L, D, **kw))
        self.b_pre = nn.Parameter(torch.zeros(D, **kw))
        self.b_lat = nn.Parameter(torch.zeros(S, L, **kw))
        self.register_buffer(
            "samples_since_fired", torch.zeros(S, L, dtype=torch.int64, device=device)
        )
        if n_thresholds := selection_rule(cfg.topk).n_thresholds(S):
            # BatchTopK's inference thresholds, estimated in training (negative: not yet).
            self.register_buffer("batch_threshold", torch.full((n_thresholds,), -1.0, **kw))
        if cfg.exclusive:  # each latent's owning stream (−1: shared), from the config: not saved
            self.register_buffer("latent_owner", exclusive.owners(cfg.exclusive, L, self.names).to(device),
                                 persistent=False)
        if METHODS.get(cfg.method).sampled_source:  # USAE's (seed, steps drawn), saved with the weights
            self.register_buffer("source_draws", torch.zeros(2, dtype=torch.int64, device=device))
        # Checked when used (use_kernels), not here: a model is often built on the CPU
        # and moved to the device its path runs on.
        self.kernel_choice = kernel_paths.default_choice() if kernels is None else kernels
        """The kernel path's choice (:meth:`use_kernels`)."""
        if self.kernel_choice not in kernel_paths.CHOICES:
            raise SparcError(f"kernels must be one of {', '.join(kernel_paths.CHOICES)}, got {self.kernel_choice!r}")
        self.reset_parameters()

    # ------------------------------------------------------------------ set-up

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The original's init: encoder U(±1/√d_s), decoder = encoder, unit rows."""
        for col, dim in zip(self.cols, self.streams.values()):
            bound = 1 / math.sqrt(dim)
            self.W_enc[:, col].uniform_(-bound, bound)
        if self.cfg.exclusive:
            exclusive.zero_outside_(self)
        self.W_dec.copy_(self.W_enc)
        self.normalize_decoder_()
        self.b_pre.zero_()
        self.b_lat.zero_()
        self.samples_since_fired.zero_()
        if hasattr(self, "batch_threshold"):
            self.batch_threshold.fill_(-1)
        if hasattr(self, "source_draws"):
            self.source_draws.copy_(usae.new_state())

    @property
    def n_latents(self) -> int:
        return self.cfg.n_latents

    @property
    def block_bounds(self) -> list[int]:
        """The streams' column bounds: stream s owns columns ``[bounds[s], bounds[s+1])``."""
        return [c.start for c in self.cols] + [self.cols[-1].stop]

    def use_kernels(self, choice: str) -> None:
        """Compute with the kernel path ``choice`` (:mod:`sparc.model.kernels`): ``auto``,
        ``fused``, ``triton`` or ``pytorch``; a one-line error if a forced path cannot run
        for this model's weights."""
        kernel_paths.check(choice, self.W_enc.device, self.W_enc.dtype)
        self.kernel_choice = choice

    @property
    def kernels(self) -> Kernels:
        """The kernels this model computes with: its choice resolved for its weights'
        device and dtype (so a model moved to a GPU takes the GPU's path)."""
        return kernel_paths.implementation(kernel_paths.resolve(self.kernel_choice, self.W_enc.device, self.W_enc.dtype))

    def stream_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SparcError(
                f"unknown stream {name!r}; this model has: {', '.join(self.names)}"
            ) from None

    def _streams_of(self, inputs: Mapping[str, Tensor]) -> list[int]:
        """Indices of the streams in ``inputs``, in model order, after checking them."""
        if not inputs:
            raise SparcError("no stream given; pass at least one of: " + ", ".join(self.names))
        ids = sorted(self.stream_index(name) for name in inputs)
        batch = None
        for i in ids:
            name, x = self.names[i], inputs[self.names[i]]
            if x.ndim != 2 or x.shape[1] != self.streams[name]:
                raise SparcError(
                    f"stream {name!r} has features of shape {tuple(x.shape)} but the model "
                    f"expects [batch, {self.streams[name]}]; use features from the same backbone"
                )
            if batch is not None and x.shape[0] != batch:
                raise SparcError("all streams of a batch must have the same number of rows")
            batch = x.shape[0]
        return ids

    # ------------------------------------------------------------------ encode

    def _side_by_side(self, inputs: Mapping[str, Tensor], ids: list[int]) -> Tensor:
        """[B, D]: the streams given side by side in the model's columns, zeros for
        the others (differentiable, so codes have gradients with respect to the inputs)."""
        B, dtype = inputs[self.names[ids[0]]].shape[0], self.W_enc.dtype
        return torch.cat([
            inputs[s].to(dtype) if i in ids else self.b_pre.new_zeros(B, d)
            for i, (s, d) in enumerate(self.streams.items())
        ], dim=1)

    @torch.no_grad()
    def _logits_of(self, ids: list[int], x_bd: Tensor) -> Tensor:
        """[S', B, L] logits of the streams ``ids`` (no gradient); under autocast in its
        dtype (the products written into one buffer would otherwise escape it)."""
        u_bd = x_bd - self.b_pre
        device_type = x_bd.device.type
        dt = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else self.W_enc.dtype
        # Dense logits per stream: the same flops as one GEMM over the concatenated
        # streams, and the per-stream values at the chosen latents come for free.
        logits_sbl = u_bd.new_empty(len(ids), x_bd.shape[0], self.n_latents, dtype=dt)
        for n, i in enumerate(ids):
            col = self.cols[i]
            torch.addmm(self.b_lat[i].to(dt), u_bd[:, col].to(dt), self.W_enc[:, col].t().to(dt), out=logits_sbl[n])
        return logits_sbl

    def selection_context(self, ids: list[int]) -> Context:
        """What a selection rule reads besides the logits of the streams ``ids``."""
        owner = getattr(self, "latent_owner", None)
        return Context(self.training, getattr(self, "batch_threshold", None), tuple(ids),
                       None if owner is None else owner >= 0)

    @torch.no_grad()
    def _choose(self, logits_sbl: Tensor, topk: TopK, ids: list[int], alone: bool = False) -> Selection:
        """The latents chosen from ``logits_sbl`` by the selection rule ``topk`` (each
        stream by itself with ``alone``)."""
        rule, ctx = selection_rule(topk), self.selection_context(ids)
        return (rule.choose_alone if alone else rule.choose)(logits_sbl, self.cfg.k, ctx)

    @property
    def joint_is_independent(self) -> bool:
        """Whether each stream chooses from its own logits only (local rules), so the
        joint encoding of a sample is its independent one."""
        return selection_rule(self.cfg.topk).per_stream

    def logits(self, inputs: Mapping[str, Tensor]) -> StreamLogits:
        """Encoder logits ``W_enc^s (x_s − b_pre^s) + b_lat^s`` of the streams given, in
        one pass and without gradient: the input of :meth:`select`.

        One set of logits serves several selections, so the joint and the independent
        codes of a batch cost one encoder pass (docs/method.md §1, §4).
        """
        ids = self._streams_of(inputs)
        logits_sbl = self._logits_of(ids, self._side_by_side(inputs, ids))
        return StreamLogits(tuple(self.names[i] for i in ids), logits_sbl)

    @torch.no_grad()
    def select(self, logits: StreamLogits, topk: TopK | None = None, *, alone: bool = False) -> dict[str, SparseCode]:
        """Sparse codes chosen from ``logits`` (no gradient).

        ``topk="global"`` picks one set of latents from the summed logits of the
        streams in ``logits`` (the joint code); ``"local"`` lets every stream pick its
        own. Default: the model's own rule. ``alone``: each stream encoded as if it
        were given alone under that rule — the *independent* encoding (for global TopK,
        local TopK). Equal, bitwise, to :meth:`encode` of the same inputs.

        A rule whose rows hold different numbers of latents (BatchTopK) pads the shorter
        rows with latents of value 0 (docs/method.md §1.8).
        """
        ids = [self.stream_index(s) for s in logits.streams]
        sel = self._choose(logits.logits, topk or self.cfg.topk, ids, alone)
        val_sbk = self._masked(torch.relu(logits.logits.gather(2, sel.idx)), sel.keep)
        return {s: SparseCode(sel.idx[n], val_sbk[n], self.n_latents) for n, s in enumerate(logits.streams)}

    @staticmethod
    def _masked(val_sbw: Tensor, keep: Tensor | None) -> Tensor:
        return val_sbw if keep is None else val_sbw * keep

    def _select(self, inputs: Mapping[str, Tensor], topk: TopK, *, engine: StepEngine | None = None,
                alone: bool = False) -> Chosen:
        """Choose the active latents of the streams given (each by itself with ``alone``).

        ``engine``: the training engine, whose certified bf16 encoder pass (where it is on)
        makes the choice of a certifiable rule with every stream present (docs/method.md
        §4.3) — the float32 path's latents, values to round-off, so kept out of
        :meth:`encode`, which is bitwise equal to :meth:`select`."""
        rule = selection_rule(topk)
        ids = self._streams_of(inputs)
        x_bd = self._side_by_side(inputs, ids)
        if (engine is not None and rule.certifiable and engine.certifies and len(ids) == len(self.names)
                and not self.cfg.exclusive  # its pass sums the logits as they are (docs/method.md §1.11)
                and x_bd.shape[0] > 0 and not alone):
            with torch.no_grad():
                u_bd = (x_bd - self.b_pre).contiguous()
                sel = engine.certified_global_topk(u_bd)

            def logits_at(a: int, latents: Tensor) -> Tensor:
                col, i = self.cols[ids[a]], ids[a]
                return torch.addmm(self.b_lat[i, latents], u_bd[:, col], self.W_enc[latents, col].t())

            return Chosen(ids, Selection(sel.idx.expand(len(ids), -1, -1), None), sel.pre, logits_at, x_bd, None)
        logits_sbl = self._logits_of(ids, x_bd)
        chosen = self._choose(logits_sbl, topk, ids, alone)
        return Chosen(ids, chosen, logits_sbl.gather(2, chosen.idx), lambda a, latents: logits_sbl[a][:, latents], x_bd,
                      logits_sbl)

    def choose_for_step(self, inputs: Mapping[str, Tensor], *, engine: StepEngine | None = None) -> Chosen:
        """The training forward's choice of latents under the model's rule (:mod:`sparc.model.forward`)."""
        return self._select(inputs, self.cfg.topk, engine=engine)

    def values_at(self, ids, idx_sbk, pre_sbk, x_bd, *, engine: StepEngine | None = None,
                  keep: Tensor | None = None) -> Tensor:
        """[S', B, k'] encoder values (before the ReLU) at ``idx_sbk``, differentiable;
        ``pre_sbk``: the same values without gradient. ``engine``: the training forward's,
        whose gradient buffer and step in backward W_enc may take."""
        return SelectLogits.apply(
            self.kernels, self.W_enc, self.b_pre, self.b_lat, x_bd, pre_sbk, idx_sbk,
            tuple(ids), tuple(self.cols[i] for i in ids),
            None if engine is None else engine.grad_buffer("W_enc"),
            None if engine is None else engine.table_step("W_enc"), keep,
        )

    def encode(
        self, inputs: Mapping[str, Tensor], *, topk: TopK | None = None, alone: bool = False
    ) -> dict[str, SparseCode]:
        """Sparse codes of any subset of streams, differentiable.

        Under global TopK the latents are chosen from the summed logits of the streams
        given, so encoding one stream alone (or passing ``alone=True``) gives the
        independent encoding used to test alignment honestly. In eval mode a BatchTopK
        model thresholds each row's logits (docs/method.md §1.8), so a row's code does
        not depend on its batch; its codes pad the shorter rows with values 0.
        """
        c = self._select(inputs, topk or self.cfg.topk, alone=alone)
        val_sbk = self._masked(torch.relu(self.values_at(c.ids, c.selection.idx, c.pre, c.x_bd)), c.selection.keep)
        return {
            self.names[i]: SparseCode(c.selection.idx[n], val_sbk[n], self.n_latents)
            for n, i in enumerate(c.ids)
        }

    def latent_logits(self, stream: str, x: Tensor, latents: Tensor) -> Tensor:
        """Encoder logits ``h_s[l] = W_enc^s[l]·(x − b_pre^s) + b_lat^s[l]`` of one stream at
        chosen latents, before any TopK: ``x`` [B, d_s], ``latents`` [B, m] (or [m], the
        same for every row) → [B, m], differentiable with respect to ``x``. What a latent
        would read from an input whether or not TopK keeps it (localisation's ``dense``
        target, docs/method.md §5.7)."""
        i = self.stream_index(stream)
        col = self.cols[i]
        if x.ndim != 2 or x.shape[1] != self.streams[stream]:
            raise SparcError(f"stream {stream!r} has features of shape {tuple(x.shape)} but the model "
                             f"expects [batch, {self.streams[stream]}]")
        idx = latents.to(x.device).long()
        if idx.ndim == 1:
            idx = idx.expand(x.shape[0], -1)
        rows = self.W_enc[:, col][idx]                      # [B, m, d_s]
        u = (x.to(self.W_enc.dtype) - self.b_pre[col])[:, None, :]
        return (rows * u).sum(-1) + self.b_lat[i][idx]

    # ------------------------------------------------------------------ decode

    def _decode_rows(self, code: SparseCode, cols: slice) -> Tensor:
        B, k = code.indices.shape
        return DecodeSelected.apply(self.kernels, self.W_dec[:, cols], uniform_crow(B, k, code.indices.device),
                                    code.indices.reshape(-1), code.values.reshape(-1).to(self.W_dec.dtype))

    def decode(self, code: SparseCode, stream: str) -> Tensor:
        """Reconstruct ``stream`` [batch, d_stream] from any code (its own or another's)."""
        col = self.cols[self.stream_index(stream)]
        return self._decode_rows(code, col) + self.b_pre[col]

    def decode_all(self, code: SparseCode) -> dict[str, Tensor]:
        """Reconstruct every stream from one code at once: stream → [batch, d_stream].

        The k decoder rows of a sample are read once for all streams (they share the
        latent ids), so this costs one decode, not S.
        """
        out_bd = self._decode_rows(code, slice(None)) + self.b_pre
        return {s: out_bd[:, col] for s, col in zip(self.names, self.cols)}

    @torch.no_grad()
    def decoder_directions(self, stream: str) -> Tensor:
        """[L, d_s]: row ``l`` is latent ``l``'s decoder direction in ``stream`` (column
        ``l`` of the paper's ``W_dec^s``), unit norm (docs/method.md §1.7). A detached
        copy: what decoding a code with value 1 at latent ``l`` adds to ``b_pre^s``."""
        return self.W_dec[:, self.cols[self.stream_index(stream)]].detach().clone()

    # ------------------------------------------------------------------ forward

    def forward(self, inputs: Mapping[str, Tensor], *, engine: StepEngine | None = None) -> ForwardOutput:
        """Encode, self- and cross-reconstruct the streams given, and compute the loss.

        In training mode this also advances the dead-latent counters of those streams
        (before AuxK picks its latents, as the original does). ``engine``: the training
        engine that makes the step fast (:mod:`sparc.model.engine`); the losses are the
        same without one, up to the certified selection's round-off.
        """
        return training_forward(self, inputs, engine)

    # ------------------------------------------------------------------ dead latents

    @torch.no_grad()
    def count_firing(self, ids: list[int], idx_sbk: Tensor, val_sbk: Tensor,
                      reduce: Callable[[Tensor], None] | None) -> None:
        n, B = idx_sbk.shape[:2]
        # fired_sl[a, l]: how many of stream a's rows fired latent l (one scatter, no
        # boolean indexing); with a reduction, the count over every process, and the
        # processes' rows summed in the last slot.
        packed = torch.zeros(n * self.n_latents + 1, dtype=torch.int64, device=idx_sbk.device)
        fired_sl = packed[:-1].view(n, self.n_latents)
        fired_sl.scatter_add_(1, idx_sbk.reshape(n, -1), (val_sbk > self.cfg.fire_threshold).reshape(n, -1).long())
        packed[-1] = B
        if reduce is not None:  # a data-parallel run's engine (docs/method.md §2.3)
            reduce(packed)
        rows = packed[-1]
        for a, i in enumerate(ids):
            self.samples_since_fired[i].add_(rows).masked_fill_(fired_sl[a] > 0, 0)

    def dead_mask(self, after_samples: int | None = None) -> Tensor:
        """[S, L] bool: latents that have not fired in a stream for ``after_samples``
        training samples (default: the config's ``dead_after_samples``, AuxK's threshold)."""
        dead = self.samples_since_fired >= (self.cfg.dead_after_samples if after_samples is None else after_samples)
        return dead & exclusive.allowed(self) if self.cfg.exclusive else dead  # never dead where it does not belong

    @torch.no_grad()
    def reinit_latents_(self, stream: str, latents: Tensor, *, std: float,
                        generator: torch.Generator | None = None) -> list[tuple[nn.Parameter, tuple]]:
        """Start ``latents`` of ``stream`` afresh: encoder rows ~ N(0, std²), decoder rows
        their unit-norm copies, latent bias 0, firing counter 0 (docs/method.md §2).

        Returns the (parameter, index) slices it wrote, so that an optimizer can reset
        its state there too.
        """
        i = self.stream_index(stream)
        col = self.cols[i]
        rows = torch.randn(latents.numel(), col.stop - col.start, generator=generator, dtype=self.W_enc.dtype)
        rows = rows.to(self.W_enc.device) * std
        self.W_enc[latents, col] = rows
        self.W_dec[latents, col] = rows / rows.norm(dim=1, keepdim=True)
        self.b_lat[i, latents] = 0
        self.samples_since_fired[i, latents] = 0
        return [(self.W_enc, (latents, col)), (self.W_dec, (latents, col)), (self.b_lat, (i, latents))]

    @torch.no_grad()
    def set_pre_bias_(self, values: Mapping[str, Tensor]) -> None:
        """Set the pre-bias ``b_pre^s`` of each stream in ``values`` (stream → [d_s])."""
        for name, v in values.items():
            col = self.cols[self.stream_index(name)]
            if v.shape != (col.stop - col.start,):
                raise SparcError(f"pre-bias of stream {name!r} must have shape [{col.stop - col.start}], "
                                 f"got {list(v.shape)}")
            self.b_pre[col] = v.to(self.b_pre.dtype)

    # ------------------------------------------------------------------ decoder constraint

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale each latent's decoder row to unit norm within every stream's columns."""
        self.kernels.normalize_rows_(self.W_dec, self.block_bounds)

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Drop the gradient component along each (unit) decoder row, per stream, so a
        step moves the rows along the sphere. Call between backward and the step."""
        if self.W_dec.grad is not None:
            self.kernels.remove_parallel_(self.W_dec, self.W_dec.grad, self.block_bounds)

    # ------------------------------------------------------------------ save / load

    def config_dict(self) -> dict:
        """What ``config.json`` holds (:mod:`sparc.model.files`)."""
        return files.config_dict(self)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into directory ``path``."""
        return files.save(self, path)

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> SPARC:
        """Load a model saved by :meth:`save` from its folder (a finished run is one; a
        run still training: :func:`sparc.train.rundir.load_model`)."""
        return files.load(cls, path, device)

    @classmethod
    def from_pretrained(cls, name: str | Path, *, revision: str | None = None, device: str | torch.device = "cpu",
                        cache_dir: str | Path | None = None, token: str | bool | None = None) -> SPARC:
        """A model from a local folder, or from the Hugging Face Hub repository ``org/name``
        (downloaded into its cache; read from the cache alone with ``HF_HUB_OFFLINE=1``);
        see :mod:`sparc.model.hub`."""
        from sparc.model.hub import from_pretrained

        return from_pretrained(name, revision=revision, device=str(device), cache_dir=cache_dir, token=token)

    def save_pretrained(self, folder: str | Path, *, card: str | None = None) -> Path:
        """Write the model (config.json, model.safetensors) and, if given, a model card
        (README.md) into ``folder``, as a Hub repository holds them (:mod:`sparc.model.hub`)."""
        from sparc.model.hub import save_pretrained

        return save_pretrained(self, folder, card=card)

    @classmethod
    def from_reference(cls, source, **kwargs) -> SPARC:
        """Import the original code's checkpoint; see :func:`sparc.model.reference.from_reference`."""
        from sparc.model.reference import from_reference

        return from_reference(source, **kwargs)

    def check_state(self, state: Mapping[str, Tensor], *, source: str) -> None:
        """One-line errors for tensors of ``state`` missing or of another shape than this
        model's (which may live on the meta device: nothing is allocated)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        if missing:
            raise SparcError(f"{source} lacks tensors {missing}; it is not a sparc model of this version")
        for name, t in own.items():
            if tuple(state[name].shape) != tuple(t.shape):
                raise SparcError(
                    f"{source}: tensor {name} has shape {tuple(state[name].shape)}, expected "
                    f"{tuple(t.shape)} from config.json; the files do not belong together"
                )

    def load_state_dict_checked(self, state: Mapping[str, Tensor], *, source: str) -> None:
        """``load_state_dict`` with one-line errors for missing keys and shape mismatches."""
        self.check_state(state, source=source)
        self.load_state_dict({name: state[name] for name in self.state_dict()})

