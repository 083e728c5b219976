"""The probes' group-aware row sets."""

from sparc.eval.metrics.probes.run import probe_row_sets
from sparc.eval.settings import EvalSettings


def test_probe_row_sets_have_no_group_leakage(store):
    meta = store.rows()
    fit, sel, rep = probe_row_sets(meta, store.split_rows("train"), store.split_rows("val"),
                                   store.split_rows("test"), EvalSettings(probe_fit_rows=60, probe_select_rows=20))
    assert len(fit) <= 60 and len(sel) <= 20 and len(rep) == len(store.split_rows("test"))
    g = [{meta[r].group_id for r in rows} for rows in (fit, sel, rep)]
    assert not (g[0] & g[1]) and not (g[0] & g[2]) and not (g[1] & g[2])
    # Every sampled group is complete: all its rows in the split are in the sample.
    for rows, split in ((fit, "train"), (sel, "val")):
        chosen = {meta[r].group_id for r in rows}
        full = [r for r in store.split_rows(split) if meta[r].group_id in chosen]
        assert sorted(full) == sorted(rows.tolist())
