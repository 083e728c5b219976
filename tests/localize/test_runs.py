"""Which streams are one CLIP's two towers (the clip_sim baseline), and its logit scale."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from sparc.localize.runs import clip_pair, logit_scale


def store(**sources):
    return SimpleNamespace(manifest=SimpleNamespace(streams={k: SimpleNamespace(source=v) for k, v in sources.items()}))


def test_clip_pair():
    tower = {"family": "open-clip", "model": "ViT-L-14", "weights": {"tag": "datacomp_xl_s13b_b90k"}}
    fs = store(img={**tower, "tower": "image"}, txt={**tower, "tower": "text"},
               other={**tower, "weights": {"tag": "laion2b"}, "tower": "text"},
               dino={"family": "dinov2-hub", "model": "dinov2_vitl14_reg"})
    assert clip_pair(fs, "img", "txt")
    assert not clip_pair(fs, "img", "other")  # other weights
    assert not clip_pair(fs, "txt", "img")    # towers the wrong way round
    assert not clip_pair(fs, "dino", "txt")


def test_logit_scale():
    bb = SimpleNamespace(model=SimpleNamespace(logit_scale=torch.tensor(4.6052)))
    assert abs(logit_scale(bb) - 100.0) < 1e-2
    assert logit_scale(SimpleNamespace(model=None)) == 1.0
