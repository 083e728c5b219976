"""Publishing a run on the Hugging Face Hub: ``sparc push RUN org/name``.

The repository gets the run's final model (as :mod:`sparc.model.hub` reads it back), a
model card, ``README.md``, written from the run's settings (``train_config.json``),
last logged metrics and evaluations, and the evaluations themselves (``eval-<split>/``,
whose figures the card shows). This module sits above :mod:`sparc.train`, whose run
directory (:class:`~sparc.train.rundir.RunDir`) it reads; the model's own Hub access
knows nothing of runs.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparc.errors import SparcError
from sparc.model.hub import CARD, REPO_ID, hub_library, one_line
from sparc.train.rundir import RunDir, load_model
from sparc.workspace import inside

if TYPE_CHECKING:
    from sparc.model import SPARC


def model_card(run: Path, model: SPARC, repo_id: str) -> str:
    """The model card of run directory ``run``: settings, training, evaluations."""
    rd = RunDir(run)
    cfg = model.cfg
    lines = ["---", "library_name: sparc", "tags:", "- sparse-autoencoder", "- sparc", "- interpretability",
             "license: mit", "---", "", f"# {repo_id.split('/')[-1]}", "",
             "A SPARC model (*Sparse Autoencoders for Aligned Representation of Concepts*, "
             "[arXiv 2507.06265](https://arxiv.org/abs/2507.06265)): one sparse latent space shared by "
             f"{len(model.streams)} streams, trained with [sparc](https://pypi.org/project/sparc-sae/).", "",
             "```python", "from sparc.model import SPARC", "",
             f'model = SPARC.from_pretrained("{repo_id}")',
             "codes = model.encode({stream: x})  # x: [batch, dim], each row L2-normalised", "```", "",
             "## Streams", "", "| stream | dim |", "|---|---|"]
    lines += [f"| {s} | {d} |" for s, d in model.streams.items()]
    lines += ["", "## Model", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in cfg.to_dict().items()]
    if rd.spec_file.exists():
        from sparc.jsonio import to_json

        spec = rd.spec()
        lines += ["", "## Training", "", f"Feature store: `{spec.store}` (created "
                  f"{spec.store_created or '?'}), streams {', '.join(spec.streams)}.", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in to_json(spec.train).items() if k not in ("progress", "device")]
        records = [r for r in rd.metrics() if "split" not in r]
        if records:
            last = records[-1]
            lines += ["", f"Last logged step {last.get('step')} ({last.get('samples', '?')} samples): "
                      + ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                                  if k == "loss" or k.startswith(("nmse/", "l0/")))]
    evals = [p for p in rd.eval_dirs() if (p / "eval.md").exists()]
    for ev in evals:
        body = (ev / "eval.md").read_text()
        body = re.sub(r"^# .*\n", "", body, count=1)  # the card has its own title
        body = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)  # one level deeper
        body = re.sub(r"\]\((?!https?:|/)", f"]({ev.name}/", body)  # links into the uploaded folder
        lines += ["", f"## Evaluation ({RunDir.eval_split(ev)} split)", "", body.strip()]
    if not evals:
        lines += ["", "## Evaluation", "", "Not evaluated yet: `sparc eval RUN STORE` writes the figures."]
    return "\n".join(lines) + "\n"


def push(run: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         message: str | None = None, token: str | None = None) -> str:
    """Upload the finished model of run directory ``run`` to ``repo_id`` (created if
    missing) with its model card and evaluations; returns the commit's URL."""
    run = Path(run)
    rd = RunDir(run)
    if not REPO_ID.fullmatch(repo_id):
        raise SparcError(f"{repo_id!r} is not a Hub repository name (org/name)")
    if not rd.is_finished():
        raise SparcError(f"{run} holds no finished model ({rd.weights_file.name}); finish training it first "
                         "(sparc train ... --resume)")
    # Nothing from outside the run is published, whatever its files link to.
    for p in [*rd.model_files, rd.spec_file, rd.metrics_file,
              *(q for ev in rd.eval_dirs() for q in [ev, *ev.rglob("*")])]:
        if p.exists() or p.is_symlink():
            inside(run, p.relative_to(run), f"the run {run}")
    model = load_model(run)
    hub = hub_library()
    from huggingface_hub import errors

    with tempfile.TemporaryDirectory(prefix="sparc-push-") as tmp:
        folder = Path(tmp)
        for f in rd.model_files:
            shutil.copyfile(f, folder / f.name)
        (folder / CARD).write_text(model_card(run, model, repo_id))
        for ev in rd.eval_dirs():
            if (ev / "eval.json").exists():
                shutil.copytree(ev, folder / ev.name, ignore=shutil.ignore_patterns(".*"))
        try:
            api = hub.HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            info: Any = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                          commit_message=message or "Upload SPARC model")
        except errors.OfflineModeIsEnabled:
            raise SparcError("cannot push with HF_HUB_OFFLINE set; unset it and connect") from None
        except Exception as e:  # the network's failures (httpx, OS) have no common base
            raise SparcError(f"could not push to {repo_id} ({one_line(e)}); check the network and your token "
                             "(hf auth login, or HF_TOKEN)") from None
    return str(getattr(info, "commit_url", info))
