"""Names as a reader sees them (sparc/explore/name_table.py): the headline rule, the
table of every latent, and its CSV / JSON export."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from sparc.errors import SparcError
from sparc.explore.name_table import CLEAR_PURITY, export_names, headline, name_rows, render_name_table
from sparc.explore.naming import Names
from sparc.explore.settings import NamingSettings


def hand_names(words: bool = True) -> Names:
    """Two streams, four latents: 0 clearly "cat" in both; 1 "People & Body" at 19/41 in
    one stream (accepted, unclear) with words about red; 2 below min_purity with words;
    3 nothing at all."""
    majority = np.array([[0, 1, 0, -1], [0, -1, 1, -1]])
    count = np.array([[40, 19, 5, 0], [45, 0, 4, 0]])
    voters = np.array([[50, 41, 50, 0], [50, 0, 50, 0]])
    vocab = ["red", "red envelope", "red circle", "kitten"]
    w = np.array([[3, -1, -1], [0, 1, 2], [1, 0, -1], [-1, -1, -1]]) if words else None
    scores = np.array([[0.9, 0, 0], [0.8, 0.7, 0.6], [0.5, 0.4, 0], [0, 0, 0]], dtype=np.float32) if words else None
    return Names(NamingSettings(), ["img", "txt"], ["cat", "People & Body"], majority, count, voters, text_stream="txt",
                 vocabulary=vocab if words else [], vocabulary_kind=["word"] * 4 if words else [], words=w,
                 word_scores=scores)


def hand_stats():
    fires = np.array([[[10, 5, 0, 0], [8, 0, 2, 0]]])  # [E=1 (joint), S, L]
    return SimpleNamespace(frequency=lambda encoding: fires[0] / 20, streams=["img", "txt"],
                           settings=SimpleNamespace(split="all"), n_rows=20)


def test_headline_leads_with_words_when_the_label_is_unclear():
    names = hand_names()
    assert 19 / 41 < CLEAR_PURITY
    assert headline(names, 0) == "cat"                                  # aligned, 0.8 and 0.9
    assert headline(names, 1) == "red · red envelope · red circle [People & Body (img): 46%]"
    assert headline(names, 2) == "red envelope · red"                   # no stream accepts a label
    assert headline(names, 3) is None
    assert headline(None, 0) is None
    bare = hand_names(words=False)                                      # no vocabulary: the label, clear or not
    assert headline(bare, 1) == "People & Body (img)" and headline(bare, 2) is None


def test_rows_table_and_exports_round_trip(tmp_path):
    rows = name_rows(hand_names(), hand_stats())
    assert [r.latent for r in rows] == [0, 1, 2, 3]
    assert rows[0].aligned and rows[0].purity == pytest.approx(0.9) and rows[0].label == "cat"
    assert rows[1].purity == pytest.approx(19 / 41) and rows[1].frequency == {"img": 0.25, "txt": 0.0}
    assert rows[2].label is None and rows[2].purity is None and rows[2].words == ("red envelope", "red")
    assert all(r.split == "all" for r in rows)
    table = render_name_table(rows, show=2)
    lines = table.splitlines()
    assert lines[1].split()[0] == "0" and "cat ✓" in lines[1]            # most frequent first
    assert lines[2].split()[0] == "1" and "1 more firing latents: --show 3" in lines[-1]
    assert "3 " not in "".join(line[:7] for line in lines[1:-1])        # latent 3 never fires: not listed
    js = json.loads(export_names(rows, tmp_path / "n.json").read_text())
    assert js[1]["headline"].startswith("red · ") and js[1]["words"] == ["red", "red envelope", "red circle"]
    assert js[3] == {"latent": 3, "headline": None, "label": None, "purity": None, "aligned": False, "words": [],
                     "frequency": {"img": 0.0, "txt": 0.0}, "split": "all"}
    with open(export_names(rows, tmp_path / "n.csv"), newline="") as f:
        read = list(csv.DictReader(f))
    assert read[0]["headline"] == "cat" and read[0]["aligned"] == "1" and read[0]["freq_img"] == "0.500000"
    assert read[1]["words"] == "red|red envelope|red circle" and read[3]["purity"] == ""
    with pytest.raises(SparcError, match="must end in .csv or .json"):
        export_names(rows, tmp_path / "n.txt")
