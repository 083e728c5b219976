"""Retrieval end to end against a brute-force dense oracle; duplicates and shared groups."""

import numpy as np
import torch
import torch.nn.functional as F

from sparc.data.normalize import l2_normalize
from sparc.eval.codes import CodeTable
from sparc.eval.metrics.ranking import MatchKeys
from sparc.eval.metrics.retrieval import Retriever, retrieval_tasks
from sparc.model import SPARC, SPARCConfig

from ..helpers import small_model


def setup(store, model, block):
    rows = store.split_rows("all")
    meta = store.rows()
    feats = {s: store.features(s) for s in model.names}
    x = {s: torch.from_numpy(l2_normalize(np.array(feats[s][rows], dtype=np.float32))) for s in model.names}
    with torch.no_grad():
        indep = model.select(model.logits(x), "local")
    codes = {}
    for s in model.names:
        codes[s] = CodeTable(len(rows), model.cfg.k, model.n_latents)
        codes[s].put(0, indep[s])
    keys = MatchKeys([meta[r].group_id for r in rows], [meta[r].caption for r in rows])
    return Retriever(model, feats, rows, codes, keys, block=block, tol=1e-5), x, indep, keys


def oracle_ranks(q, g, queries, keys, tol=1e-5):
    """rank = 1 + #{wrong j : cos(q_i, g_j) ≥ best correct − tol}, all in float64."""
    s = F.normalize(q.double(), dim=1) @ F.normalize(g.double(), dim=1).t()
    out = []
    for r, i in enumerate(queries):
        ok = (keys.group == keys.group[i]) | ((keys.caption == keys.caption[i]) & (keys.caption[i] >= 0))
        best = s[r, torch.from_numpy(ok)].max()
        out.append(1 + int(((s[r] >= best - tol) & ~torch.from_numpy(ok)).sum()))
    return np.array(out)


def test_matches_the_dense_oracle_for_every_task(store):
    model = small_model(store)
    retr, x, indep, keys = setup(store, model, block=37)
    queries = np.array(sorted(np.random.default_rng(0).choice(len(retr.rows), 50, replace=False)))
    pairs = keys.pairs(queries)
    tasks = retrieval_tasks(model.streams)
    assert {t.representation for t in tasks} == {"latents", "cross_recon", "raw"}
    assert len([t for t in tasks if t.representation == "raw"]) == 2  # clip_img ↔ clip_txt (8 = 8)
    for task in tasks:
        s, t = task.query, task.gallery
        if task.representation == "latents":
            q, g = indep[s].dense()[queries], indep[t].dense()
        elif task.representation == "cross_recon":
            q, g = model.decode(indep[s], t).detach()[queries], x[t]
        else:
            q, g = x[s][queries], x[t]
        (got,) = retr.ranks([task], queries, pairs)
        assert got.tolist() == oracle_ranks(q, g, queries, keys).tolist(), task
    # Tasks stacked into shared chunks rank the same as alone.
    dense = [t for t in tasks if t.gallery == "clip_txt" and t.representation != "latents"]
    stacked = retr.ranks(dense, queries, pairs)
    for task, got in zip(dense, stacked):
        assert got.tolist() == retr.ranks([task], queries, pairs)[0].tolist()


def test_chunked_equals_unchunked(store):
    model = small_model(store, topk="local", seed=1)
    queries = np.arange(0, 400, 5)
    a = setup(store, model, block=7)[0].run(queries, progress=False)
    b = setup(store, model, block=10_000)[0].run(queries, progress=False)
    assert a == b


def test_shared_groups_and_duplicates(tmp_path):
    """Row 1 duplicates row 0 (same features). In the same group it is a correct match
    (rank 1); in another group it is a wrong row tying the match (rank 2, pessimistic)."""
    from sparc.data import FeatureStore, RowMeta, StoreWriter

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    x[1] = x[0]
    for same_group, expected in ((True, 1), (False, 2)):
        path = tmp_path / f"s{same_group}"
        meta = [RowMeta(f"r{i}", group_id="g0" if same_group and i < 2 else f"g{i}", caption=f"c{i}")
                for i in range(6)]
        with StoreWriter(path, {"a": 4, "b": 4}, split_fractions=(0, 0, 1)) as w:
            w.append({"a": x, "b": x}, meta)
        st = FeatureStore.open(path)
        model = SPARC(st.streams, SPARCConfig(n_latents=8, k=2))
        retr = setup(st, model, block=4)[0]
        rep = retr.run(np.arange(6), progress=False)
        raw = rep.get("raw", "a", "b")
        (ranks,) = retr.ranks([next(t for t in retrieval_tasks(model.streams) if t.representation == "raw")],
                              np.array([0]), retr.keys.pairs(np.array([0])))
        assert ranks.tolist() == [expected]
        assert raw.r1 == (1.0 if same_group else 4 / 6)  # rows 0 and 1 both rank 2 when not grouped


def test_identical_captions_are_not_misses(tmp_path):
    from sparc.data import FeatureStore, RowMeta, StoreWriter

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = x.copy()
    y[0], y[3] = x[3], x[0]  # text of rows 0 and 3 swapped...
    meta = [RowMeta(f"r{i}", caption="a dog" if i in (0, 3) else f"c{i}") for i in range(5)]  # ...same caption
    with StoreWriter(tmp_path / "s", {"img": 4, "txt": 4}, split_fractions=(0, 0, 1)) as w:
        w.append({"img": x, "txt": y}, meta)
    st = FeatureStore.open(tmp_path / "s")
    retr = setup(st, SPARC(st.streams, SPARCConfig(n_latents=8, k=2)), block=2)[0]
    assert retr.run(np.arange(5), progress=False).get("raw", "img", "txt").r1 == 1.0
