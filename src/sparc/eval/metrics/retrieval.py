"""Cross-stream retrieval for every ordered stream pair (docs/method.md §5.5).

Queries are a seeded sample of rows of stream s (all rows when asked); the gallery is
every row of the split in stream t, so R@K estimates the full-gallery figure. Three
representations, all compared by cosine:

- ``latents``: the sparse codes, each stream encoded INDEPENDENTLY (under joint encoding
  the shared TopK indices would leak the pairing);
- ``cross_recon``: the query's code decoded into stream t, against t's raw features;
- ``raw``: the raw features, when the two streams have the same width.

Scores are computed one (query chunk × gallery block) at a time — dense products for
dense vectors, a sparse CSR × dense product for codes — so memory is bounded by the
block size, not the split. Every task is ranked under two match rules from the same
scores: the headline *same image* (the paper's protocol) and the *group-aware* figure
beside it; see :mod:`sparc.eval.metrics.ranking` for the rules and ties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from sparc.eval.codes import CodeTable, csr, dense_transposed, unit_values
from sparc.eval.features import read_features
from sparc.eval.metrics.ranking import (
    GROUP_MATCH_RULE,
    MATCH_RULE,
    RULES,
    TIE_RULE,
    MatchKeys,
    Pairs,
    best_scores,
    rank_under_rules,
    retrieval_metrics,
)
from sparc.eval.results import RankFigures, RetrievalReport, RetrievalResult
from sparc.model import SPARC, SparseCode

QUERY_SLAB = 512


@dataclass(frozen=True)
class RetrievalTask:
    representation: str
    query: str
    gallery: str


def retrieval_tasks(streams: Mapping[str, int]) -> list[RetrievalTask]:
    """Every ordered pair s ≠ t: latents, cross-reconstruction, and raw where widths match."""
    out = []
    for s, ds in streams.items():
        for t, dt in streams.items():
            if s == t:
                continue
            out.append(RetrievalTask("latents", s, t))
            out.append(RetrievalTask("cross_recon", s, t))
            if ds == dt:
                out.append(RetrievalTask("raw", s, t))
    return out


class Retriever:
    """Scores and ranks queries against the whole split for one model and split.

    Parameters
    ----------
    model
        The model (decodes cross-reconstructions).
    features
        Stream → memory-mapped features of the whole store.
    rows
        Store rows of the split (sorted); positions index into it.
    codes
        Stream → independent codes of every position.
    keys
        Images, groups and captions of every position (the match rules).
    """

    def __init__(self, model: SPARC, features: Mapping[str, np.ndarray], rows: np.ndarray,
                 codes: Mapping[str, CodeTable], keys: MatchKeys, *, block: int = 4096,
                 tol: float = 1e-5, device: str | torch.device = "cpu"):
        self.model, self.features, self.rows = model, features, rows
        self.codes, self.keys = codes, keys
        self.block, self.tol, self.device = block, tol, torch.device(device)

    # -------------------------------------------------------------- representations

    def raw(self, stream: str, positions: np.ndarray | slice) -> Tensor:
        """Unit-norm float32 raw features of ``positions`` (sorted) on the device."""
        return read_features(self.features[stream], self.rows[positions]).to(self.device)

    @torch.no_grad()
    def cross(self, target: str, source: str, positions: np.ndarray | slice) -> Tensor:
        """Unit-norm decodes of ``source``'s codes into ``target``."""
        code = self.codes[source].code(positions, self.device)
        return F.normalize(self.model.decode(code, target).float(), dim=1)

    def latents(self, stream: str, positions: np.ndarray | slice) -> SparseCode:
        """Codes of ``positions`` with unit-norm values."""
        code = self.codes[stream].code(positions, self.device)
        return SparseCode(code.indices, unit_values(code), code.n_latents)

    # -------------------------------------------------------------- ranking

    def ranks(self, tasks: list[RetrievalTask], queries: np.ndarray, rules: Sequence[Pairs],
              progress: tqdm | None = None) -> np.ndarray:
        """Ranks [len(rules), len(tasks), len(queries)] of the query positions ``queries``
        (sorted) under each match rule's correct pairs ``rules`` (from
        :meth:`MatchKeys.pairs`), in tasks that share their gallery stream and kind (all
        latents, or all dense).

        The tasks' queries are stacked and cut into even chunks of at most ``block`` rows,
        so each gallery block is read once per chunk and scored in one product for every
        rule.
        """
        t = tasks[0].gallery
        latents = tasks[0].representation == "latents"
        assert all(x.gallery == t and (x.representation == "latents") == latents for x in tasks)
        n_q, n = len(queries), len(self.rows)
        m = len(tasks) * n_q
        # Correct pairs of every stacked row (row = task · n_q + query), by gallery position.
        stacked = []
        for q_pairs, g_pairs in rules:
            q_acc = np.concatenate([q_pairs + i * n_q for i in range(len(tasks))])
            g_acc = np.tile(g_pairs, len(tasks))
            order = np.lexsort((q_acc, g_acc))
            stacked.append((q_acc[order], g_acc[order]))
        out = np.empty((len(rules), m), dtype=np.int64)
        n_chunks = -(-m // self.block)
        size = -(-m // n_chunks)
        for c in range(0, m, size):
            rows = np.arange(c, min(c + size, m))
            pair_score, score_block = self._scorers(tasks, rows // n_q, queries[rows % n_q])
            chunk_rules = []
            for q_acc, g_acc in stacked:
                keep = (q_acc >= c) & (q_acc < c + len(rows))
                sub = (q_acc[keep] - c, g_acc[keep])
                chunk_rules.append((best_scores(pair_score, sub, len(rows)), sub))
            ranked = rank_under_rules(score_block, chunk_rules, n, self.block, tol=self.tol, progress=progress)
            for r, ranks in enumerate(ranked):
                out[r, c:c + len(rows)] = ranks
        return out.reshape(len(rules), len(tasks), n_q)

    def _scorers(self, tasks: list[RetrievalTask], task_of: np.ndarray, qpos: np.ndarray
                 ) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[int, int], Tensor]]:
        """(exact pair scores, block scores) of the stacked query rows ``qpos`` (their task
        index in ``task_of``, non-decreasing)."""
        t = tasks[0].gallery
        segments = [(i, np.flatnonzero(task_of == i)) for i in np.unique(task_of)]
        if tasks[0].representation == "latents":
            parts = [self.latents(tasks[i].query, qpos[rows]) for i, rows in segments]
            q = SparseCode(torch.cat([p.indices for p in parts]), torch.cat([p.values for p in parts]),
                           self.model.n_latents)
            # Dense [L, 512] slabs of the queries: each gallery entry then adds a row that
            # stays in cache (2-3× faster than one [L, m] table on CPU).
            slabs = [dense_transposed(SparseCode(q.indices[a:a + QUERY_SLAB], q.values[a:a + QUERY_SLAB],
                                                 q.n_latents)) for a in range(0, len(qpos), QUERY_SLAB)]

            def score_block(a: int, b: int) -> Tensor:
                g = csr(self.latents(t, slice(a, b)))
                return torch.cat([torch.sparse.mm(g, slab) for slab in slabs], dim=1).t()

            def pair_score(qi: np.ndarray, gi: np.ndarray) -> np.ndarray:
                g = self.latents(t, gi)
                qt = torch.from_numpy(qi).to(self.device)
                return sparse_dot(q.indices[qt], q.values[qt].double(), g.indices, g.values.double())

            return _chunked_pairs(pair_score, 2048), score_block

        parts = []
        for i, rows in segments:
            task = tasks[i]
            parts.append(self.cross(t, task.query, qpos[rows]) if task.representation == "cross_recon"
                         else self.raw(task.query, qpos[rows]))
        q = torch.cat(parts)

        def score_block(a: int, b: int) -> Tensor:
            return q @ self.raw(t, slice(a, b)).t()

        def pair_score(qi: np.ndarray, gi: np.ndarray) -> np.ndarray:
            uniq, inv = np.unique(gi, return_inverse=True)
            g = self.raw(t, uniq).double()[torch.from_numpy(inv).to(self.device)]
            return (q[torch.from_numpy(qi).to(self.device)].double() * g).sum(1).cpu().numpy()

        return _chunked_pairs(pair_score, 65536), score_block

    def run(self, queries: np.ndarray, *, progress: bool = True) -> RetrievalReport:
        """Every task of :func:`retrieval_tasks` for the query positions ``queries``,
        under both match rules (same image, the headline; group-aware)."""
        tasks = retrieval_tasks(self.model.streams)
        rules = [self.keys.pairs(queries, rule) for rule in RULES]
        groups: dict[tuple[str, bool], list[RetrievalTask]] = {}
        for task in tasks:
            groups.setdefault((task.gallery, task.representation == "latents"), []).append(task)
        total = sum(-(-len(g) * len(queries) // self.block) for g in groups.values()) * len(self.rows)
        ranks: dict[RetrievalTask, np.ndarray] = {}
        with tqdm(total=total, disable=not progress, desc="retrieval", unit="row", unit_scale=True,
                  dynamic_ncols=True) as bar:
            for (gallery, latents), group in groups.items():
                bar.set_postfix_str(f"{'latents' if latents else 'dense'} → {gallery}", refresh=False)
                by_rule = self.ranks(group, queries, rules, bar)
                for i, task in enumerate(group):
                    ranks[task] = by_rule[:, i]
        results = []
        for task in tasks:
            same, grouped = (RankFigures(*retrieval_metrics(r, len(self.rows))) for r in ranks[task])
            results.append(RetrievalResult(task.representation, task.query, task.gallery,
                                           same.r1, same.r5, same.r10, same.median_rank, same.mrr, same.r1_ci95,
                                           group_aware=grouped))
        return RetrievalReport(n_queries=len(queries), n_gallery=len(self.rows), n_gallery_images=self.keys.n_images,
                               encoding="independent", match_rule=MATCH_RULE, group_match_rule=GROUP_MATCH_RULE,
                               tie_rule=f"{TIE_RULE} (tie_tol={self.tol:g})", results=results)


def sparse_dot(qi: Tensor, qv: Tensor, gi: Tensor, gv: Tensor) -> np.ndarray:
    """Row-wise dot products of two sets of sparse codes (indices, values) [P, k]."""
    eq = qi[:, :, None] == gi[:, None, :]
    return (qv[:, :, None] * gv[:, None, :] * eq).sum((1, 2)).cpu().numpy()


def _chunked_pairs(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], chunk: int):
    def run(q: np.ndarray, g: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(q[a:a + chunk], g[a:a + chunk]) for a in range(0, len(q), chunk)]) \
            if len(q) else np.zeros(0)
    return run
