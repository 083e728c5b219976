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

import os
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
    is_local_path,
    model_label,
    one_line,
    path_identity,
    prepare_model,
    require,
    require_attr,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
from sparc.extract.backbones.preprocess import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocess
from sparc.extract.files import existing_file
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

    def __init__(self, options: Dinov2Preprocess, *, device: str, precision: Precision):
        super().__init__(device=device, precision=precision)
        self.options = options
        self.preprocess = paper_preprocess(options.image_size, options.resize)
        self._model: torch.nn.Module | None = None

    def _pixels(self, items: Sequence[Any]) -> Tensor:
        return self.preprocess(items).to(self.device, self.dtype)

    def _weights_id(self) -> Any:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp.update(
            {
                "model": model_label(self.model_name),
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

    family = "dinov2-hub"
    Options = Dinov2HubOptions

    def __init__(
        self, options: Dinov2HubOptions = Dinov2HubOptions(), *, device: str = "cpu", precision: Precision = "fp32"
    ):
        super().__init__(options, device=device, precision=precision)
        self.model_name = options.model
        self.repo = options.repo
        self.pretrained = options.pretrained
        self.weights = (
            str(existing_file(options.weights, "dinov2-hub weights").resolve()) if options.weights is not None else None
        )
        self.local_repo = Path(self.repo).expanduser().is_dir()

    def _weights_id(self) -> Any:
        if self.weights is not None:
            return path_identity(self.weights)
        return {
            "hub": self.repo if not self.local_repo else path_identity_dir(self.repo),
            "pretrained": self.pretrained,
        }

    def _weights_url(self) -> str:
        name = self.model_name
        arch = name.removesuffix("_reg")
        return f"{_DINOV2_URL}/{arch}/{arch}{'_reg4' if name.endswith('_reg') else ''}_pretrain.pth"

    def _repo_cached(self) -> bool:
        if self.local_repo:
            return True
        owner_name, _, ref = self.repo.partition(":")
        owner, _, name = owner_name.partition("/")
        return (Path(torch.hub.get_dir()) / f"{owner}_{name}_{(ref or 'main').replace('/', '_')}").is_dir()

    def _load(self) -> None:
        repo_cached = self._repo_cached()
        kwargs = {"pretrained": self.pretrained and self.weights is None}
        try:
            model = torch.hub.load(
                str(Path(self.repo).expanduser()) if self.local_repo else self.repo,
                self.model_name,
                source="local" if self.local_repo else "github",
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
                    f"dinov2-hub: could not fetch the torch.hub repo {self.repo} ({why}); offline, clone "
                    f"https://github.com/{self.repo.split(':')[0]} and pass repo=/path/to/clone, or copy a torch.hub "
                    f"cache into $TORCH_HOME/hub (now {torch.hub.get_dir()})"
                ) from None
            if kwargs["pretrained"]:
                raise SparcError(
                    f"dinov2-hub: could not load {self.model_name} weights ({why}); download {self._weights_url()} "
                    f"into {Path(torch.hub.get_dir()) / 'checkpoints'} (TORCH_HOME) or pass weights=FILE"
                ) from None
            raise SparcError(f"dinov2-hub: could not build {self.model_name} from {self.repo} ({why})") from None
        if self.weights is not None:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise SparcError(
                    f"dinov2-hub: {self.weights} does not fit {self.model_name} ({one_line(e, 200)})"
                ) from None
        self._model = prepare_model(model, self.device, self.dtype)
        self._dim = int(getattr(model, "embed_dim", 0)) or self._probe_dim()

    def _probe_dim(self) -> int:
        size = self.preprocess.size
        x = torch.zeros(1, 3, size, size, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            return int(self._cls(x).shape[-1])

    def _cls(self, x: Tensor) -> Tensor:
        assert self._model is not None
        out = self._model.forward_features(x)
        if isinstance(out, dict):
            return out["x_norm_clstoken"]
        raise SparcError(f"dinov2-hub: {self.model_name}.forward_features did not return DINOv2's output dict")

    def _encode(self, items: Sequence[Any]) -> Tensor:
        return self._cls(self._pixels(items))

    @property
    def dim(self) -> int:
        if self._dim is None:
            letter = _vit_letter(self.model_name)
            if letter is not None and self.repo.split(":")[0] == "facebookresearch/dinov2":
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
class Dinov2TimmOptions(Dinov2Preprocess):
    """Options of ``dinov2-timm``."""

    model: str = "vit_large_patch14_reg4_dinov2.lvd142m"
    """timm model name."""

    pretrained: bool = True
    """Load the pretrained weights (false: random init)."""

    checkpoint: Path | None = None
    """Local weights file (e.g. model.safetensors of the timm hub repo) instead of the download."""

    cache_dir: Path | None = None
    """Download cache of the weights (none: the Hugging Face cache, HF_HOME)."""


@BACKBONES.register("dinov2-timm")
class Dinov2TimmBackbone(_Dinov2Base):
    """DINOv2 from timm: the pooled CLS token after the final norm."""

    family = "dinov2-timm"
    Options = Dinov2TimmOptions

    def __init__(
        self, options: Dinov2TimmOptions = Dinov2TimmOptions(), *, device: str = "cpu", precision: Precision = "fp32"
    ):
        super().__init__(options, device=device, precision=precision)
        self.model_name = options.model
        self.pretrained = options.pretrained
        self.checkpoint = (
            str(existing_file(options.checkpoint, "dinov2-timm checkpoint").resolve())
            if options.checkpoint is not None
            else None
        )
        self.cache_dir = os.fspath(options.cache_dir) if options.cache_dir is not None else None

    def _weights_id(self) -> Any:
        if self.checkpoint is not None:
            return path_identity(self.checkpoint)
        return {"timm": self.model_name, "pretrained": self.pretrained}

    def _load(self) -> None:
        timm = require("timm", extra="timm")
        kwargs: dict[str, Any] = {"num_classes": 0, "dynamic_img_size": True}
        if self.checkpoint is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": self.checkpoint}
        if self.cache_dir is not None:
            kwargs["cache_dir"] = self.cache_dir
        pretrained = self.pretrained or self.checkpoint is not None
        try:
            model = timm.create_model(self.model_name, pretrained=pretrained, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure becomes a one-line SparcError
            why = one_line(f"{type(e).__name__}: {e}", 160)
            if "Unknown model" in str(e):
                raise SparcError(f"dinov2-timm: timm has no model {self.model_name!r}") from None
            if pretrained and self.checkpoint is None:
                hub_id = _timm_hub_id(timm, self.model_name) or f"timm/{self.model_name}"
                raise SparcError(
                    f"dinov2-timm: weights of {self.model_name} are not available offline ({why}); "
                    + hf_hub_hint(hub_id, f"or download model.safetensors from {hub_id} and pass checkpoint=FILE")
                ) from None
            raise SparcError(f"dinov2-timm: could not build {self.model_name} ({why})") from None
        self._model = prepare_model(model, self.device, self.dtype)
        self._dim = int(model.num_features)

    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self._model is not None
        feats = self._model.forward_features(self._pixels(items))
        return self._model.forward_head(feats, pre_logits=True)


def _timm_hub_id(timm: Any, name: str) -> str | None:
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - any failure becomes a one-line SparcError
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


# ---------------------------------------------------------------------------- transformers
@dataclass(frozen=True, kw_only=True)
class Dinov2HFOptions(Dinov2Preprocess):
    """Options of ``dinov2-hf``."""

    model: str = "facebook/dinov2-with-registers-large"
    """Hugging Face hub id or local model folder."""

    revision: str | None = None
    """Hub revision (branch, tag or commit)."""

    offline: bool = False
    """Use only the local Hugging Face cache."""

    cache_dir: Path | None = None
    """Download cache (none: the Hugging Face cache, HF_HOME)."""


@BACKBONES.register("dinov2-hf")
class Dinov2HFBackbone(_Dinov2Base):
    """DINOv2 from transformers: pooler_output, the CLS token after the final layernorm."""

    family = "dinov2-hf"
    Options = Dinov2HFOptions

    def __init__(
        self, options: Dinov2HFOptions = Dinov2HFOptions(), *, device: str = "cpu", precision: Precision = "fp32"
    ):
        super().__init__(options, device=device, precision=precision)
        self.model_name = options.model
        self.revision = options.revision
        self.offline = options.offline
        self.cache_dir = os.fspath(options.cache_dir) if options.cache_dir is not None else None

    def _weights_id(self) -> Any:
        if is_local_path(self.model_name):
            return path_identity(self.model_name)
        return {"hf": self.model_name, "revision": self.revision}

    def _load(self) -> None:
        model = load_hf(
            require_attr("transformers", "AutoModel", extra="transformers"),
            self.model_name,
            what="dinov2-hf",
            revision=self.revision,
            offline=self.offline,
            cache_dir=self.cache_dir,
        )
        self._model = prepare_model(model, self.device, self.dtype)
        self._dim = int(model.config.hidden_size)

    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self._model is not None
        return self._model(pixel_values=self._pixels(items)).pooler_output


def load_hf(cls: Any, name: str, *, what: str, revision: str | None, offline: bool, cache_dir: str | None) -> Any:
    """``cls.from_pretrained(name)`` with missing weights reported as a SparcError."""
    local = is_local_path(name)
    try:
        return cls.from_pretrained(
            str(Path(name).expanduser()) if local else name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline or local,
        )
    except OSError as e:
        why = one_line(f"{type(e).__name__}: {e}", 160)
        if local:
            raise SparcError(f"{what}: could not load the model folder {name} ({why})") from None
        raise SparcError(
            f"{what}: {name} is not available ({why}); "
            + hf_hub_hint(name, "or download it into a folder and pass model=FOLDER")
        ) from None
    except ValueError as e:
        raise SparcError(f"{what}: could not load {name} ({one_line(e, 200)})") from None
