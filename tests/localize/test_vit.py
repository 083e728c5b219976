"""Rollout and Grad-CAM on ViT image streams built offline with random weights:
transformers' DINOv2 with registers and CLIP (in-process), a torch.hub DINOv2 stand-in
with explicit attention; open_clip and timm in test_vit_stubbed.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build
from sparc.localize.heatmap import ImageMapper
from sparc.localize.spatial import spatial_for
from sparc.localize.targets import Query
from sparc.model import SPARC, SPARCConfig

transformers = pytest.importorskip("transformers", reason="needs the transformers extra")
try:
    transformers.CLIPModel, transformers.Dinov2WithRegistersModel  # noqa: B018
except Exception as _e:  # noqa: BLE001
    pytest.skip(f"transformers' models cannot be imported here: {_e}", allow_module_level=True)


def image(seed=0, size=(50, 40)):
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy())


def sparc_for(dim: int, seed: int = 0) -> SPARC:
    torch.manual_seed(seed)
    m = SPARC({"img": dim, "txt": 6}, SPARCConfig(n_latents=32, k=4)).eval()
    with torch.no_grad():
        m.b_lat.normal_(std=0.05)
    return m


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-dinov2-reg")
    cfg = transformers.Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                                 intermediate_size=64, patch_size=14, image_size=56,
                                                 num_register_tokens=4)
    torch.manual_seed(0)
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dino(dino_folder):
    # 56 px / patch 14 = a 4×4 grid; tokens: CLS + 4 registers + 16 patches
    return build("dinov2-hf", model=str(dino_folder), image_size=56)


def _eager_last_attention_grad(dino, x, weight):
    """The CLS row of mean_h clamp(∂t/∂A ⊙ A) of the last block, from transformers' own
    eager attention (the attention tensors it returns are the ones it multiplies with V)."""
    ref = transformers.Dinov2WithRegistersModel.from_pretrained(dino.options.model, attn_implementation="eager").eval()
    out = ref(pixel_values=x, output_attentions=True)
    t = (out.pooler_output * weight).sum()
    A = out.attentions[-1]
    (G,) = torch.autograd.grad(t, A)
    return (G * A).clamp(min=0).mean(1)[:, 0].detach()


def test_rollout_equals_the_eager_attention_computation(dino):
    sp = spatial_for(dino, "img")
    assert sp.kind == "vit" and sp.grid() == (4, 4) and len(sp.blocks()) == 3
    x = sp.pixels([image()])
    weight = torch.randn(32, generator=torch.Generator().manual_seed(3))
    from sparc.localize.rollout import AttentionCapture, rollout_map

    with torch.enable_grad(), AttentionCapture(sp.blocks(), start=2) as cap:
        f = sp.vit_features(x)
    probs = cap.from_start()
    assert probs[0].shape == (1, 4, 21, 21)
    grads = torch.autograd.grad((f * weight).sum(), probs)
    got = rollout_map([p.detach() for p in probs], grads, prefix=5)
    want = _eager_last_attention_grad(dino, x, weight)[:, 5:]  # registers (tokens 1-4) skipped
    assert got.shape == (1, 16)
    assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():  # the captured forward is the model's own (fused attention) forward
        assert torch.allclose(f, dino.model(pixel_values=x).pooler_output, atol=1e-5)


@pytest.mark.parametrize("method", ["rollout", "gradcam"])
def test_image_mapper_on_dinov2_with_registers(dino, method):
    m = sparc_for(dino.dim)
    mapper = ImageMapper(m, "img", dino, method=method)
    assert mapper.size == 56
    with torch.no_grad():  # the heatmap's pixels: the whole image resized, no crop
        sp = spatial_for(dino, "img")
        x = sp.vit_features(sp.pixels([image(1)]))
        code = m.encode({"img": x / x.norm()})["img"]
    lat = int(code.indices[0][code.values[0].argmax()])
    got = mapper.maps([image(1), image(2)], [(0, Query(latents=(lat,))), (1, Query(latents=(lat,))),
                                              (0, Query(text_stream="txt", text=torch.ones(6) / 6 ** 0.5))])
    assert got.maps.shape == (3, 56, 56) and got.maps.dtype == np.float32
    assert not got.flat[0] and got.maps[0].max() == pytest.approx(1.0) and got.maps[0].min() == pytest.approx(0.0)
    assert got.targets[0] == pytest.approx(float(code.values[0].max()), rel=1e-4)


def test_rollout_from_an_earlier_block_and_bad_start(dino):
    m = sparc_for(dino.dim)
    got = ImageMapper(m, "img", dino, start_layer=0).maps([image()], [(0, Query(latents=tuple(range(32))))])
    assert got.maps.shape == (1, 56, 56)
    with pytest.raises(SparcError, match="outside the 3 blocks"):
        ImageMapper(m, "img", dino, start_layer=5)


@pytest.fixture(scope="module")
def clip_image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip-vision")
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "max_position_embeddings": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    torch.manual_seed(0)
    transformers.CLIPModel(cfg).save_pretrained(folder)
    return build("hf-clip", model=str(folder), tower="image")


@pytest.mark.parametrize("method", ["rollout", "gradcam"])
def test_hf_clip_image_tower(clip_image, method):
    sp = spatial_for(clip_image, "img")
    assert sp.grid() == (4, 4) and sp.patch_size() == 8
    got = ImageMapper(sparc_for(16), "img", clip_image, method=method).maps(
        [image()], [(0, Query(latents=tuple(range(32))))])
    assert got.maps.shape == (1, 32, 32) and np.isfinite(got.maps).all()


HUBCONF = textwrap.dedent(
    '''
    """Stand-in for facebookresearch/dinov2: blocks with DINOv2's explicit attention and registers."""
    import torch
    from torch import nn

    dependencies = ["torch"]


    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.num_heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, 3 * dim)
            self.attn_drop = nn.Dropout(0.0)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
            attn = self.attn_drop((q @ k.transpose(-2, -1)).softmax(dim=-1))
            return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


    class Block(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Linear(dim, dim)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))


    class TinyDinoV2(nn.Module):
        def __init__(self, embed_dim=24, patch_size=14, num_register_tokens=4, depth=2):
            super().__init__()
            self.embed_dim = embed_dim
            self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
            self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
            self.register_tokens = nn.Parameter(torch.randn(1, num_register_tokens, embed_dim))
            self.blocks = nn.ModuleList([Block(embed_dim, 4) for _ in range(depth)])
            self.norm = nn.LayerNorm(embed_dim)

        def forward_features(self, x):
            p = self.patch_embed(x).flatten(2).transpose(1, 2)
            n = x.shape[0]
            t = torch.cat([self.cls_token.expand(n, -1, -1), self.register_tokens.expand(n, -1, -1), p], 1)
            for b in self.blocks:
                t = b(t)
            t = self.norm(t)
            return {"x_norm_clstoken": t[:, 0], "x_norm_patchtokens": t[:, 5:]}


    def dinov2_vits14_reg(*, pretrained: bool = True, **kwargs):
        return TinyDinoV2(**kwargs)
    '''
)


@pytest.mark.parametrize("method", ["rollout", "gradcam"])
def test_torch_hub_dinov2_with_explicit_attention(tmp_path, method):
    (tmp_path / "dinov2").mkdir()
    (tmp_path / "dinov2" / "hubconf.py").write_text(HUBCONF)
    torch.manual_seed(0)
    bb = build("dinov2-hub", model="dinov2_vits14_reg", repo=str(tmp_path / "dinov2"), pretrained=False,
               image_size=42)
    sp = spatial_for(bb, "img")
    assert sp.grid() == (3, 3) and len(sp.blocks()) == 2
    got = ImageMapper(sparc_for(24), "img", bb, method=method).maps([image()], [(0, Query(latents=tuple(range(32))))])
    assert got.maps.shape == (1, 42, 42) and not got.flat[0]
