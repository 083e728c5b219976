"""DINOv2 image features — the CLS token after the final norm — from three loaders.

All three default to the paper's preprocessing: resize the shorter side to 256
(bicubic), centre-crop 224, ImageNet mean/std (options ``resize`` and ``image_size``).
The paper's model is ViT-L/14 with registers (1024-d).

- ``dinov2-hub`` — ``torch.hub.load("facebookresearch/dinov2", "dinov2_vitl14_reg")``;
  feature = ``forward_features(x)["x_norm_clstoken"]``. Options: ``model`` (hub entry
  point), ``repo`` (GitHub ``owner/name[:ref]`` or a local clone), ``pretrained``
  (false: random init), ``weights`` (local checkpoint file, e.g. the downloaded
  ``dinov2_vitl14_reg4_pretrain.pth``). Offline, the repo must be in
  ``$TORCH_HOME/hub`` (or passed as a local clone) and the weights in
  ``$TORCH_HOME/hub/checkpoints`` (or passed as ``weights``).
- ``dinov2-timm`` — ``timm.create_model("vit_large_patch14_reg4_dinov2.lvd142m",
  num_classes=0, dynamic_img_size=True)``; feature = the pooled output (``global_pool=
  "token"``: the CLS token after the final norm). Options: ``model``, ``pretrained``,
  ``checkpoint`` (local weights file), ``cache_dir``. The position embeddings are
  interpolated at run time from the 37×37 pretraining grid, as the hub model does.
- ``dinov2-hf`` — ``transformers.AutoModel.from_pretrained(
  "facebook/dinov2-with-registers-large")``; feature = ``pooler_output``, which
  transformers defines as ``layernorm(last_hidden_state)[:, 0]`` (``last_hidden_state``
  is returned post-norm too). Options: ``model`` (hub id or local folder),
  ``revision``, ``offline`` (only the local cache), ``cache_dir``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    hf_hub_hint,
    model_label,
    one_line,
    path_identity,
    prepare_model,
    require,
    require_attr,
    weights_file,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
from sparc.extract.backbones.hub import CacheDir, HubOptions, hub_weights_id, load_from_hub
from sparc.extract.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from sparc.options import OptionError

# Embedding width by ViT size letter in the DINOv2 names (s/b/l/g).
_WIDTH = {"s": 384, "b": 768, "l": 1024, "g": 1536}
_DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"


def paper_preprocess(image_size: int = 224, resize: int | None = None, *, offset: str = "round") -> ImagePreprocess:
    """Resize 256 (bicubic) → centre crop 224 → ImageNet mean/std; resize defaults to
    ``round(image_size / 0.875)`` so other sizes keep the same crop fraction."""
    return ImagePreprocess(
        size=image_size,
        resize=round(image_size / 0.875) if resize is None else resize,
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        offset=offset,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, kw_only=True)
class Dinov2Preprocess:
    """The preprocessing options every DINOv2 family shares (the paper's by default)."""

    image_size: int = 224
    """Side of the square model input (the centre crop)."""

    resize: int | None = None
    """Shorter side after the bicubic resize (none: round(image_size / 0.875), the paper's 256 for 224)."""

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise OptionError("image_size", self.image_size, "must be positive")
        if self.resize is not None and self.resize <= 0:
            raise OptionError("resize", self.resize, "must be positive")


class _Dinov2Base(Backbone):
    modality = "image"
    options: Any
    """The family's options (a :class:`Dinov2Preprocess` with its ``model``)."""

    weights_option: str | None = None
    """The option naming a local weights file, if the family has one."""

    def __init__(self, options: Dinov2Preprocess | None = None, *, device: str = "cpu", precision: Precision = "fp32"):
        options = self.Options() if options is None else options
        super().__init__(options, device=device, precision=precision)
        self.preprocess = paper_preprocess(options.image_size, options.resize)
        self.model: torch.nn.Module | None = None
        option = self.weights_option
        self.weights_file = None if option is None else weights_file(getattr(options, option), f"{self.family} {option}")
        """The local weights file resolved to an absolute path (None: the library's own weights, or none)."""

    def _pixels(self, items: Sequence[Any]) -> Tensor:
        return self.preprocess(items).to(self.device, self.dtype)

    def _weights_id(self) -> Any:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp.update(
            {
                "model": model_label(self.options.model),
                "weights": self._weights_id(),
                "feature": "cls_after_final_norm",
                "preprocess": self.preprocess.describe(),
                "code": 1,
            }
        )
        return fp


# --------------------------------------------------------------------------- torch.hub
@dataclass(frozen=True, kw_only=True)
class Dinov2HubOptions(Dinov2Preprocess):
    """Options of ``dinov2-hub``."""

    model: str = "dinov2_vitl14_reg"
    """torch.hub entry point of the repo (the paper's ViT-L/14 with registers)."""

    repo: str = "facebookresearch/dinov2"
    """GitHub owner/name[:ref] of the hub repo, or a local clone."""

    pretrained: bool = True
    """Load the official weights (false: random init)."""

    weights: Path | None = None
    """Local checkpoint file to load instead (e.g. the downloaded dinov2_vitl14_reg4_pretrain.pth)."""


@BACKBONES.register("dinov2-hub")
class Dinov2HubBackbone(_Dinov2Base):
    """DINOv2 from torch.hub: the CLS token after the final norm (x_norm_clstoken)."""

    Options = Dinov2HubOptions
    options: Dinov2HubOptions
    weights_option = "weights"

    @property
    def local_repo(self) -> bool:
        """Whether ``repo`` is a local clone (else a GitHub owner/name[:ref])."""
        return Path(self.options.repo).expanduser().is_dir()

    def _weights_id(self) -> Any:
        if self.weights_file is not None:
            return path_identity(self.weights_file)
        repo = self.options.repo
        return {
            "hub": repo if not self.local_repo else path_identity_dir(repo),
            "pretrained": self.options.pretrained,
        }

    def weights_url(self) -> str:
        name = self.options.model
        arch = name.removesuffix("_reg")
        return f"{_DINOV2_URL}/{arch}/{arch}{'_reg4' if name.endswith('_reg') else ''}_pretrain.pth"

    def _repo_cached(self) -> bool:
        if self.local_repo:
            return True
        owner_name, _, ref = self.options.repo.partition(":")
        owner, _, name = owner_name.partition("/")
        return (Path(torch.hub.get_dir()) / f"{owner}_{name}_{(ref or 'main').replace('/', '_')}").is_dir()

    def _load(self) -> None:
        o = self.options
        local_repo, repo_cached = self.local_repo, self._repo_cached()
        kwargs = {"pretrained": o.pretrained and self.weights_file is None}
        try:
            model = torch.hub.load(
                str(Path(o.repo).expanduser()) if local_repo else o.repo,
                o.model,
                source="local" if local_repo else "github",
                trust_repo=True,  # the user named the repo in the stream spec
                verbose=False,
                **kwargs,
            )
        except SparcError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure becomes a one-line SparcError
            why = one_line(f"{type(e).__name__}: {e}", 160)
            if not repo_cached:
                raise SparcError(
                    f"dinov2-hub: could not fetch the torch.hub repo {o.repo} ({why}); offline, clone "
                    f"https://github.com/{o.repo.split(':')[0]} and pass repo=/path/to/clone, or copy a torch.hub "
                    f"cache into $TORCH_HOME/hub (now {torch.hub.get_dir()})"
                ) from None
            if kwargs["pretrained"]:
                raise SparcError(
                    f"dinov2-hub: could not load {o.model} weights ({why}); download {self.weights_url()} "
                    f"into {Path(torch.hub.get_dir()) / 'checkpoints'} (TORCH_HOME) or pass weights=FILE"
                ) from None
            raise SparcError(f"dinov2-hub: could not build {o.model} from {o.repo} ({why})") from None
        if self.weights_file is not None:
            state = torch.load(self.weights_file, map_location="cpu", weights_only=True)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise SparcError(
                    f"dinov2-hub: {self.weights_file} does not fit {o.model} ({one_line(e, 200)})"
                ) from None
        self.model = prepare_model(model, self.device, self.dtype)
        self._dim = int(getattr(model, "embed_dim", 0)) or self._probe_dim()

    def _probe_dim(self) -> int:
        size = self.preprocess.size
        x = torch.zeros(1, 3, size, size, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            return int(self.cls_features(x).shape[-1])

    def cls_features(self, x: Tensor) -> Tensor:
        assert self.model is not None
        out = self.model.forward_features(x)
        if isinstance(out, dict):
            return out["x_norm_clstoken"]
        raise SparcError(f"dinov2-hub: {self.options.model}.forward_features did not return DINOv2's output dict")

    def _encode(self, items: Sequence[Any]) -> Tensor:
        return self.cls_features(self._pixels(items))

    @property
    def dim(self) -> int:
        if self._dim is None:
            letter = _vit_letter(self.options.model)
            if letter is not None and self.options.repo.split(":")[0] == "facebookresearch/dinov2":
                return _WIDTH[letter]  # the official models' widths, known without loading
            self.load()
        assert self._dim is not None
        return self._dim


def path_identity_dir(path: str) -> dict[str, Any]:
    """A local hub repo is identified by its path and the digest of its hubconf.py."""
    p = Path(path).expanduser().resolve()
    hubconf = p / "hubconf.py"
    return {"name": p.name, "hubconf_sha256": path_identity(hubconf)["sha256"] if hubconf.is_file() else None}


def _vit_letter(name: str) -> str | None:
    """``dinov2_vitl14_reg`` → ``"l"`` (None for other names)."""
    m = re.fullmatch(r"dinov2_vit([sblg])14(_reg)?", name)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------- timm
@dataclass(frozen=True, kw_only=True)
class Dinov2TimmOptions(CacheDir, Dinov2Preprocess):
    """Options of ``dinov2-timm``."""

    model: str = "vit_large_patch14_reg4_dinov2.lvd142m"
    """timm model name."""

    pretrained: bool = True
    """Load the pretrained weights (false: random init)."""

    checkpoint: Path | None = None
    """Local weights file (e.g. model.safetensors of the timm hub repo) instead of the download."""


@BACKBONES.register("dinov2-timm")
class Dinov2TimmBackbone(_Dinov2Base):
    """DINOv2 from timm: the pooled CLS token after the final norm."""

    Options = Dinov2TimmOptions
    options: Dinov2TimmOptions
    weights_option = "checkpoint"

    def _weights_id(self) -> Any:
        if self.weights_file is not None:
            return path_identity(self.weights_file)
        return {"timm": self.options.model, "pretrained": self.options.pretrained}

    def _load(self) -> None:
        timm = require("timm", extra="timm")
        name = self.options.model
        kwargs: dict[str, Any] = {"num_classes": 0, "dynamic_img_size": True}
        if self.weights_file is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": self.weights_file}
        if self.options.cache_folder is not None:
            kwargs["cache_dir"] = self.options.cache_folder
        pretrained = self.options.pretrained or self.weights_file is not None
        try:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure becomes a one-line SparcError
            why = one_line(f"{type(e).__name__}: {e}", 160)
            if "Unknown model" in str(e):
                raise SparcError(f"dinov2-timm: timm has no model {name!r}") from None
            if pretrained and self.weights_file is None:
                hub_id = _timm_hub_id(timm, name) or f"timm/{name}"
                raise SparcError(
                    f"dinov2-timm: weights of {name} are not available offline ({why}); "
                    + hf_hub_hint(hub_id, f"or download model.safetensors from {hub_id} and pass checkpoint=FILE")
                ) from None
            raise SparcError(f"dinov2-timm: could not build {name} ({why})") from None
        self.model = prepare_model(model, self.device, self.dtype)
        self._dim = int(model.num_features)

    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self.model is not None
        feats = self.model.forward_features(self._pixels(items))
        return self.model.forward_head(feats, pre_logits=True)


def _timm_hub_id(timm: Any, name: str) -> str | None:
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - any failure becomes a one-line SparcError
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


# ---------------------------------------------------------------------------- transformers
@dataclass(frozen=True, kw_only=True)
class Dinov2HFOptions(HubOptions, Dinov2Preprocess):
    """Options of ``dinov2-hf``."""

    model: str = "facebook/dinov2-with-registers-large"
    """Hugging Face hub id or local model folder."""


@BACKBONES.register("dinov2-hf")
class Dinov2HFBackbone(_Dinov2Base):
    """DINOv2 from transformers: pooler_output, the CLS token after the final layernorm."""

    Options = Dinov2HFOptions
    options: Dinov2HFOptions

    def _weights_id(self) -> Any:
        return hub_weights_id(self.options.model, self.options)

    def _load(self) -> None:
        auto_model = require_attr("transformers", "AutoModel", extra="transformers")
        model = load_from_hub(auto_model.from_pretrained, self.options.model, self.options, what="dinov2-hf")
        self.model = prepare_model(model, self.device, self.dtype)
        self._dim = int(model.config.hidden_size)

    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self.model is not None
        return self.model(pixel_values=self._pixels(items)).pooler_output
