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

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    hf_hub_hint,
    one_line,
    path_identity,
    prepare_model,
    require,
    weights_file,
)
from sparc.extract.backbones.base import BACKBONES, Precision, Tower, TowerBackbone
from sparc.extract.backbones.hub import CacheDir
from sparc.extract.backbones.preprocess import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImagePreprocess,
)
from sparc.options import OptionError

EXTRA = "open-clip"

# Loaded models shared by the image and text towers of the same weights (one copy in memory).
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], torch.nn.Module] = weakref.WeakValueDictionary()


def _open_clip():
    return require("open_clip", extra=EXTRA, pip="open_clip_torch")


@dataclass(frozen=True, kw_only=True)
class OpenClipOptions(Tower, CacheDir):
    """Options of ``open-clip``."""

    model: str = "ViT-L-14"
    """Architecture (ViT-L-14, ViT-B-16, ...), or hf-hub:org/repo or local-dir:/path (open_clip's schemas)."""

    pretrained: str | None = "datacomp_xl_s13b_b90k"
    """A pretrained tag (the paper's by default), a checkpoint file, or none for random weights."""

    checkpoint: Path | None = None
    """A local checkpoint to load instead of downloading; with a pretrained tag, the tag's preprocessing is used."""

    def __post_init__(self) -> None:
        if not self.model:
            raise OptionError("model", self.model, "must name an architecture (e.g. ViT-L-14)")


@BACKBONES.register("open-clip")
class OpenClipBackbone(TowerBackbone):
    """The image or text tower of an OpenCLIP model (the paper's CLIP streams): encode_image / encode_text."""

    Options = OpenClipOptions

    def __init__(self, options: OpenClipOptions = OpenClipOptions(), *, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(options, device=device, precision=precision)
        self.weights_file = weights_file(options.checkpoint, "open-clip checkpoint")
        """The checkpoint file to load, resolved: ``checkpoint``, or ``pretrained`` when it names a file."""
        self.tag = options.pretrained
        """The pretrained tag (None: random weights, a schema's own, or ``pretrained`` was a file)."""
        pretrained_file = self.tag is not None and Path(self.tag).expanduser().is_file()
        if pretrained_file and self.weights_file is None and not self._is_schema():
            # a pretrained file path is a checkpoint too
            self.weights_file = str(Path(self.tag).expanduser().resolve())  # type: ignore[arg-type]
            self.tag = None
        self.model: torch.nn.Module | None = None
        self.preprocess: ImagePreprocess | None = None
        self.tokenizer: Any = None

    def _is_schema(self) -> bool:
        return self.options.model.startswith(("hf-hub:", "local-dir:"))

    # -- weights -------------------------------------------------------------------
    def tag_cfg(self) -> dict[str, Any]:
        """The pretrained tag's config (download source and preprocessing), {} if none."""
        if self.tag is None or self._is_schema():
            return {}
        oc = _open_clip()
        cfg = oc.get_pretrained_cfg(self.options.model, self.tag)
        if not cfg:
            tags = oc.list_pretrained_tags_by_model(self.options.model)
            raise SparcError(
                f"open-clip: {self.tag!r} is not a pretrained tag of {self.options.model} nor a file; "
                f"tags: {', '.join(tags) or 'none'}"
            )
        return cfg

    def _weights_id(self) -> Any:
        name = self.options.model
        if self.weights_file is not None:
            return {"checkpoint": path_identity(self.weights_file), "tag": self.tag}
        if self._is_schema():
            if name.startswith("local-dir:"):
                return {"local_dir": path_identity(name.split(":", 1)[1])}
            return {"hf_hub": name.split(":", 1)[1]}
        return {"tag": self.tag}  # None = random init

    def _load(self) -> None:
        oc = _open_clip()
        name = self.options.model
        tag_cfg = self.tag_cfg()
        key = (name, repr(self._weights_id()), str(self.device), self.dtype)
        model = _SHARED.get(key)
        if model is None:
            source = self.weights_file if self.weights_file is not None else (None if self._is_schema() else self.tag)
            try:
                model = oc.create_model(
                    name, pretrained=source, cache_dir=self.options.cache_folder, device="cpu", precision="fp32"
                )
            except SparcError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure becomes a one-line SparcError
                raise SparcError(self._load_error(tag_cfg, e)) from None
            model = prepare_model(model, self.device, self.dtype)
            _SHARED[key] = model
        self.model = model
        if self.options.tower == "image":
            cfg = dict(oc.get_model_preprocess_cfg(model))
            if self.weights_file is not None and tag_cfg:
                # weights from a file, preprocessing of the tag they came from
                for k in ("mean", "std", "interpolation", "resize_mode", "fill_color"):
                    if k in tag_cfg:
                        cfg[k] = tag_cfg[k]
            self.preprocess = preprocess_from_cfg(cfg)
            with torch.no_grad():
                probe = torch.zeros(
                    1, 3, self.preprocess.size, self.preprocess.size, device=self.device, dtype=self.dtype
                )
                self._dim = int(model.encode_image(probe).shape[-1])
        else:
            self.tokenizer = oc.get_tokenizer(name, cache_dir=self.options.cache_folder)
            with torch.no_grad():
                self._dim = int(model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])

    def _load_error(self, tag_cfg: dict[str, Any], e: Exception) -> str:
        why = one_line(f"{type(e).__name__}: {e}", 160)
        name = self.options.model
        if self.weights_file is not None:
            return f"open-clip: could not load checkpoint {self.weights_file} into {name} ({why})"
        if self._is_schema():
            repo = name.split(":", 1)[1]
            if name.startswith("local-dir:"):
                return f"open-clip: could not load {name} ({why})"
            return f"open-clip: could not load {name} ({why}); " + hf_hub_hint(
                repo, "or download it into a folder and pass model=local-dir:FOLDER"
            )
        hub = str(tag_cfg.get("hf_hub", ""))
        if hub:
            parts = hub.strip("/").split("/")
            repo = "/".join(parts[:2])
            fname = parts[2] if len(parts) > 2 else "open_clip_pytorch_model.bin or open_clip_model.safetensors"
            return (
                f"open-clip: weights {name}/{self.tag} are not available offline ({why}); "
                + hf_hub_hint(repo, f"or download {fname} from {repo} and pass checkpoint=FILE")
            )
        url = tag_cfg.get("url", "")
        return (
            f"open-clip: weights {name}/{self.tag} could not be downloaded ({why}); "
            f"download {url or 'the checkpoint'} and pass checkpoint=FILE"
        )

    # -- encoding --------------------------------------------------------------------
    def _encode(self, items: Sequence[Any]) -> Tensor:
        assert self.model is not None
        if self.options.tower == "image":
            assert self.preprocess is not None
            x = self.preprocess(items).to(self.device, self.dtype)
            return self.model.encode_image(x)
        tokens = self.tokenizer([str(t) for t in items]).to(self.device)
        return self.model.encode_text(tokens)

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        fp = super().fingerprint()
        model = self.options.model
        if model.startswith("local-dir:"):
            model = "local-dir:" + Path(model.split(":", 1)[1]).name  # the content digest is in weights
        fp.update({"model": model, "weights": self._weights_id(), "tower": self.options.tower, "code": 1})
        if self.options.tower == "image":
            assert self.preprocess is not None
            fp["preprocess"] = self.preprocess.describe()
        else:
            fp["tokenizer"] = {
                "open_clip": self.options.model,
                "context_length": getattr(self.tokenizer, "context_length", None),
            }
        return fp


def preprocess_from_cfg(cfg: dict[str, Any]) -> ImagePreprocess:
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
