"""The literal dense formulation of SPARC, as the original code computes it.

Every logit matrix is dense, every decode is a dense [B, L] × [L, d] product and the
AuxK code is a top-k over logits masked to the dead latents. It is slow by design: it
is the oracle the efficient model is tested against, and the baseline of
``benchmarks/train_step.py``. It covers the methods too: BatchTopK in training (the top
B·k of the batch's summed or per-stream logits, as a dense mask) and Matryoshka (each
prefix's code, masked to latents below its size, decoded densely on its own) and USAE
(in training the one source drawn, encoded alone, decoding every stream; the NMSE
summed over the targets).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparc.model import SPARC
from sparc.model.usae import drawn


def dense_nmse(recon: Tensor, x: Tensor) -> Tensor:
    return (((recon - x) ** 2).sum(-1) / (x**2).sum(-1)).mean()


class DenseSPARC(nn.Module):
    """Per-stream encoders/decoders in the original's shapes (decoder [d, L])."""

    def __init__(self, model: SPARC):
        super().__init__()
        self.cfg, self.names = model.cfg, list(model.names)
        self.enc = nn.ParameterDict()
        self.dec = nn.ParameterDict()
        self.pre = nn.ParameterDict()
        self.lat = nn.ParameterDict()
        with torch.no_grad():
            for i, (s, col) in enumerate(zip(model.names, model.cols)):
                self.enc[s] = nn.Parameter(model.W_enc[:, col].clone())       # [L, d]
                self.dec[s] = nn.Parameter(model.W_dec[:, col].t().clone())   # [d, L]
                self.pre[s] = nn.Parameter(model.b_pre[col].clone())
                self.lat[s] = nn.Parameter(model.b_lat[i].clone())
        self.register_buffer("counters", model.samples_since_fired.clone())
        # Stream-exclusive latents: the weights are those of the dense model times the
        # mask of where each latent belongs, so their gradient is the dense one there
        # and none elsewhere (docs/method.md §1.11).
        owner = getattr(model, "latent_owner", torch.full((model.n_latents,), -1))
        self.exclusive = owner >= 0
        self.allowed = {s: ((owner == -1) | (owner == i)).to(model.W_enc.dtype) for i, s in enumerate(self.names)}
        if hasattr(model, "source_draws"):
            self.register_buffer("draws", model.source_draws.clone())

    def forward(self, inputs: dict[str, Tensor]):
        cfg = self.cfg
        targets = names = [s for s in self.names if s in inputs]
        if cfg.method == "usae" and self.training:  # the source drawn, as sparc.model.usae specifies
            seed, count = (int(v) for v in self.draws)
            names = [targets[drawn(seed, count, len(targets))]]
            self.draws[1] += 1
        enc = {s: self.enc[s] * self.allowed[s][:, None] for s in self.names}
        dec = {s: self.dec[s] * self.allowed[s] for s in self.names}
        logits = {s: (inputs[s] - self.pre[s]) @ enc[s].t() + self.lat[s] * self.allowed[s] for s in names}
        codes = {}
        if cfg.topk in ("batch-global", "batch-local"):
            B, L = logits[names[0]].shape
            scores = ({s: torch.stack([logits[t] for t in names]).sum(0) for s in names} if cfg.topk == "batch-global"
                      else logits)
            for s in names:
                top = scores[s].detach().flatten().topk(B * cfg.k).indices
                mask = torch.zeros(B * L, dtype=logits[s].dtype).scatter(0, top, 1.0).view(B, L)
                codes[s] = torch.relu(logits[s]) * mask
        elif cfg.topk == "global":
            score = torch.stack([logits[s] for s in names]).sum(0)
            if len(names) > 1:  # an exclusive latent's one logit counts for every stream given
                score = torch.where(self.exclusive, score * len(names), score)
            idx = score.topk(cfg.k, dim=1).indices
            for s in names:
                codes[s] = torch.zeros_like(logits[s]).scatter(1, idx, torch.relu(logits[s].gather(1, idx)))
        else:
            for s in names:
                top = logits[s].topk(cfg.k, dim=1)
                codes[s] = torch.zeros_like(logits[s]).scatter(1, top.indices, torch.relu(top.values))
        recons = {s: codes[s] @ dec[s].t() + self.pre[s] for s in names}
        cross = {
            (t, s): codes[s] @ dec[t].t() + self.pre[t] for t in targets for s in names if s != t
        }
        if self.training:
            B = next(iter(inputs.values())).shape[0]
            for s in names:
                i = self.names.index(s)
                fired = (codes[s] > cfg.fire_threshold).any(0)
                self.counters[i] = torch.where(fired, 0, self.counters[i] + B)
        auxk = {}
        for s in names:
            dead = (self.counters[self.names.index(s)] >= cfg.dead_after_samples) & (self.allowed[s] > 0)
            if cfg.auxk == 0 or not dead.any():
                auxk[s] = torch.zeros(())
                continue
            masked = logits[s] * dead
            top = masked.topk(cfg.auxk, dim=1)
            e = torch.zeros_like(masked).scatter(1, top.indices, torch.relu(top.values))
            aux = e @ dec[s].t() + self.pre[s]
            auxk[s] = dense_nmse(aux, inputs[s] - recons[s].detach() + self.pre[s].detach())
        self_nmse = {s: dense_nmse(recons[s], inputs[s]) for s in names}
        cross_nmse = {ts: dense_nmse(r, inputs[ts[0]]) for ts, r in cross.items()}
        if cfg.matryoshka:
            # Matryoshka: every prefix's code decodes every stream on its own; the
            # reconstruction terms are the mean over prefixes (docs/method.md §1.9).
            terms = []
            for m in cfg.matryoshka:
                cut = {s: codes[s][:, :m] for s in names}
                own = torch.stack([dense_nmse(cut[s] @ dec[s][:, :m].t() + self.pre[s], inputs[s])
                                   for s in names]).mean()
                pairs = [dense_nmse(cut[s] @ dec[t][:, :m].t() + self.pre[t], inputs[t])
                         for t in names for s in names if s != t]
                if pairs and cfg.cross_coef:
                    own = own + cfg.cross_coef * torch.stack(pairs).mean()
                terms.append(own)
            total = torch.stack(terms).mean()
        elif cfg.method == "usae":  # each source's NMSE summed over the targets, mean over the sources
            pairs = [*self_nmse.values(), *(cfg.cross_coef * v for v in cross_nmse.values())]
            total = torch.stack(pairs).sum() / len(names)
        else:
            total = torch.stack(list(self_nmse.values())).mean()
        if cfg.auxk and cfg.auxk_coef:
            total = total + cfg.auxk_coef * torch.stack(list(auxk.values())).mean()
        if cross_nmse and cfg.cross_coef and not cfg.matryoshka and cfg.method != "usae":
            total = total + cfg.cross_coef * torch.stack(list(cross_nmse.values())).mean()
        return codes, recons, cross, total, self_nmse, cross_nmse, auxk

    @torch.no_grad()
    def constrain_and_normalize_(self, optimizer: torch.optim.Optimizer) -> None:
        """The decoder constraint around the optimizer step (columns of [d, L])."""
        for s in self.names:
            w, g = self.dec[s], self.dec[s].grad
            if g is not None:
                g.sub_((w * g).sum(0, keepdim=True) * w)
        optimizer.step()
        for s in self.names:
            self.dec[s].div_(self.dec[s].norm(dim=0, keepdim=True).clamp_min(torch.finfo(self.dec[s].dtype).tiny))
