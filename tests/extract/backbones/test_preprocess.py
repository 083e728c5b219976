"""The shared image pipeline on hand-computed cases (sizes, offsets, values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagePreprocess,
    center_crop,
    interpolation_name,
    resize_longer,
    resize_shorter,
    to_float_array,
)


def coords(w: int, h: int) -> Image.Image:
    """An image whose pixel (x, y) is (x, y, 7): crops can be read back exactly."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(w)[None, :]
    arr[..., 1] = np.arange(h)[:, None]
    arr[..., 2] = 7
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize(
    ("size_in", "size", "size_out"),
    [
        ((300, 200), 224, (336, 224)),  # landscape: short side → 224, long = int(224 * 300 / 200)
        ((200, 300), 224, (224, 336)),  # portrait
        ((333, 250), 224, (298, 224)),  # int() truncates 298.368 (torchvision)
        ((640, 480), 256, (341, 256)),  # int(341.33)
        ((256, 256), 256, (256, 256)),  # already there: untouched
        ((100, 50), 224, (448, 224)),  # upsampling
    ],
)
def test_resize_shorter_sizes(size_in, size, size_out):
    assert resize_shorter(Image.new("RGB", size_in), size, "bicubic").size == size_out


def test_resize_shorter_returns_the_same_image_when_the_size_matches():
    im = coords(256, 300)
    assert resize_shorter(im, 256, "bicubic") is im


@pytest.mark.parametrize(
    ("size_in", "size", "size_out"),
    [((300, 200), 224, (224, 149)), ((200, 300), 224, (149, 224)), ((1000, 10), 100, (100, 1))],
)
def test_resize_longer_sizes(size_in, size, size_out):
    # round(h / ratio) as open_clip's ResizeKeepRatio: 200 / (300 / 224) = 149.33 → 149
    assert resize_longer(Image.new("RGB", size_in), size, "bicubic").size == size_out


@pytest.mark.parametrize(
    ("w", "h", "size", "left", "top"),
    [
        (10, 10, 4, 3, 3),
        (229, 224, 224, 2, 0),  # margin 5: round(2.5) = 2 (half to even, as torchvision)
        (231, 224, 224, 4, 0),  # margin 7: round(3.5) = 4
        (224, 233, 224, 0, 4),  # margin 9: round(4.5) = 4
    ],
)
def test_center_crop_offsets_match_torchvision(w, h, size, left, top):
    out = np.asarray(center_crop(coords(w, h), size))
    assert out.shape == (size, size, 3)
    assert out[0, 0, 0] == left and out[0, 0, 1] == top


@pytest.mark.parametrize(("w", "left_round", "left_floor"), [(231, 4, 3), (229, 2, 2), (235, 6, 5)])
def test_center_crop_floor_offset_matches_hugging_face(w, left_round, left_floor):
    assert np.asarray(center_crop(coords(w, 224), 224))[0, 0, 0] == left_round
    assert np.asarray(center_crop(coords(w, 224), 224, offset="floor"))[0, 0, 0] == left_floor


def test_center_crop_pads_small_images():
    # 3x2 image into 6x6: left pad (6-3)//2 = 1, top pad (6-2)//2 = 2, filled with `fill`
    out = np.asarray(center_crop(coords(3, 2), 6, fill=9))
    assert out.shape == (6, 6, 3)
    assert (out[:2] == 9).all() and (out[4:] == 9).all()  # top 2 rows, bottom 2 rows
    assert (out[:, 0] == 9).all() and (out[:, 4:] == 9).all()  # left 1 col, right 2 cols
    assert out[2, 1].tolist() == [0, 0, 7] and out[3, 3].tolist() == [2, 1, 7]


def test_to_float_array_is_torchvision_to_tensor():
    im = coords(5, 4)
    x = to_float_array(im)
    assert x.dtype == np.float32 and x.shape == (3, 4, 5)
    want = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div(255)
    assert torch.equal(torch.from_numpy(x), want)


def test_normalisation_values_by_hand():
    pp = ImagePreprocess(size=4, mode="squash", interpolation="nearest")
    x = pp([Image.new("RGB", (4, 4), (255, 0, 128))])
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for c in range(3):
        assert torch.allclose(x[0, c], torch.full((4, 4), want[c]), atol=1e-6)
    assert x[0, 0, 0, 0].item() == pytest.approx(2.2489083, abs=1e-6)


def test_crop_pipeline_paper_sizes_and_pixels():
    pp = ImagePreprocess(size=224, resize=256, interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    im = coords(256, 320)  # short side already 256: no resize; crop top = 48, left = 16
    x = pp([im])
    assert x.shape == (1, 3, 224, 224)
    assert x[0, 0, 0, 0].item() == pytest.approx(16 / 255)
    assert x[0, 1, 0, 0].item() == pytest.approx(48 / 255)
    assert x[0, 2].unique().tolist() == pytest.approx([7 / 255])


def test_pipeline_shapes_for_every_mode_and_aspect():
    ims = [Image.new("RGB", s, (10, 20, 30)) for s in [(640, 480), (480, 640), (50, 30), (224, 224)]]
    for pp in [
        ImagePreprocess(size=224, resize=256),
        ImagePreprocess(size=224, mode="pad", fill=0),
        ImagePreprocess(size=224, mode="squash"),
    ]:
        assert pp(ims).shape == (4, 3, 224, 224)
    assert ImagePreprocess(size=8)([]).shape == (0, 3, 8, 8)


def test_pad_mode_fills_the_borders():
    pp = ImagePreprocess(size=8, mode="pad", fill=255, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    x = pp([Image.new("RGB", (8, 4), (0, 0, 0))])  # 8x4 → stays 8x4, padded to 8x8: rows 0-1 and 6-7
    assert (x[0, :, :2] == 1).all() and (x[0, :, 6:] == 1).all() and (x[0, :, 2:6] == 0).all()


def test_grayscale_and_rgba_inputs_become_rgb():
    pp = ImagePreprocess(size=4, mode="squash", mean=(0, 0, 0), std=(1, 1, 1))
    x = pp([Image.new("L", (4, 4), 51), Image.new("RGBA", (4, 4), (51, 51, 51, 0))])
    assert torch.allclose(x, torch.full_like(x, 0.2))


def test_bicubic_resize_is_pil_bicubic():
    im = coords(300, 200)
    pp = ImagePreprocess(size=224, resize=224, mean=(0, 0, 0), std=(1, 1, 1))
    ref = im.resize((336, 224), Image.Resampling.BICUBIC).crop((56, 0, 280, 224))
    assert torch.equal(pp([im])[0], torch.from_numpy(to_float_array(ref)))


def test_describe_is_complete_and_json_friendly():
    d = ImagePreprocess(size=224, resize=256).describe()
    assert d == {
        "size": 224,
        "resize": 256,
        "interpolation": "bicubic",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "mode": "crop",
        "fill": 0,
        "offset": "round",
    }


@pytest.mark.parametrize(("value", "name"), [(3, "bicubic"), (2, "bilinear"), ("BICUBIC", "bicubic"), (0, "nearest")])
def test_interpolation_names(value, name):
    assert interpolation_name(value) == name


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"size": 0}, "positive"),
        ({"size": 8, "interpolation": "cubic"}, "unknown interpolation"),
        ({"size": 8, "mode": "zoom"}, "unknown resize mode"),
        ({"size": 8, "mode": "pad", "resize": 9}, "only applies to mode=crop"),
        ({"size": 8, "std": (1, 0, 1)}, "std must be positive"),
        ({"size": 8, "mean": (1, 2)}, "needs 3 values"),
        ({"size": 8, "offset": "ceil"}, "unknown crop offset"),
    ],
)
def test_invalid_preprocess(kwargs, needle):
    with pytest.raises(SparcError, match=needle):
        ImagePreprocess(**kwargs)
