"""``hf-clip``: the image or text tower of a transformers ``CLIPModel``.

Features are ``get_image_features`` / ``get_text_features`` (the projected embeddings,
not normalised). Text is tokenised by the model's own tokenizer with truncation at
``max_length`` tokens (default 77, CLIP's context). Images follow the model's
``preprocessor_config.json`` (resize the shorter side, centre crop with the Hugging Face
offset convention, mean/std, resampling filter); without one, CLIP's defaults at the
model's input size.

Options: ``model`` (hub id or local folder; default the paper's weights in transformers
format, ``laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K``), ``tower`` (image|text),
``revision``, ``offline`` (use only the local cache), ``cache_dir``, ``max_length``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    is_local_path,
    model_label,
    one_line,
    prepare_model,
    require,
    require_attr,
)
from sparc.extract.backbones.base import BACKBONES, Tower, TowerBackbone
from sparc.extract.backbones.hub import HubOptions, hub_args, hub_weights_id, load_from_hub
from sparc.extract.backbones.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImagePreprocess,
    interpolation_name,
)
from sparc.options import OptionError


@dataclass(frozen=True, kw_only=True)
class HFClipOptions(Tower, HubOptions):
    """Options of ``hf-clip``."""

    model: str = "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"
    """Hugging Face hub id or local folder of a CLIPModel (default: the paper's weights in transformers format)."""

    max_length: int = 77
    """Text tower: tokens kept per caption (at most the model's context)."""

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise OptionError("max_length", self.max_length, "must be positive")


@BACKBONES.register("hf-clip")
class HFClipBackbone(TowerBackbone):
    """The image or text tower of a transformers CLIPModel: get_image_features / get_text_features."""

    Options = HFClipOptions
    options: HFClipOptions

    # What _load builds (None until then).
    model: Any = None
    tokenizer: Any = None
    preprocess: ImagePreprocess | None = None
    max_length: int | None = None
    """Text tower: ``max_length``, at most the model's context (known once loaded)."""

    def _load(self) -> None:
        o = self.options
        clip_model = require_attr("transformers", "CLIPModel", extra="transformers")
        model = load_from_hub(clip_model.from_pretrained, o.model, o, what="hf-clip")
        cfg = model.config
        # keep only the tower in use (and its projection)
        if o.tower == "image":
            model.text_model = None
            model.text_projection = None
        else:
            model.vision_model = None
            model.visual_projection = None
        self.model = prepare_model(model, self.device, self.dtype)
        self._dim = int(cfg.projection_dim)
        if o.tower == "image":
            self.preprocess = self._image_preprocess(cfg)
        else:
            try:
                auto_tokenizer = require_attr("transformers", "AutoTokenizer", extra="transformers")
                source, kwargs = hub_args(o.model, o)
                self.tokenizer = auto_tokenizer.from_pretrained(source, **kwargs)
            except (OSError, ValueError) as e:
                raise SparcError(f"hf-clip: could not load the tokenizer of {o.model} ({one_line(e, 200)})") from None
            self.max_length = min(int(o.max_length or 77), int(cfg.text_config.max_position_embeddings))

    def _image_preprocess(self, cfg: Any) -> ImagePreprocess:
        pp = self._preprocessor_config()
        image_size = int(cfg.vision_config.image_size)
        if pp is None:
            return ImagePreprocess(
                size=image_size, interpolation="bicubic", mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, offset="floor"
            )
        return preprocess_from_hf(pp, default_size=image_size)

    def _preprocessor_config(self) -> dict[str, Any] | None:
        source, kwargs = hub_args(self.options.model, self.options)
        if is_local_path(self.options.model):
            f = Path(source) / "preprocessor_config.json"
            return json.loads(f.read_text()) if f.is_file() else None
        hub = require("huggingface_hub", extra="transformers")
        try:
            path = hub.hf_hub_download(source, "preprocessor_config.json", **kwargs)
        except hub.errors.EntryNotFoundError:
            return None
        except OSError as e:
            raise SparcError(
                f"hf-clip: could not get preprocessor_config.json of {self.options.model} ({one_line(e, 200)})"
            ) from None
        return json.loads(Path(path).read_text())

    def _encode(self, items: Sequence[Any]) -> Tensor:
        if self.options.tower == "image":
            assert self.preprocess is not None
            out = self.model.get_image_features(pixel_values=self.preprocess(items).to(self.device, self.dtype))
        else:
            tok = self.tokenizer(
                [str(t) for t in items], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            out = self.model.get_text_features(
                input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
            )
        # transformers < 5 returns the tensor, >= 5 a BaseModelOutputWithPooling
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        o = self.options
        fp = super().fingerprint()
        fp.update({"model": model_label(o.model), "weights": hub_weights_id(o.model, o), "tower": o.tower, "code": 1})
        if o.tower == "image":
            assert self.preprocess is not None
            fp["preprocess"] = self.preprocess.describe()
        else:
            fp["tokenizer"] = {"max_length": self.max_length, "truncation": True}
        return fp


def preprocess_from_hf(pp: dict[str, Any], *, default_size: int) -> ImagePreprocess:
    """Our pipeline from a Hugging Face image-processor config (CLIP / BiT style).

    ``size`` is ``{"shortest_edge": r}`` (or a bare int, which CLIP reads the same way) or
    ``{"height": h, "width": w}`` (resize to exactly that); ``crop_size`` is the centre crop.
    """
    mean = tuple(pp.get("image_mean", OPENAI_CLIP_MEAN))
    std = tuple(pp.get("image_std", OPENAI_CLIP_STD))
    interp = interpolation_name(pp.get("resample", 3))
    size = pp.get("size", default_size) if pp.get("do_resize", True) else None
    crop = pp.get("crop_size") if pp.get("do_center_crop", True) else None
    if isinstance(crop, dict):
        if crop.get("height") != crop.get("width"):
            raise SparcError(f"non-square crop_size {crop} in preprocessor_config.json is not supported")
        crop = crop["height"]
    squash: int | None = None
    shortest: int | None = None
    if isinstance(size, dict):
        if "shortest_edge" in size:
            shortest = int(size["shortest_edge"])
        elif size.get("height") == size.get("width") and size.get("height") is not None:
            squash = int(size["height"])
        else:
            raise SparcError(f"unsupported image size {size} in preprocessor_config.json")
    elif size is not None:
        shortest = int(size)
    if crop is not None:
        crop = int(crop)
        if squash is not None and squash != crop:
            raise SparcError("preprocessor_config.json resizes to a square and crops; not supported")
        if squash is None:
            return ImagePreprocess(
                size=crop,
                resize=shortest if shortest is not None else crop,
                interpolation=interp,
                mean=mean,
                std=std,
                offset="floor",  # type: ignore[arg-type]
            )
        return ImagePreprocess(size=crop, interpolation=interp, mean=mean, std=std, mode="squash")  # type: ignore[arg-type]
    if squash is not None:
        return ImagePreprocess(size=squash, interpolation=interp, mean=mean, std=std, mode="squash")  # type: ignore[arg-type]
    raise SparcError("preprocessor_config.json without a centre crop gives non-square inputs; not supported")
