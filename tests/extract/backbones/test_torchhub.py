"""``dinov2-hub`` through torch.hub, with a local stand-in for the DINOv2 repository.

The real ``facebookresearch/dinov2`` code cannot be fetched here, so a local hub repo
whose ``hubconf.py`` has the same entry point, arguments, weight URL and
``forward_features`` output keys as DINOv2's exercises everything sparc does: the
``torch.hub.load`` call (source=local), the CLS-after-norm key, weights files, and the
offline errors. The network is replaced by a failing stub, so nothing is downloaded.
"""

from __future__ import annotations

import textwrap
import urllib.error
from pathlib import Path

import pytest
import torch
from PIL import Image

from sparc.errors import SparcError
from sparc.extract.backbones import build

HUBCONF = textwrap.dedent(
    '''
    """Stand-in for facebookresearch/dinov2's hubconf: same entry point and output keys."""
    import torch
    from torch import nn

    dependencies = ["torch"]
    _URL = "https://dl.fbaipublicfiles.com/dinov2"


    class TinyDinoV2(nn.Module):
        def __init__(self, embed_dim=24, patch_size=14, num_register_tokens=4):
            super().__init__()
            self.embed_dim = embed_dim
            self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
            self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
            self.register_tokens = nn.Parameter(torch.randn(1, num_register_tokens, embed_dim))
            self.block = nn.TransformerEncoderLayer(embed_dim, 4, 48, dropout=0.0, batch_first=True)
            self.norm = nn.LayerNorm(embed_dim)
            self.n_reg = num_register_tokens

        def forward_features(self, x):
            p = self.patch_embed(x).flatten(2).transpose(1, 2)
            n = x.shape[0]
            t = torch.cat([self.cls_token.expand(n, -1, -1), self.register_tokens.expand(n, -1, -1), p], 1)
            t = self.norm(self.block(t))
            return {
                "x_norm_clstoken": t[:, 0],
                "x_norm_regtokens": t[:, 1 : 1 + self.n_reg],
                "x_norm_patchtokens": t[:, 1 + self.n_reg :],
                "x_prenorm": t,
                "masks": None,
            }

        def forward(self, x, is_training=False):
            return self.forward_features(x)["x_norm_clstoken"]


    def dinov2_vits14_reg(*, pretrained: bool = True, **kwargs):
        model = TinyDinoV2(**kwargs)
        if pretrained:
            url = f"{_URL}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"
            model.load_state_dict(torch.hub.load_state_dict_from_url(url, map_location="cpu"))
        return model
    '''
)


@pytest.fixture
def repo(tmp_path) -> Path:
    d = tmp_path / "dinov2"
    d.mkdir()
    (d / "hubconf.py").write_text(HUBCONF)
    return d


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch.hub cache and a network that refuses every request."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch-hub"))
    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def images():
    return [Image.new("RGB", (300, 200), (200, 30, 30)), Image.new("RGB", (120, 160), (20, 90, 200))]


def test_local_repo_cls_token(repo, offline):
    torch.manual_seed(0)
    b = build("dinov2-hub", model="dinov2_vits14_reg", repo=str(repo), pretrained=False)
    assert b.dim == 24  # a local repo: the dim comes from the loaded model's embed_dim
    f = b.encode(images())
    assert f.shape == (2, 24) and f.dtype == torch.float32
    with torch.no_grad():
        want = b.model.forward_features(b.preprocess(images()))["x_norm_clstoken"]
    assert torch.equal(f, want)
    fp = b.fingerprint()
    assert fp["weights"]["hub"]["name"] == "dinov2" and len(fp["weights"]["hub"]["hubconf_sha256"]) == 64
    assert fp["feature"] == "cls_after_final_norm"


def test_local_weights_file(repo, offline, tmp_path):
    torch.manual_seed(0)
    a = build("dinov2-hub", model="dinov2_vits14_reg", repo=str(repo), pretrained=False)
    want = a.encode(images())
    w = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(a.model.state_dict(), w)
    torch.manual_seed(1)
    b = build("dinov2-hub", model="dinov2_vits14_reg", repo=str(repo), weights=str(w))
    assert torch.equal(b.encode(images()), want)
    assert b.fingerprint()["weights"]["name"] == w.name


def test_weights_that_do_not_fit(repo, offline, tmp_path):
    w = tmp_path / "other.pth"
    torch.save({"foo": torch.zeros(2)}, w)
    with pytest.raises(SparcError, match="other.pth does not fit dinov2_vits14_reg"):
        build("dinov2-hub", model="dinov2_vits14_reg", repo=str(repo), weights=str(w)).load()


def test_pretrained_weights_offline_say_what_to_download(repo, offline):
    b = build("dinov2-hub", model="dinov2_vits14_reg", repo=str(repo))
    with pytest.raises(SparcError) as e:
        b.load()
    msg = str(e.value)
    assert "dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth" in msg
    assert "torch-hub/checkpoints" in msg and "weights=FILE" in msg


def test_github_repo_offline_says_to_clone(offline):
    b = build("dinov2-hub")  # facebookresearch/dinov2, not in the (empty) hub cache
    with pytest.raises(
        SparcError, match=r"could not fetch the torch.hub repo facebookresearch/dinov2 .*repo=/path/to/clone"
    ):
        b.load()


def test_weights_url_of_the_paper_model():
    b = build("dinov2-hub")
    assert b.weights_url() == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"
    assert (
        build("dinov2-hub", model="dinov2_vitb14").weights_url().endswith("dinov2_vitb14/dinov2_vitb14_pretrain.pth")
    )
