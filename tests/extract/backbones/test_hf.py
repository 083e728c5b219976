"""transformers families (dinov2-hf, hf-clip) on tiny random models saved to a folder.

``from_pretrained(folder)`` is the same code path as a hub id once the hub has been
cached; only the download differs, which is tested to fail with a clear SparcError.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build
from sparc.extract.backbones.hfclip import preprocess_from_hf
from sparc.extract.backbones.preprocess import OPENAI_CLIP_MEAN

transformers = pytest.importorskip("transformers", reason="needs the transformers extra")
try:  # transformers imports these lazily; a mismatched torchvision breaks them
    transformers.CLIPModel, transformers.Dinov2WithRegistersModel  # noqa: B018
except Exception as _e:  # noqa: BLE001
    pytest.skip(f"transformers' models cannot be imported here: {type(_e).__name__}: {_e}", allow_module_level=True)


def images() -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    sizes = [(300, 200), (181, 257), (64, 64)]
    return [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy()) for w, h in sizes]


def _bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte-level alphabet (256 printable stand-ins for the bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer(folder: Path):
    """A CLIP BPE tokenizer with a byte-level vocabulary and two merges."""
    chars = _bytes_to_unicode()
    vocab_list = chars + [c + "</w>" for c in chars] + ["th", "the</w>", "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    merges = [("t", "h"), ("th", "e</w>")]
    try:  # transformers >= 5
        tok = transformers.CLIPTokenizer(vocab=vocab, merges=merges)
    except TypeError:  # transformers 4: files
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        tok = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    return tok, len(vocab_list)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-clip")
    tok, vocab_size = tiny_clip_tokenizer(folder)
    cfg = transformers.CLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab_size - 2,
            "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    # a CLIP-style image processor config: shortest edge 40, crop 32, bilinear
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": {"height": 32, "width": 32},
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "image_mean": list(OPENAI_CLIP_MEAN),
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 2,
                "size": {"shortest_edge": 40},
            }
        )
    )
    return folder


def test_hf_clip_image_tower(clip_folder):
    b = build("hf-clip", model=str(clip_folder), tower="image")
    ims = images()
    f = b.encode(ims)
    assert f.shape == (3, 16) and b.dim == 16 and b.modality == "image"
    fp = b.fingerprint()
    assert fp["preprocess"] == {
        "size": 32,
        "resize": 40,
        "interpolation": "bilinear",
        "mean": list(OPENAI_CLIP_MEAN),
        "std": [0.26862954, 0.26130258, 0.27577711],
        "mode": "crop",
        "fill": 0,
        "offset": "floor",
    }
    assert fp["model"] == clip_folder.name and len(fp["weights"]["sha256"]) == 64
    ref = transformers.CLIPModel.from_pretrained(clip_folder).eval()
    with torch.no_grad():
        want = ref.get_image_features(pixel_values=b.preprocess(ims))
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    assert torch.allclose(f, want, atol=1e-6)
    assert b.model.text_model is None  # the unused tower is dropped


def test_hf_clip_text_tower_truncates_at_77(clip_folder):
    b = build("hf-clip", model=str(clip_folder), tower="text")
    texts = ["the cat", "the the the"]
    f = b.encode(texts)
    assert f.shape == (2, 16) and b.modality == "text"
    tok = transformers.AutoTokenizer.from_pretrained(clip_folder)
    ref = transformers.CLIPModel.from_pretrained(clip_folder).eval()
    with torch.no_grad():
        want = ref.get_text_features(**tok(texts, padding=True, return_tensors="pt"))
    want = want if isinstance(want, torch.Tensor) else want.pooler_output
    assert torch.allclose(f, want, atol=1e-5)
    # > 77 tokens: truncated, so a different tail does not change the features
    long1, long2 = "the " * 90, "the " * 90 + "cat dog " * 30
    g = b.encode([long1, long2])
    assert torch.equal(g[0], g[1])
    assert b.fingerprint()["tokenizer"] == {"max_length": 77, "truncation": True}


def test_hf_clip_without_preprocessor_config_uses_clip_defaults(clip_folder, tmp_path):
    folder = tmp_path / "noproc"
    folder.mkdir()
    for f in clip_folder.iterdir():
        if f.name != "preprocessor_config.json":
            (folder / f.name).write_bytes(f.read_bytes())
    pp = build("hf-clip", model=str(folder)).fingerprint()["preprocess"]
    assert (pp["size"], pp["resize"], pp["interpolation"], pp["offset"]) == (32, None, "bicubic", "floor")


@pytest.mark.parametrize(
    ("config", "want"),
    [
        (
            {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "resample": 3},
            (224, 224, "crop"),
        ),
        ({"size": 256, "crop_size": 224, "resample": 3}, (224, 256, "crop")),  # old int style
        ({"size": {"height": 384, "width": 384}, "do_center_crop": False, "resample": 2}, (384, None, "squash")),
    ],
)
def test_preprocess_from_hf_configs(config, want):
    pp = preprocess_from_hf(config, default_size=224)
    assert (pp.size, pp.resize, pp.mode) == want


def test_preprocess_from_hf_rejects_non_square():
    with pytest.raises(SparcError, match="non-square"):
        preprocess_from_hf({"size": 224, "crop_size": {"height": 224, "width": 200}}, default_size=224)


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-dinov2-reg")
    cfg = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
        num_register_tokens=4,
    )
    torch.manual_seed(0)
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(folder)
    return folder


def test_dinov2_hf_is_the_cls_token_after_the_final_layernorm(dino_folder):
    b = build("dinov2-hf", model=str(dino_folder))
    ims = images()
    f = b.encode(ims)
    assert f.shape == (3, 32) and b.dim == 32
    ref = transformers.AutoModel.from_pretrained(dino_folder).eval()
    assert type(ref).__name__ == "Dinov2WithRegistersModel"
    with torch.no_grad():
        x = b.preprocess(ims)
        out = ref(pixel_values=x, output_hidden_states=True)
        # the last encoder layer's output, normalised by the final layernorm, token 0
        cls = ref.layernorm(out.hidden_states[-1])[:, 0]
    assert x.shape == (3, 3, 224, 224)  # paper preprocessing; position embeddings interpolated
    assert torch.allclose(f, cls, atol=1e-5)
    assert torch.allclose(f, out.last_hidden_state[:, 0], atol=1e-6)
    fp = b.fingerprint()
    assert fp["feature"] == "cls_after_final_norm" and fp["preprocess"]["resize"] == 256
    assert fp["weights"]["name"] == dino_folder.name


def test_dinov2_hf_plain_dinov2_config(tmp_path):
    cfg = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, mlp_ratio=2, image_size=28
    )
    transformers.Dinov2Model(cfg).save_pretrained(tmp_path)
    assert build("dinov2-hf", model=str(tmp_path), image_size=56).encode(images()[:1]).shape == (1, 32)


@pytest.mark.parametrize("family", ["dinov2-hf", "hf-clip", "sentence-transformers"])
def test_hub_model_not_in_cache_is_a_sparc_error(family, tmp_path):
    b = build(family, model="facebook/no-such-model", offline=True, cache_dir=str(tmp_path))
    with pytest.raises(
        SparcError, match=r"facebook/no-such-model is not available .*hf download facebook/no-such-model"
    ):
        b.load()


def test_broken_local_folder_is_a_sparc_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SparcError, match="dinov2-hf: could not load"):
        build("dinov2-hf", model=str(tmp_path)).load()
