"""``sparc steer``: edit the latents of an input's code and decode it into any stream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from sparc.errors import SparcError


@dataclass
class Steer:
    """Encode a row (or features), set / add / scale / zero latents, decode into a stream:
    writes the edited features and says what moved (nearest rows, label probe)."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """Run directory (from 'sparc train') or model directory."""

    row: str | None = None
    """The id of a store row whose features (of --stream) are edited."""

    features: Path | None = None
    """Instead: a .npy file of features [n, d] of --stream."""

    stream: str | None = None
    """Stream of the input (default: the model's first)."""

    to: str | None = None
    """Stream to decode into (default: the input's)."""

    add: tuple[str, ...] = ()
    """L[,L...]=V: add V to these latents' values."""

    set: tuple[str, ...] = ()
    """L[,L...]=V: set these latents' values to V."""

    scale: tuple[str, ...] = ()
    """L[,L...]=F: multiply these latents' values by F (0 ablates)."""

    zero: tuple[str, ...] = ()
    """L[,L...]: set these latents to 0 (ablation)."""

    add_text: str | None = None
    """Add the latents of this text (encoded alone by the store's text backbone) to the code."""

    zero_text: str | None = None
    """Zero the latents of this text's code (remove the concept it names)."""

    strength: float = 1.0
    """--add-text: the text code's values are multiplied by this."""

    out: Path | None = None
    """Write the edited features (.npy, [n, d] of --to)."""

    top: int = 5
    """Nearest store rows and labels shown."""

    store: Path | None = None
    """Feature store (default: the store the run was trained on)."""

    probe: bool = True
    """Score the features before and after with a label probe trained on the store's untouched features of --to."""

    def run(self) -> None:
        import numpy as np
        import torch

        from sparc.explore.explorer import Explorer
        from sparc.steer import parse_edit, steer
        from sparc.steer.edits import Edit
        from sparc.steer.effects import label_probe, nearest_rows

        if (self.row is None) == (self.features is None):
            raise SparcError("give --row ID or --features FILE.npy (one of the two)")
        edits = [parse_edit(op, text) for op, given in (("add", self.add), ("set", self.set), ("scale", self.scale),
                                                         ("zero", self.zero)) for text in given]
        if not edits and self.add_text is None and self.zero_text is None:
            raise SparcError("no edit: give --add, --set, --scale, --zero, --add-text or --zero-text")
        if self.out is not None and self.out.suffix != ".npy":
            raise SparcError(f"--out {self.out}: the edited features are written as .npy")
        ex = Explorer.open(self.run_dir, self.store, naming=None, log=lambda m: None)
        model = ex.model
        stream = self.stream or model.names[0]
        model.stream_index(stream)
        target = self.to or stream
        model.stream_index(target)
        if self.row is not None:
            from sparc.eval.features import model_inputs

            x = model_inputs(ex.store, stream, np.array([ex.row_index(self.row)]))
        else:
            try:
                x = torch.from_numpy(np.load(self.features, allow_pickle=False)).float()
            except (OSError, ValueError) as e:
                raise SparcError(f"cannot read {self.features} as a .npy array: {e}") from None
            if x.ndim != 2 or x.shape[1] != model.streams[stream]:
                raise SparcError(f"{self.features} has shape {tuple(x.shape)}; stream {stream!r} needs [n, "
                                 f"{model.streams[stream]}]")
            x = torch.nn.functional.normalize(x, dim=1)
        for text, op in ((self.add_text, "add"), (self.zero_text, "zero")):
            if text is not None:
                code = ex.encode_texts([text])
                fired = [(int(i), float(v)) for i, v in zip(code.indices[0], code.values[0]) if v > 0]
                if not fired:
                    raise SparcError(f"the text {text!r} fires no latent: nothing to {op}")
                latents = tuple(i for i, _ in fired)
                edits.append(Edit("add", latents, tuple(v * self.strength for _, v in fired)) if op == "add"
                             else Edit("zero", latents))
                print(f"{op} the latents of {text!r}: " + ", ".join(f"{i} ({v:.2f})" for i, v in fired))
        done = steer(model, {stream: x}, edits, [target])
        before, after = done.before[target], done.after[target]
        moved = float((1 - torch.nn.functional.cosine_similarity(before, after, dim=1)).mean())
        print(f"{stream} → {target}: {len(edits)} edit(s); code latents {int((done.code.values > 0).sum())} → "
              f"{int((done.edited.values > 0).sum())}; cosine distance of the decoded features {moved:.3f}")
        rows = ex.store.rows()
        # One pass over the store's rows for both (the first input row before and after).
        for name, near in zip(("before", "after"), nearest_rows(ex.store, target, torch.cat([before[:1], after[:1]]),
                                                               self.top)):
            print(f"nearest {target} rows {name}: " + "; ".join(
                f"{rows[r].row_id} {rows[r].caption or ''!s:.40} ({s:.3f})" for r, s in near))
        if self.probe:
            probe = label_probe(ex.store, target)
            p0, p1 = probe.probabilities(before[:1])[0], probe.probabilities(after[:1])[0]
            change = (p1 - p0).abs().argsort(descending=True)[:self.top].tolist()
            print("label probe (trained on the store's own features): " + "; ".join(
                f"{probe.names[c]} {float(p0[c]):.2f} → {float(p1[c]):.2f}" for c in change))
        if self.out is not None:
            from sparc.atomic import atomic_path

            self.out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.out) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, after.numpy().astype(np.float32))
            print(f"wrote {self.out}")
