"""open_clip and timm ViTs under the test-only torchvision stand-in (see
tests/extract/backbones/torchvision_stub.py): rollout, Grad-CAM and text attribution.

Usage: python vit_stubbed.py CHECK [CHECK ...]; exits 0 when all pass. In-process
(without the stand-in) when open_clip / timm import.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def _image():
    g = torch.Generator().manual_seed(0)
    return Image.fromarray(torch.randint(0, 256, (60, 80, 3), generator=g, dtype=torch.uint8).numpy())


def _sparc(dim: int):
    from sparc.model import SPARC, SPARCConfig

    torch.manual_seed(0)
    return SPARC({"img": dim, "txt": dim}, SPARCConfig(n_latents=32, k=4)).eval()


def check_open_clip_image() -> None:
    from sparc.extract.backbones import build
    from sparc.localize.heatmap import ImageMapper
    from sparc.localize.spatial import spatial_for
    from sparc.localize.targets import Query

    torch.manual_seed(0)
    bb = build("open-clip", model="ViT-S-32", pretrained="none", tower="image")
    sp = spatial_for(bb, "img")
    assert sp.grid() == (7, 7), sp.grid()
    for method in ("rollout", "gradcam"):
        got = ImageMapper(_sparc(bb.dim), "img", bb, method=method).maps(
            [_image()], [(0, Query(latents=tuple(range(32))))])
        assert got.maps.shape == (1, 224, 224) and np.isfinite(got.maps).all() and not got.flat[0], method


def check_open_clip_text_words() -> None:
    from sparc.extract.backbones import build
    from sparc.localize.text_attribution import TextAttributor

    torch.manual_seed(0)
    txt = build("open-clip", model="ViT-S-32", pretrained="none", tower="text")
    from sparc.model import SPARC, SPARCConfig

    m = SPARC({"txt": txt.dim}, SPARCConfig(n_latents=32, k=4)).eval()
    ws = TextAttributor(m, "txt", txt).attribute("a photograph of two dogs")
    assert ws.method == "gradcam" and ws.words == ["a", "photograph", "of", "two", "dogs"]
    assert ws.scores.shape == (5,) and float(ws.scores.max()) == 1.0 and ws.target > 0


def check_timm_dinov2_registers() -> None:
    from sparc.extract.backbones import build
    from sparc.localize.heatmap import ImageMapper
    from sparc.localize.rollout import AttentionCapture
    from sparc.localize.spatial import spatial_for
    from sparc.localize.targets import Query

    torch.manual_seed(0)
    bb = build("dinov2-timm", model="vit_small_patch14_reg4_dinov2.lvd142m", pretrained=False, image_size=42)
    sp = spatial_for(bb, "img")
    assert sp.grid() == (3, 3) and len(sp.blocks()) == 12
    with torch.enable_grad(), AttentionCapture(sp.blocks(), start=11) as cap:
        sp.vit_features(sp.pixels([_image()]))
    assert cap.probs[-1].shape == (1, 6, 14, 14)  # CLS + 4 registers + 9 patches
    for method in ("rollout", "gradcam"):
        got = ImageMapper(_sparc(bb.dim), "img", bb, method=method).maps(
            [_image()], [(0, Query(latents=tuple(range(32))))])
        assert got.maps.shape == (1, 42, 42) and not got.flat[0], method


CHECKS = ["check_open_clip_image", "check_open_clip_text_words", "check_timm_dinov2_registers"]

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parent / "extract" / "backbones"))
    import torchvision_stub

    torchvision_stub.install()
    torch.set_num_threads(1)
    failed = 0
    for name in sys.argv[1:]:
        try:
            globals()[name]()
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
    sys.exit(1 if failed else 0)
