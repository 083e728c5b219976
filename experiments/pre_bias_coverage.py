"""How many latents a freshly initialised model can choose at all, with the pre-bias at
zero (the original's) or at the mean of the first training rows (as the trainer's
``--pre-bias-init mean`` does with its first batch).

    python experiments/pre_bias_coverage.py STORE [--n-latents 2048] [--k 16] [--seed 42]

Encodes every training row of STORE with an untrained model (joint encoding) and prints,
per TopK type and pre-bias start, how many distinct latents fire on at least one row in
each stream. A latent that no row selects gets no gradient from the main loss.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sparc.data import FeatureStore
from sparc.model import SPARC, SPARCConfig
from sparc.train.pre_bias import init_pre_bias_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--n-latents", type=int, default=2048)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch-size", type=int, default=256, help="rows the mean is taken over")
    args = ap.parse_args()
    store = FeatureStore.open(args.store)
    rows = store.split_rows("train")
    x = {s: torch.from_numpy(np.asarray(store.features(s))[rows]) for s in store.streams}
    first = {s: v[: args.batch_size] for s, v in x.items()}
    print(f"{len(rows):,} training rows, L = {args.n_latents}, k = {args.k}: latents chosen for at least one row")
    for topk in ("global", "local"):
        for init in ("zero", "mean"):
            torch.manual_seed(args.seed)
            model = SPARC(store.streams, SPARCConfig(n_latents=args.n_latents, k=args.k, topk=topk)).eval()
            init_pre_bias_(model, first, init)
            with torch.no_grad():
                codes = model.encode(x)
            used = {s: int(torch.unique(c.indices[c.values > 0]).numel()) for s, c in codes.items()}
            print(f"  {topk:6s} TopK, pre-bias {init:4s}: " + ", ".join(f"{s} {n:,}" for s, n in used.items()))


if __name__ == "__main__":
    main()
