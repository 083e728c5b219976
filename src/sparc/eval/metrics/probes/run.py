"""Running the probes: group-aware row sets, their features, both probes per stream.

Row sets (all whole groups, so no image is on both sides):

- fit: a sample of the store's **train** split,
- select: a sample of the **val** split (epoch / latent selection),
- report: a sample of the evaluated split, which must be **test**.

Classes are the labels as given (not lifted). The multi-label probe uses the classes
with a positive among both the fit and the report rows. Codes are the independent
encoding (each stream alone), and "recon" is the stream reconstructed from that code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sparc.data import FeatureStore, RowMeta
from sparc.eval.codes import CodeTable
from sparc.eval.features import model_inputs
from sparc.eval.labels import label_matrix
from sparc.eval.metrics.probes.linear import fit_multilabel_probe
from sparc.eval.metrics.probes.one_d import one_d_probe
from sparc.eval.results import ProbeReport, ProbeResult
from sparc.eval.sampling import group_codes, sample_groups
from sparc.eval.settings import EvalSettings
from sparc.model import SPARC, SparseCode

REPRESENTATIONS = ("raw", "latents", "recon")


def encode_rows(model: SPARC, store: FeatureStore, rows: np.ndarray, chunk: int,
                device: torch.device) -> dict[str, SparseCode]:
    """Independent codes of the sorted store ``rows``, on the CPU."""
    parts: dict[str, list[SparseCode]] = {s: [] for s in model.names}
    for a in range(0, len(rows), chunk):
        x = {s: model_inputs(store, s, rows[a:a + chunk]).to(device) for s in model.names}
        for s, code in model.select(model.logits(x), alone=True).items():
            parts[s].append(SparseCode(code.indices.cpu(), code.values.cpu(), code.n_latents))
    return {s: SparseCode(torch.cat([p.indices for p in ps]), torch.cat([p.values for p in ps]),
                          model.n_latents) for s, ps in parts.items()}


def probe_row_sets(meta: Sequence[RowMeta], train: np.ndarray, val: np.ndarray, report: np.ndarray,
                   settings: EvalSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Store rows of the fit, select and report sets (sorted; whole groups)."""
    def sample(rows: np.ndarray, cap: int) -> np.ndarray:
        return sample_groups(rows, group_codes([meta[r].group_id for r in rows]), cap, settings.seed)

    return (sample(train, settings.probe_fit_rows), sample(val, settings.probe_select_rows),
            sample(report, settings.probe_report_rows))


def run_probes(model: SPARC, store: FeatureStore, eval_rows: np.ndarray, codes: dict[str, CodeTable],
               settings: EvalSettings) -> ProbeReport:
    """Both probes for every stream (see the module docstring)."""
    meta = store.rows()
    device = torch.device(settings.device)
    fit_rows, sel_rows, rep_rows = probe_row_sets(
        meta, store.split_rows("train"), store.split_rows("val"), eval_rows, settings)
    rep_pos = np.searchsorted(eval_rows, rep_rows)
    labels = [[meta[r].labels for r in rows] for rows in (fit_rows, sel_rows, rep_rows)]
    names = sorted({x for row in labels[0] for x in row})
    y_fit, y_sel, y_rep = (label_matrix(lab, names=names) for lab in labels)
    dense = [torch.from_numpy(y.dense()) for y in (y_fit, y_sel, y_rep)]
    keep = torch.from_numpy((y_fit.positives() > 0) & (y_rep.positives() > 0))
    dense = [d[:, keep] for d in dense]

    code_fit = encode_rows(model, store, fit_rows, settings.chunk_rows, device)
    code_sel = encode_rows(model, store, sel_rows, settings.chunk_rows, device)
    code_rep = {s: codes[s].code(rep_pos) for s in model.names}
    multilabel, one_d = [], []
    steps = len(model.names) * (len(REPRESENTATIONS) + 1)
    with tqdm(total=steps, disable=not settings.progress, desc="probes", dynamic_ncols=True) as bar:
        for s in model.names:
            sets = (code_fit[s], code_sel[s], code_rep[s])
            raw = [model_inputs(store, s, rows) for rows in (fit_rows, sel_rows, rep_rows)]
            for rep in REPRESENTATIONS:
                bar.set_postfix_str(f"{s} {rep}", refresh=False)
                if rep == "raw":
                    inputs = raw
                elif rep == "latents":
                    inputs = list(sets)
                else:
                    with torch.no_grad():
                        inputs = [model.decode(SparseCode(c.indices.to(device), c.values.to(device), c.n_latents),
                                               s).cpu() for c in sets]
                if int(keep.sum()) == 0:
                    fit = None
                else:
                    fit = fit_multilabel_probe(
                        inputs[0], dense[0], inputs[1], dense[1], inputs[2], dense[2],
                        epochs=settings.probe_epochs, batch_size=settings.probe_batch_size,
                        lr=settings.probe_lr, seed=settings.seed)
                multilabel.append(ProbeResult(
                    stream=s, representation=rep,
                    macro_ap=fit.report_ap if fit else float("nan"),
                    select_ap=fit.select_ap if fit else float("nan"),
                    best_epoch=fit.best_epoch if fit else 0, n_classes=int(keep.sum())))
                bar.update()
            bar.set_postfix_str(f"{s} 1D", refresh=False)
            one_d.append(one_d_probe(s, sets[0], y_fit, sets[1], y_sel, sets[2], y_rep,
                                     min_positives=settings.one_d_min_positives,
                                     n_candidates=settings.one_d_candidates, seed=settings.seed))
            bar.update()
    return ProbeReport(fit_split="train", select_split="val", report_split=settings.split,
                       fit_rows=len(fit_rows), select_rows=len(sel_rows), report_rows=len(rep_rows),
                       multilabel=multilabel, one_d=one_d)
