"""Per-word attribution of latents in a text stream: which words of a caption make the
stream's code fire at given latents (the original's ``gradtext_lastlayer``).

Target: the sum of the text stream's values at the latents (default: the caption's own
active latents), the caption encoded alone. Two methods:

- ``gradcam`` — Grad-CAM on the hidden states entering the text tower's last layer:
  ``α = mean over the tokens of ∂target/∂H``, token score ``ReLU(H_t · α)``; the sub-word
  pieces (WordPiece, BPE) of a word are averaged into the word (docs/method.md §5.7) and the
  words scaled by the largest (the special tokens, which are no word, left out). For ``minilm`` / ``sentence-transformers``, ``open-clip`` and
  ``hf-clip`` text towers.
- ``occlusion`` — each word left out in turn: its score is how much the target drops,
  ``ReLU(target(caption) − target(caption without the word))``, normalised by the largest.
  For any text backbone, also those that give no gradient (``e5-small`` runs a compiled
  numpy engine), where it is the default.

Words are the caption's whitespace-separated pieces, punctuation kept with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from sparc.errors import SparcError
from sparc.model import SPARC

GRADIENT_FAMILIES = ("minilm", "sentence-transformers", "open-clip", "hf-clip")


@dataclass
class WordScores:
    """The words of a caption and their attribution in [0, 1]."""

    text: str
    words: list[str]
    scores: np.ndarray
    method: str
    target: float
    """The target's value on the whole caption (0: the latents do not fire on it)."""
    latents: tuple[int, ...]


def words_of(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of the whitespace-separated words of ``text``."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def piece_words(pieces: Sequence[str | None], text: str) -> list[int]:
    """The word of ``text`` each sub-word piece belongs to (-1: a special token, no text).

    Pieces are the tokenizer's surface strings; their markers (``##``, ``</w>``, ``▁``,
    ``Ġ``) are dropped and each is found in the lower-cased caption after the previous
    one, so WordPiece, CLIP's BPE and SentencePiece all map onto the same words.
    """
    words = words_of(text)
    low = text.lower()
    starts = [s for _, s, _ in words]
    pos, current, out = 0, 0, []
    for p in pieces:
        if p is None:
            out.append(-1)
            continue
        clean = p.replace("</w>", "").replace("##", "").replace("▁", "").replace("Ġ", "").lower()
        if not clean.strip():
            out.append(-1)
            continue
        at = low.find(clean, pos)
        if at >= 0 and (not words or at - pos < 64):
            pos = at + len(clean)
            current = max(0, int(np.searchsorted(starts, at, side="right")) - 1)
        out.append(current if words else -1)
    return out


def word_scores(token_scores: np.ndarray, owners: list[int], n_words: int) -> np.ndarray:
    """Mean score of each word's pieces (0 for a word without a piece)."""
    out = np.zeros(n_words, dtype=np.float32)
    for w in range(n_words):
        mine = [s for s, o in zip(token_scores, owners) if o == w]
        out[w] = float(np.mean(mine)) if mine else 0.0
    return out


@dataclass
class _Tokens:
    pieces: list[str | None]
    run: object  # () -> features [1, d], with the capture active


class TextAttributor:
    """Per-word attribution through one text stream of a SPARC model.

    Parameters
    ----------
    model, stream
        The SPARC model and its text stream.
    backbone
        That stream's backbone (:func:`sparc.explore.sources.backbone_for`).
    method
        ``gradcam`` (default where the backbone gives gradients) or ``occlusion``.
    """

    def __init__(self, model: SPARC, stream: str, backbone, *, method: str | None = None):
        if stream not in model.names:
            raise SparcError(f"unknown stream {stream!r}; this model has: {', '.join(model.names)}")
        if getattr(backbone, "modality", None) != "text":
            raise SparcError(f"stream {stream!r} ({backbone.family}) reads images; per-word attribution needs a "
                             "text stream (for an image stream give IMAGE)")
        self.model = model.eval().requires_grad_(False)
        self.stream = stream
        self.backbone = backbone.load()
        family = backbone.family
        grad_ok = family in GRADIENT_FAMILIES
        method = method or ("gradcam" if grad_ok else "occlusion")
        if method not in ("gradcam", "occlusion"):
            raise SparcError(f"text attribution method must be gradcam or occlusion, got {method!r}")
        if method == "gradcam" and not grad_ok:
            raise SparcError(f"stream {stream!r} ({family}) gives no gradient (a compiled engine); use --method occlusion")
        self.method = method

    # -------------------------------------------------------------------------------- target
    def codes(self, feats: Tensor):
        """The stream's codes of backbone features ``feats`` (L2-normalised first, as the store's)."""
        x = feats.float() / feats.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self.model.encode({self.stream: x})[self.stream]

    def target_of(self, code, latents: tuple[int, ...]) -> Tensor:
        """[B]: the summed code values at ``latents`` (what a word's attribution explains)."""
        want = torch.zeros(code.indices.shape[0], self.model.n_latents, dtype=torch.bool)
        want[:, list(latents)] = True
        return (code.values * want.gather(1, code.indices.cpu()).to(code.values.device)).sum(dim=1)

    def own_latents(self, text: str) -> tuple[int, ...]:
        """The caption's active latents in this stream (encoded alone)."""
        with torch.no_grad():
            code = self.codes(self.backbone.encode([text]))
        return tuple(int(i) for i, v in zip(code.indices[0].tolist(), code.values[0].tolist()) if v > 0)

    # -------------------------------------------------------------------------------- words
    def attribute(self, text: str, latents: Sequence[int] | None = None) -> WordScores:
        if not isinstance(text, str) or not text.strip():
            raise SparcError("per-word attribution needs a non-empty caption")
        latents = tuple(latents) if latents else self.own_latents(text)
        words = words_of(text)
        if not latents:
            return WordScores(text, [w for w, _, _ in words], np.zeros(len(words), np.float32), self.method, 0.0, ())
        if self.method == "occlusion":
            return self._occlusion(text, words, latents)
        return self._gradcam(text, words, latents)

    def _occlusion(self, text, words, latents) -> WordScores:
        variants = [text] + [(text[:s] + text[e:]).strip() or " " for _, s, e in words]
        with torch.no_grad():
            t = self.target_of(self.codes(self.backbone.encode(variants)), latents).cpu().numpy()
        drop = np.maximum(t[0] - t[1:], 0)
        scores = drop / drop.max() if drop.max() > 0 else drop
        return WordScores(text, [w for w, _, _ in words], scores.astype(np.float32), "occlusion", float(t[0]), latents)

    def _gradcam(self, text, words, latents) -> WordScores:
        tokens = self._tokens(text)
        captured: list[Tensor] = []
        block = self._last_block()

        def pre_hook(module, args, kwargs):
            if args:
                h = args[0]
                leaf = h.detach().requires_grad_(True)
                captured.append(leaf)
                return (leaf, *args[1:]), kwargs
            h = kwargs["hidden_states"]
            leaf = h.detach().requires_grad_(True)
            captured.append(leaf)
            return args, {**kwargs, "hidden_states": leaf}

        handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
        try:
            with torch.enable_grad():
                feats = tokens.run()
                target = self.target_of(self.codes(feats), latents)
                (G,) = torch.autograd.grad(target.sum(), captured[-1], allow_unused=True)
        finally:
            handle.remove()
        H = captured[-1].detach()
        G = torch.zeros_like(H) if G is None else G
        if H.shape[0] != 1:  # sequence-first [N, 1, C]
            H, G = H.transpose(0, 1), G.transpose(0, 1)
        n = len(tokens.pieces)
        H, G = H[0, :n].float(), G[0, :n].float()
        alpha = G.mean(dim=0)
        cam = torch.relu(H @ alpha).numpy()
        owners = piece_words(tokens.pieces, text)
        scores = word_scores(cam, owners, len(words))
        if scores.max() > 0:
            scores = scores / scores.max()
        return WordScores(text, [w for w, _, _ in words], scores, "gradcam", float(target.detach()[0]), latents)

    # -------------------------------------------------------------------------------- towers
    def _last_block(self) -> nn.Module:
        bb, family = self.backbone, self.backbone.family
        if family in ("minilm", "sentence-transformers"):
            auto = bb.model[0].auto_model
            layers = getattr(getattr(auto, "encoder", None), "layer", None)
            if layers is None:
                layers = max((m for m in auto.modules() if isinstance(m, nn.ModuleList)), key=len)
            return layers[-1]
        if family == "open-clip":
            return bb.model.transformer.resblocks[-1]
        if family == "hf-clip":
            return bb.model.text_model.encoder.layers[-1]
        raise SparcError(f"no gradient path for {family}")

    def _tokens(self, text: str) -> _Tokens:
        bb, family = self.backbone, self.backbone.family
        if family in ("minilm", "sentence-transformers"):
            st = bb.model
            prompt = getattr(bb.options, "prompt", None) or ""
            full = prompt + text
            prep = st.preprocess if hasattr(st, "preprocess") else st.tokenize
            feats = prep([full])
            ids = feats["input_ids"][0].tolist()
            special = set(st.tokenizer.all_special_ids)
            pieces = [None if i in special else p for i, p in zip(ids, st.tokenizer.convert_ids_to_tokens(ids))]
            if prompt:  # the prompt's pieces are not the caption's words
                n_prompt = len([i for i in st.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
                first = next((j for j, p in enumerate(pieces) if p is not None), 0)
                for j in range(first, min(len(pieces), first + n_prompt)):
                    pieces[j] = None
            return _Tokens(pieces, lambda: st(dict(feats))["sentence_embedding"])
        if family == "open-clip":
            tok = bb.tokenizer([text]).to(bb.device)
            ids = tok[0].tolist()
            dec = getattr(bb.tokenizer, "decoder", None)
            if dec is None:
                raise SparcError(f"stream {self.stream!r}: this open-clip tokenizer gives no pieces; use --method occlusion")
            sot, eot = bb.tokenizer.sot_token_id, bb.tokenizer.eot_token_id
            n = ids.index(eot) + 1 if eot in ids else len(ids)
            byte_dec = getattr(bb.tokenizer, "byte_decoder", {})
            pieces = [None if i in (sot, eot) else "".join(chr(byte_dec.get(c, ord("?"))) if byte_dec else c
                                                             for c in dec[i]) for i in ids[:n]]
            return _Tokens(pieces, lambda: bb.model.encode_text(tok))
        if family == "hf-clip":
            t = bb.tokenizer([text], padding=True, truncation=True, max_length=bb.max_length, return_tensors="pt")
            ids = t["input_ids"][0].tolist()
            special = set(bb.tokenizer.all_special_ids)
            pieces = [None if i in special else p for i, p in zip(ids, bb.tokenizer.convert_ids_to_tokens(ids))]

            def run():
                out = bb.model.get_text_features(input_ids=t["input_ids"].to(bb.device),
                                                  attention_mask=t["attention_mask"].to(bb.device))
                return out if isinstance(out, Tensor) else out.pooler_output

            return _Tokens(pieces, run)
        raise SparcError(f"no gradient path for {family}")
