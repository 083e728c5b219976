"""``sparc store merge`` / ``sparc store append`` and ``sparc extract --shard``'s errors."""

from __future__ import annotations

import numpy as np
import pytest

from sparc.cli.main import main
from sparc.data import FeatureStore
from synthetic import make_store


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_merge_and_append(tmp_path, capsys):
    a, b = make_store(tmp_path / "a", n_rows=40), make_store(tmp_path / "b", n_rows=30, seed=1)
    code, out, err = run(["store", "merge", a, b, "--out", tmp_path / "m"], capsys)
    assert code == 0, err
    assert "70" in out and FeatureStore.open(tmp_path / "m").n_parts == 2
    code, _, err = run(["store", "merge", a, b, "--out", tmp_path / "m"], capsys)
    assert code == 2 and err.startswith("error: a feature store already exists") and err.count("\n") == 1
    code, _, err = run(["store", "append", a, b], capsys)
    assert code == 0, err
    grown = FeatureStore.open(a)
    assert grown.n_rows == 70
    np.testing.assert_array_equal(np.asarray(grown.features("dino")),
                                  np.asarray(FeatureStore.open(tmp_path / "m").features("dino")))
    other = make_store(tmp_path / "c", n_rows=10, dims={"dino": 12})
    code, _, err = run(["store", "append", a, other], capsys)
    assert code == 2 and "cannot join" in err and err.count("\n") == 1


@pytest.mark.parametrize("shard", ["2/2", "1", "a/b", "-1/2"])
def test_bad_shard_is_one_line(tmp_path, capsys, shard):
    code, _, err = run(["extract", "--dataset", "fashion-mnist", "--stream", "x=minilm", "--out", tmp_path / "s",
                        "--shard", shard], capsys)
    assert code == 2 and err == f"error: --shard must be I/N with 0 <= I < N (e.g. 0/4), got {shard!r}\n"
