"""Grad-CAM on EfficientNet-Lite0 with its packaged real weights: the map by hand, shared
feature maps, flat maps, speed of one map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build
from sparc.localize.gradcam import finish, gradcam
from sparc.localize.heatmap import ImageMapper, unit
from sparc.localize.spatial import spatial_for
from sparc.localize.targets import Query
from sparc.model import SPARC, SPARCConfig

pytest.importorskip("efficientnet_lite_pytorch", reason="needs the efficientnet-lite extra")


@pytest.fixture(scope="module")
def lite0():
    return build("efficientnet-lite", model="lite0").load()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = SPARC({"img": 1280, "txt": 8}, SPARCConfig(n_latents=64, k=8)).eval()
    with torch.no_grad():
        m.b_lat.normal_(std=0.05)
    return m


def picture(seed: int) -> Image.Image:
    a = np.full((120, 160, 3), 255, np.uint8)
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, 60), rng.integers(0, 100)
    a[y:y + 50, x:x + 50] = rng.integers(0, 255, 3)
    return Image.fromarray(a)


def test_gradcam_by_hand(lite0, model):
    mapper = ImageMapper(model, "img", lite0)
    assert mapper.method == "gradcam" and mapper.size == 224
    im = picture(0)
    sp = spatial_for(lite0, "img")
    A = sp.feature_map(sp.pixels([im]))
    assert A.shape == (1, 1280, 7, 7)
    with torch.no_grad():
        code = model.encode({"img": unit(A.mean((2, 3)))})["img"]
    lat = tuple(int(i) for i in code.indices[0][:3])
    got = mapper.maps([im], [(0, Query(latents=lat))])
    # by hand: target = Σ values at lat; the pool makes ∂t/∂A the same at every position
    Al = A.clone().requires_grad_(True)
    v = model.encode({"img": unit(Al.mean((2, 3)))})["img"]
    t = (v.values * torch.isin(v.indices, torch.tensor(lat))).sum()
    (G,) = torch.autograd.grad(t, Al)
    assert torch.allclose(G[..., 0, 0], G[..., 3, 5])
    cam = torch.relu((G.mean((2, 3), keepdim=True) * A).sum(1))
    want, _ = finish(cam, (224, 224))
    assert got.targets[0] == pytest.approx(float(t.detach()), rel=1e-5)
    assert np.allclose(got.maps[0], want[0].numpy(), atol=1e-5)
    assert torch.allclose(gradcam(A, G), cam)


def test_shared_feature_maps_and_flat(lite0, model):
    mapper = ImageMapper(model, "img", lite0)
    ims = [picture(1), picture(2)]
    pairs = [(0, Query(latents=tuple(range(64)))), (1, Query(latents=tuple(range(64)))), (1, Query(latents=(0,)))]
    one = mapper.maps(ims, pairs)
    shared = mapper.maps_from(mapper.feature_maps(ims), pairs)
    assert np.allclose(one.maps, shared.maps) and (one.flat == shared.flat).all()
    with torch.no_grad():
        sp = spatial_for(lite0, "img")
        code = model.encode({"img": unit(sp.pool(sp.feature_map(sp.pixels([ims[1]]))))})["img"]
    inactive = next(i for i in range(64) if i not in set(code.indices[0][code.values[0] > 0].tolist()))
    got = mapper.maps([ims[1]], [(0, Query(latents=(inactive,)))])
    assert got.flat[0] and got.targets[0] == 0 and got.maps[0].max() == 0


def test_method_errors(lite0, model):
    with pytest.raises(SparcError, match="is a CNN: it has no attention to roll out; use --method gradcam"):
        ImageMapper(model, "img", lite0, method="rollout")
    with pytest.raises(SparcError, match="reads texts, not images"):
        spatial_for(build("e5-small"), "txt")
