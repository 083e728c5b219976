"""Checks of the open-clip and dinov2-timm families on random-weight architectures.

Shared by the in-process tests (when open_clip / timm import) and by the subprocess
run with the test-only torchvision stub (when they do not). Each check takes a fresh
directory and ``real_torchvision`` (compare with the libraries' own torchvision
transforms only when the real torchvision is there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build
from sparc.extract.backbones._common import require
from sparc.extract.backbones.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def importable(module: str, extra: str, pip: str) -> str | None:
    """None if ``module`` imports, else the precise reason (sparc's own error message)."""
    try:
        require(module, extra=extra, pip=pip)
    except SparcError as e:
        return str(e)
    return None


def images() -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    out = []
    for w, h in [(300, 200), (181, 257), (224, 224)]:
        arr = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()
        out.append(Image.fromarray(arr, "RGB"))
    return out


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Hugging Face Hub calls fail at once instead of retrying the network."""
    import huggingface_hub.constants as c

    old = c.HF_HUB_OFFLINE
    c.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        c.HF_HUB_OFFLINE = old


def raises_sparc(fn, *needles: str) -> str:
    try:
        fn()
    except SparcError as e:
        msg = str(e)
        for n in needles:
            assert n in msg, f"{n!r} not in {msg!r}"
        return msg
    raise AssertionError("no SparcError raised")


# ------------------------------------------------------------------------- open_clip
ARCH = "ViT-S-32"  # the smallest ViT config shipped with open_clip; same code path as ViT-L-14


def check_open_clip_towers(tmp: Path, *, real_torchvision: bool) -> None:
    import open_clip

    torch.manual_seed(0)
    img = build("open-clip", model=ARCH, pretrained="none", tower="image")
    txt = build("open-clip", model=ARCH, pretrained="none", tower="text")
    ims = images()
    fi = img.encode(ims)
    ft = txt.encode(["a photo of a cat", "a diagram"])
    assert fi.shape == (3, 384) and ft.shape == (2, 384) and fi.dtype == torch.float32
    assert img.dim == txt.dim == 384
    assert img.model is txt.model  # one model in memory for both towers
    assert torch.isfinite(fi).all() and torch.isfinite(ft).all()
    assert not torch.allclose(fi.norm(dim=1), torch.ones(3))  # not normalised
    model = img.model
    with torch.no_grad():
        # our pipeline + encode_image / the open_clip tokenizer + encode_text
        assert torch.equal(model.encode_image(img.preprocess(ims)), fi)
        tok = open_clip.get_tokenizer(ARCH)
        assert torch.equal(model.encode_text(tok(["a photo of a cat", "a diagram"])), ft)
        if real_torchvision:
            # pixels identical to open_clip's own eval transform
            _, _, pre = open_clip.create_model_and_transforms(ARCH, pretrained=None)
            assert torch.equal(torch.stack([pre(im) for im in ims]), img.preprocess(ims))
    # truncation at 77 tokens: a longer tail changes nothing
    long1, long2 = "word " * 100, "word " * 100 + "completely different ending " * 20
    f = txt.encode([long1, long2])
    assert torch.equal(f[0], f[1])
    fp = img.fingerprint()
    assert fp["preprocess"]["size"] == 224 and fp["preprocess"]["interpolation"] == "bicubic"
    assert fp["preprocess"]["mean"] == list(OPENAI_CLIP_MEAN) and fp["preprocess"]["std"] == list(OPENAI_CLIP_STD)
    assert fp["weights"] == {"tag": None} and fp["tower"] == "image" and fp["model"] == ARCH
    assert txt.fingerprint()["tokenizer"]["context_length"] == 77


def check_open_clip_checkpoint(tmp: Path, *, real_torchvision: bool) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    ref = build("open-clip", model=ARCH, pretrained=None, tower="image")
    ims = images()[:2]
    want = ref.encode(ims)
    ckpt = tmp / "weights.pt"
    torch.save(ref.model.state_dict(), ckpt)
    for opts in ({"checkpoint": str(ckpt), "pretrained": None}, {"pretrained": str(ckpt)}):
        torch.manual_seed(2)  # a different random init, overwritten by the checkpoint
        b = build("open-clip", model=ARCH, tower="image", **opts)
        assert torch.allclose(b.encode(ims), want, atol=1e-6)
        w = b.fingerprint()["weights"]
        assert w["checkpoint"]["name"] == "weights.pt" and len(w["checkpoint"]["sha256"]) == 64
    raises_sparc(lambda: build("open-clip", model=ARCH, checkpoint=str(tmp / "missing.pt")), "open-clip checkpoint not found", "missing.pt")


def check_open_clip_offline(tmp: Path, *, real_torchvision: bool) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    with hub_offline():
        b = build("open-clip", model="ViT-B-32", pretrained="datacomp_xl_s13b_b90k", cache_dir=str(tmp))
        raises_sparc(b.load, "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K", "checkpoint=FILE", "HF_HOME")
    raises_sparc(
        lambda: build("open-clip", model=ARCH, pretrained="no_such_tag").load(), "no_such_tag", "not a pretrained tag"
    )
    raises_sparc(lambda: build("open-clip", model="No-Such-Arch", pretrained=None).load(), "No-Such-Arch")
    # the paper's tag: preprocessing known without downloading anything
    paper = build("open-clip")  # ViT-L-14 datacomp_xl_s13b_b90k, image tower
    cfg = paper.tag_cfg()
    assert cfg["hf_hub"].startswith("laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K")
    from sparc.extract.backbones.openclip import preprocess_from_cfg

    pp = preprocess_from_cfg({"size": 224, **cfg})
    assert (pp.size, pp.resize, pp.mode, pp.interpolation) == (224, None, "crop", "bicubic")
    assert pp.mean == OPENAI_CLIP_MEAN and pp.std == OPENAI_CLIP_STD


# ------------------------------------------------------------------------------ timm
TIMM = "vit_small_patch14_reg4_dinov2.lvd142m"  # same family/code path as the ViT-L/14 default


def check_timm_dinov2(tmp: Path, *, real_torchvision: bool) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    b = build("dinov2-timm", model=TIMM, pretrained="false")
    ims = images()
    f = b.encode(ims)
    assert f.shape == (3, 384) and b.dim == 384
    with torch.no_grad():
        tokens = b.model.forward_features(b.preprocess(ims))  # [n, 1 + 4 registers + 256 patches, 384], normed
    assert tokens.shape[1] == 1 + 4 + (224 // 14) ** 2
    assert torch.allclose(f, tokens[:, 0], atol=1e-6)  # CLS token after the final norm
    fp = b.fingerprint()
    assert fp["preprocess"]["resize"] == 256 and fp["preprocess"]["size"] == 224
    assert fp["weights"] == {"timm": TIMM, "pretrained": False}
    # local checkpoint through timm's pretrained_cfg overlay
    ckpt = tmp / "model.pth"
    torch.save(b.model.state_dict(), ckpt)
    torch.manual_seed(5)
    c = build("dinov2-timm", model=TIMM, checkpoint=str(ckpt))
    assert torch.allclose(c.encode(ims), f, atol=1e-5)
    assert c.fingerprint()["weights"]["name"] == "model.pth"


def check_timm_offline(tmp: Path, *, real_torchvision: bool) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    with hub_offline():
        b = build("dinov2-timm", model=TIMM, cache_dir=str(tmp))
        raises_sparc(b.load, f"timm/{TIMM}", "checkpoint=FILE")
    raises_sparc(lambda: build("dinov2-timm", model="no_such_model", pretrained=False).load(), "no_such_model")


OPEN_CLIP_CHECKS = ["check_open_clip_towers", "check_open_clip_checkpoint", "check_open_clip_offline"]
TIMM_CHECKS = ["check_timm_dinov2", "check_timm_offline"]
