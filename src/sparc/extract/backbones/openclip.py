"""``open-clip``: the image or text tower of an OpenCLIP model (the paper's CLIP streams).

Features are ``encode_image`` / ``encode_text`` outputs, NOT L2-normalised (the feature
store normalises). Text goes through open_clip's own tokenizer for the model, which
truncates to the model's context length (77 tokens for the CLIP models). Images go
through :mod:`.preprocess` configured from the pretrained tag's preprocessing
(size, mean/std, interpolation, resize mode) exactly as ``open_clip``'s eval transform.

Options:

- ``model`` — architecture name (``ViT-L-14``, ``ViT-B-16``, ...), or
  ``hf-hub:org/repo`` / ``local-dir:/path`` (open_clip's schemas).
- ``pretrained`` — a tag (``datacomp_xl_s13b_b90k``, the paper's), a checkpoint file, or
  ``none`` for random weights (tests). Tags download to the Hugging Face cache
  (``HF_HOME``) or ``cache_dir``.
- ``checkpoint`` — a local checkpoint file to load instead of downloading; if
  ``pretrained`` is also a tag, the tag's preprocessing is used with these weights.
- ``tower`` — ``image`` or ``text``.
- ``cache_dir`` — download cache for the weights.

open_clip imports torchvision at import time (``open_clip/utils.py``), so it needs a
torchvision build that matches the installed torch; sparc itself does not use torchvision.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    hf_hub_hint,
    one_line,
    path_identity,
    prepare_model,
    require,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
from sparc.extract.backbones.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImagePreprocess,
)
from sparc.extract.files import existing_file
from sparc.options import OptionError

EXTRA = "open-clip"

# Loaded models shared by the image and text towers of the same weights (one copy in memory).
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], torch.nn.Module] = weakref.WeakValueDictionary()


def _open_clip():
    return require("open_clip", extra=EXTRA, pip="open_clip_torch")


@dataclass(frozen=True, kw_only=True)
class OpenClipOptions:
    """Options of ``open-clip``."""

    model: str = "ViT-L-14"
    """Architecture (ViT-L-14, ViT-B-16, ...), or hf-hub:org/repo or local-dir:/path (open_clip's schemas)."""

    pretrained: str | None = "datacomp_xl_s13b_b90k"
    """A pretrained tag (the paper's by default), a checkpoint file, or none for random weights."""

    tower: Literal["image", "text"] = "image"
    """Which tower, and so which modality, the stream encodes."""

    checkpoint: Path | None = None
    """A local checkpoint to load instead of downloading; with a pretrained tag, the tag's preprocessing is used."""

    cache_dir: Path | None = None
    """Download cache of the weights (none: the Hugging Face cache, HF_HOME)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise OptionError("model", self.model, "must name an architecture (e.g. ViT-L-14)")


@BACKBONES.register("open-clip")
class OpenClipBackbone(Backbone):
    """The image or text tower of an OpenCLIP model (the paper's CLIP streams): encode_image / encode_text."""

    family = "open-clip"
    Options = OpenClipOptions

    def __init__(self, options: OpenClipOptions = OpenClipOptions(), *, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(device=device, precision=precision)
        self.options = options
        self.model_name = options.model
        self.pretrained = options.pretrained
        self.tower = options.tower
        self.modality = self.tower
        self.checkpoint = (
            str(existing_file(options.checkpoint, "open-clip checkpoint").resolve())
            if options.checkpoint is not None
            else None
        )
        pretrained_file = self.pretrained is not None and Path(self.pretrained).expanduser().is_file()
        if pretrained_file and self.checkpoint is None and not self._is_schema():
            # a pretrained file path is a checkpoint too
            self.checkpoint = str(Path(self.pretrained).expanduser().resolve())  # type: ignore[arg-type]
            self.pretrained = None
        self.cache_dir = os.fspath(options.cache_dir) if options.cache_dir is not None else None
        self._model: torch.nn.Module | None = None
        self._preprocess: ImagePreprocess | None = None
        self._tokenizer: Any = None

    def _is_schema(self) -> bool:
        return self.model_name.startswith(("hf-hub:", "local-dir:"))

    # -- weights -------------------------------------------------------------------
    def _tag_cfg(self) -> dict[str, Any]:
        """The pretrained tag's config (download source and preprocessing), {} if none."""
        if self.pretrained is None or self._is_schema():
            return {}
        oc = _open_clip()
        cfg = oc.get_pretrained_cfg(self.model_name, self.pretrained)
        if not cfg:
            tags = oc.list_pretrained_tags_by_model(self.model_name)
            raise SparcError(
                f"open-clip: {self.pretrained!r} is not a pretrained tag of {self.model_name} nor a file; "
                f"tags: {', '.join(tags) or 'none'}"
            )
        return cfg

    def _weights_id(self) -> Any:
        if self.checkpoint is not None:
            return {"checkpoint": path_identity(self.checkpoint), "tag": self.pretrained}
        if self._is_schema():
            if self.model_name.startswith("local-dir:"):
                return {"local_dir": path_identity(self.model_name.split(":", 1)[1])}
            return {"hf_hub": self.model_name.split(":", 1)[1]}
        return {"tag": self.pretrained}  # None = random init

    def _load(self) -> None:
        oc = _open_clip()
        tag_cfg = self._tag_cfg()
        key = (self.model_name, repr(self._weights_id()), str(self.device), self.dtype)
        model = _SHARED.get(key)
        if model is None:
            source = (
                self.checkpoint if self.checkpoint is not None else (None if self._is_schema() else self.pretrained)
            )
            try:
                model = oc.create_model(
                    self.model_name, pretrained=source, cache_dir=self.cache_dir, device="cpu", precision="fp32"
                )
            except SparcError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure becomes a one-line SparcError
                raise SparcError(self._load_error(tag_cfg, e)) from None
            model = prepare_model(model, self.device, self.dtype)
            _SHARED[key] = model
        self._model = model
        if self.tower == "image":
            cfg = dict(oc.get_model_preprocess_cfg(model))
            if self.checkpoint is not None and tag_cfg:
                # weights from a file, preprocessing of the tag they came from
                for k in ("mean", "std", "interpolation", "resize_mode", "fill_color"):
                    if k in tag_cfg:
                        cfg[k] = tag_cfg[k]
            self._preprocess = _preprocess_from_cfg(cfg)
            with torch.no_grad():
                probe = torch.zeros(
                    1, 3, self._preprocess.size, self._preprocess.size, device=self.device, dtype=self.dtype
                )
                self._dim = int(model.encode_image(probe).shape[-1])
        else:
            self._tokenizer = oc.get_tokenizer(self.model_name, cache_dir=self.cache_dir)
            with torch.no_grad():
                self._dim = int(model.encode_text(self._tokenizer(["a"]).to(self.device)).shape[-1])

    def _load_error(self, tag_cfg: dict[str, Any], e: Exception) -> str:
        why = one_line(f"{type(e).__name__}: {e}", 160)
        if self.checkpoint is not None:
            return f"open-clip: could not load checkpoint {self.checkpoint} into {self.model_name} ({why})"
        if self._is_schema():
            repo = self.model_name.split(":", 1)[1]
            if self.model_name.startswith("local-dir:"):
                return f"open-clip: could not load {self.model_name} ({why})"
            return f"open-clip: could not load {self.model_name} ({why}); " + hf_hub_hint(
                repo, "or download it into a folder and pass model=local-dir:FOLDER"
            )
        hub = str(tag_cfg.get("hf_hub", ""))
        if hub:
            parts = hub.strip("/").split("/")
            repo = "/".join(parts[:2])
            fname = parts[2] if len(parts) > 2 else "open_clip_pytorch_model.bin or open_clip_model.safetensors"
            return (
                f"open-clip: weights {self.model_name}/{self.pretrained} are not available offline ({why}); "
                + hf_hub_hint(repo, f"or download {fname} from {repo} and pass checkpoint=FILE")
            )
        url = tag_cfg.get("url", "")
        return (
            f"open-clip: weights {self.model_name}/{self.pretrained} could not be downloaded ({why}); "
            f"download {url or 'the checkpoint'} and pass checkpoint=FILE"
        )

    # -- encoding --------------------------------------------------------------------
    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self._model is not None
        if self.tower == "image":
            assert self._preprocess is not None
            x = self._preprocess(items).to(self.device, self.dtype)
            return self._model.encode_image(x)
        tokens = self._tokenizer([str(t) for t in items]).to(self.device)
        return self._model.encode_text(tokens)

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        fp = super().fingerprint()
        model = self.model_name
        if model.startswith("local-dir:"):
            model = "local-dir:" + Path(model.split(":", 1)[1]).name  # the content digest is in weights
        fp.update({"model": model, "weights": self._weights_id(), "tower": self.tower, "code": 1})
        if self.tower == "image":
            assert self._preprocess is not None
            fp["preprocess"] = self._preprocess.describe()
        else:
            fp["tokenizer"] = {
                "open_clip": self.model_name,
                "context_length": getattr(self._tokenizer, "context_length", None),
            }
        return fp


def _preprocess_from_cfg(cfg: dict[str, Any]) -> ImagePreprocess:
    size = cfg.get("size", 224)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise SparcError(f"open-clip: non-square input size {tuple(size)} is not supported")
        size = size[0]
    mode = {"shortest": "crop", "longest": "pad", "squash": "squash"}.get(cfg.get("resize_mode", "shortest"))
    if mode is None:
        raise SparcError(f"open-clip: unknown resize_mode {cfg.get('resize_mode')!r}")
    interp = cfg.get("interpolation", "bicubic")
    interp = "bilinear" if interp == "bilinear" else "bicubic"  # open_clip: anything else → bicubic
    return ImagePreprocess(
        size=int(size),
        interpolation=interp,
        mean=tuple(cfg.get("mean", OPENAI_CLIP_MEAN)),  # type: ignore[arg-type]
        std=tuple(cfg.get("std", OPENAI_CLIP_STD)),  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        fill=int(cfg.get("fill_color", 0)),
    )
