"""Retrieval end to end against a brute-force dense oracle, under both match rules (same
image, the headline; group-aware); duplicates, shared groups, shared images."""

import numpy as np
import pytest
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
    keys = MatchKeys([meta[r].group_id for r in rows], [meta[r].caption for r in rows], [meta[r].image for r in rows])
    return Retriever(model, feats, rows, codes, keys, block=block, tol=1e-5), x, indep, keys


def correct_rows(keys, i, rule):
    """bool [n]: the correct matches of row i under ``rule``, from the keys' codes directly."""
    ok = keys.image == keys.image[i]
    if rule == "group_aware":
        ok = ok | (keys.group == keys.group[i]) | ((keys.caption == keys.caption[i]) & (keys.caption[i] >= 0))
    return torch.from_numpy(ok)


def oracle_ranks(q, g, queries, keys, rule="same_image", tol=1e-5):
    """rank = 1 + #{wrong j : cos(q_i, g_j) ≥ best correct − tol}, all in float64."""
    s = F.normalize(q.double(), dim=1) @ F.normalize(g.double(), dim=1).t()
    out = []
    for r, i in enumerate(queries):
        ok = correct_rows(keys, i, rule)
        best = s[r, ok].max()
        out.append(1 + int(((s[r] >= best - tol) & ~ok).sum()))
    return np.array(out)


def test_matches_the_dense_oracle_for_every_task(store):
    model = small_model(store)
    retr, x, indep, keys = setup(store, model, block=37)
    queries = np.array(sorted(np.random.default_rng(0).choice(len(retr.rows), 50, replace=False)))
    rules = [keys.pairs(queries, "same_image"), keys.pairs(queries, "group_aware")]
    assert len(rules[1][0]) > len(rules[0][0])  # the synthetic store has groups of several rows
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
        (same,), (grouped,) = retr.ranks([task], queries, rules)
        assert same.tolist() == oracle_ranks(q, g, queries, keys, "same_image").tolist(), task
        assert grouped.tolist() == oracle_ranks(q, g, queries, keys, "group_aware").tolist(), task
    # Tasks stacked into shared chunks rank the same as alone.
    dense = [t for t in tasks if t.gallery == "clip_txt" and t.representation != "latents"]
    stacked = retr.ranks(dense, queries, rules)
    for i, task in enumerate(dense):
        assert stacked[:, i].tolist() == retr.ranks([task], queries, rules)[:, 0].tolist()


def test_chunked_equals_unchunked(store):
    model = small_model(store, topk="local", seed=1)
    queries = np.arange(0, 400, 5)
    a = setup(store, model, block=7)[0].run(queries, progress=False)
    b = setup(store, model, block=10_000)[0].run(queries, progress=False)
    assert a == b


def test_shared_groups_and_duplicates(tmp_path):
    """Row 1 duplicates row 0 (same features), as a skin-tone variant might nearly. In the
    same group it is a correct match for the group-aware figure (rank 1) but not for the
    headline, where only the same image is (rank 2: a wrong row tying the match,
    pessimistic); in another group it is wrong for both."""
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
        task = next(t for t in retrieval_tasks(model.streams) if t.representation == "raw")
        q0 = np.array([0])
        (same,), (grouped,) = retr.ranks([task], q0, [retr.keys.pairs(q0), retr.keys.pairs(q0, "group_aware")])
        assert grouped.tolist() == [expected]
        assert same.tolist() == [2]
        assert raw.group_aware.r1 == (1.0 if same_group else 4 / 6)  # rows 0 and 1 both rank 2 when not grouped
        assert raw.r1 == 4 / 6  # headline: rows 0 and 1 are different images either way


def test_identical_captions_are_not_misses_for_the_group_aware_figure(tmp_path):
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
    res = retr.run(np.arange(5), progress=False).get("raw", "img", "txt")
    assert res.group_aware.r1 == 1.0
    # Headline: rows 0 and 3 are different images, so each finds the other's text first.
    assert res.r1 == 3 / 5


def test_rows_of_one_image_match_each_other(tmp_path):
    """Two captions of one image (rows 0 and 1, ``image`` equal): each row's image retrieves
    either caption. The 5 captions of a COCO image are such rows."""
    from sparc.data import FeatureStore, RowMeta, StoreWriter

    rng = np.random.default_rng(2)
    img = rng.normal(size=(4, 4)).astype(np.float32)
    img[1] = img[0]  # the same picture
    txt = rng.normal(size=(4, 4)).astype(np.float32)
    txt[0] = img[0] + 0.01  # caption 0 is closest to the picture; caption 1 is far from it
    meta = [RowMeta("r0", group_id="p", image="p.jpg"), RowMeta("r1", group_id="p", image="p.jpg"),
            RowMeta("r2", image="q.jpg"), RowMeta("r3")]
    with StoreWriter(tmp_path / "s", {"img": 4, "txt": 4}, split_fractions=(0, 0, 1)) as w:
        w.append({"img": img, "txt": txt}, meta)
    st = FeatureStore.open(tmp_path / "s")
    retr = setup(st, SPARC(st.streams, SPARCConfig(n_latents=8, k=2)), block=3)[0]
    rep = retr.run(np.arange(4), progress=False)
    assert rep.n_gallery_images == 3
    task = next(t for t in retrieval_tasks(st.streams) if (t.representation, t.query) == ("raw", "img"))
    (same,), _ = retr.ranks([task], np.array([1]), [retr.keys.pairs(np.array([1])), retr.keys.pairs(np.array([1]))])
    assert same.tolist() == [1]  # row 1's image finds caption 0, of the same image: a hit


def test_headline_is_a_plain_cosine_ranking_when_every_row_is_its_own_image(tmp_path):
    """Rows in groups of three with repeated captions, every row a distinct image: the
    headline equals the plain ranking of each query's own row, computed here in float64;
    the group-aware figure differs."""
    from sparc.data import FeatureStore, RowMeta, StoreWriter

    rng = np.random.default_rng(4)
    n = 60
    base = rng.normal(size=(n // 3, 6))
    img = (np.repeat(base, 3, axis=0) + 0.6 * rng.normal(size=(n, 6))).astype(np.float32)
    txt = (img @ rng.normal(size=(6, 6)) * 0.3 + img + 0.5 * rng.normal(size=(n, 6))).astype(np.float32)
    meta = [RowMeta(f"r{i}", group_id=f"g{i // 3}", image=f"im{i}.png", caption=f"cap{i % 7}") for i in range(n)]
    with StoreWriter(tmp_path / "s", {"img": 6, "txt": 6}, split_fractions=(0, 0, 1)) as w:
        w.append({"img": img, "txt": txt}, meta)
    st = FeatureStore.open(tmp_path / "s")
    model = SPARC(st.streams, SPARCConfig(n_latents=16, k=3))
    retr, x, indep, _ = setup(st, model, block=7)
    rep = retr.run(np.arange(n), progress=False)
    assert rep.n_gallery_images == n
    differ = False
    for res in rep.results:
        q, g = res.query, res.gallery
        if res.representation == "latents":
            a, b = indep[q].dense().double().numpy(), indep[g].dense().double().numpy()
        elif res.representation == "cross_recon":
            a, b = model.decode(indep[q], g).detach().double().numpy(), x[g].double().numpy()
        else:
            a, b = x[q].double().numpy(), x[g].double().numpy()
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
        sim = a @ b.T
        own = np.diag(sim)
        # Plain cosine ranking of the query's own row; a row tying it ranks above (pessimistic).
        ranks = 1 + ((sim >= own[:, None] - 1e-5) & ~np.eye(n, dtype=bool)).sum(1)
        assert res.r1 == pytest.approx((ranks == 1).mean()), res
        assert res.r5 == pytest.approx((ranks <= 5).mean()) and res.r10 == pytest.approx((ranks <= 10).mean())
        assert res.median_rank == pytest.approx(np.median(ranks)) and res.mrr == pytest.approx((1 / ranks).mean())
        assert res.group_aware.r1 >= res.r1
        differ |= res.group_aware.r1 > res.r1
    assert differ
