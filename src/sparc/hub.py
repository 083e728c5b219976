"""Sharing models through the Hugging Face Hub (``huggingface_hub``, extra ``sparc-sae[hub]``).

A model repository holds what a model folder holds — ``config.json`` and
``model.safetensors`` (docs/formats.md) — plus a model card, ``README.md``, written from
the run's settings (``train_config.json``) and, when the run was evaluated, its
evaluations (``eval-<split>/``, uploaded beside the card, whose figures the card shows).

- :func:`from_pretrained` — a local folder, or ``org/name`` downloaded into (or, with
  ``HF_HUB_OFFLINE=1``, read from) the Hub's cache;
- :func:`save_pretrained` — a folder ready to upload;
- :func:`push` — ``sparc push RUN org/name``.

Every failure — no network, a repository that does not exist or is private, a missing
file, no token — is one :class:`~sparc.errors.SparcError` line.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparc.errors import SparcError
from sparc.workspace import inside

if TYPE_CHECKING:
    from sparc.model import SPARC

FILES = ("config.json", "model.safetensors")
CARD = "README.md"
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise SparcError("sharing models needs the huggingface_hub package: pip install 'sparc-sae[hub]'") from None
    return huggingface_hub


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(e).__name__)


def from_pretrained(name: str | Path, *, revision: str | None = None, device: str = "cpu",
                    cache_dir: str | Path | None = None, token: str | bool | None = None) -> SPARC:
    """A model from a local folder (or run directory), or from the Hub repository
    ``org/name`` at ``revision`` (default: its main branch), through the Hub's cache."""
    from sparc.model import SPARC

    path = Path(name)
    if path.is_dir():
        return SPARC.load(path, device=device)
    text = str(name)
    if not REPO_ID.fullmatch(text):
        raise SparcError(f"{text} is neither a folder nor a Hub repository name (org/name)")
    return SPARC.load(download(text, revision=revision, cache_dir=cache_dir, token=token), device=device)


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             token: str | bool | None = None) -> Path:
    """The local folder of ``repo_id``'s model files, downloaded when not cached."""
    hub = _hub()
    from huggingface_hub import errors

    try:
        return Path(hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                          allow_patterns=list(FILES)))
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as e:
        raise SparcError(f"{repo_id} is not in the Hugging Face cache and the Hub cannot be reached "
                         f"({_one_line(e)}); connect, or unset HF_HUB_OFFLINE, or load a local folder") from None
    except errors.RepositoryNotFoundError:
        raise SparcError(f"no Hub repository {repo_id} (or it is private: log in with `hf auth login`)") from None
    except errors.RevisionNotFoundError:
        raise SparcError(f"{repo_id} has no revision {revision!r}") from None
    except Exception as e:  # the network's failures (httpx, OS) have no common base
        raise SparcError(f"could not download {repo_id} ({_one_line(e)})") from None


def save_pretrained(model: SPARC, folder: str | Path, *, card: str | None = None) -> Path:
    """Write ``model`` (config.json, model.safetensors) and, if given, its model card."""
    from sparc.atomic import write_text

    folder = Path(folder)
    model.save(folder)
    if card is not None:
        write_text(folder / CARD, card)
    return folder


def model_card(run: Path, model: SPARC, repo_id: str) -> str:
    """The model card of run directory ``run``: settings, training, evaluations."""
    from sparc.train.metrics import read_metrics
    from sparc.train.run import RUN_SPEC

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
    spec_file = run / RUN_SPEC
    if spec_file.exists():
        spec = json.loads(spec_file.read_text())
        train = spec.get("train", {})
        lines += ["", "## Training", "", f"Feature store: `{spec.get('store', '?')}` (created "
                  f"{spec.get('store_created') or '?'}), streams {', '.join(spec.get('streams', []))}.", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in train.items() if k not in ("progress", "device")]
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            records = [r for r in read_metrics(metrics) if "split" not in r]
            if records:
                last = records[-1]
                lines += ["", f"Last logged step {last.get('step')} ({last.get('samples', '?')} samples): "
                          + ", ".join(f"{k} {v:.4g}" for k, v in last.items()
                                      if k == "loss" or k.startswith(("nmse/", "l0/")))]
    evals = sorted(p for p in run.glob("eval-*") if (p / "eval.md").exists())
    for ev in evals:
        body = (ev / "eval.md").read_text()
        body = re.sub(r"^# .*\n", "", body, count=1)  # the card has its own title
        body = re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M)  # one level deeper
        body = re.sub(r"\]\((?!https?:|/)", f"]({ev.name}/", body)  # links into the uploaded folder
        lines += ["", f"## Evaluation ({ev.name[len('eval-'):]} split)", "", body.strip()]
    if not evals:
        lines += ["", "## Evaluation", "", "Not evaluated yet: `sparc eval RUN STORE` writes the figures."]
    return "\n".join(lines) + "\n"


def push(run: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         message: str | None = None, token: str | None = None) -> str:
    """Upload the finished model of run directory ``run`` to ``repo_id`` (created if
    missing) with its model card and evaluations; returns the commit's URL."""
    from sparc.model import SPARC
    from sparc.model.sparc import WEIGHTS_FILE
    from sparc.train.run import RUN_SPEC

    run = Path(run)
    if not REPO_ID.fullmatch(repo_id):
        raise SparcError(f"{repo_id!r} is not a Hub repository name (org/name)")
    if not (run / WEIGHTS_FILE).exists():
        raise SparcError(f"{run} holds no finished model ({WEIGHTS_FILE}); finish training it first "
                         "(sparc train ... --resume)")
    # Nothing from outside the run is published, whatever its files link to.
    for p in [*(run / name for name in FILES), run / RUN_SPEC, run / "metrics.jsonl",
              *(q for ev in run.glob("eval-*") for q in [ev, *ev.rglob("*")])]:
        if p.exists() or p.is_symlink():
            inside(run, p.relative_to(run), f"the run {run}")
    model = SPARC.load(run)
    hub = _hub()
    from huggingface_hub import errors

    with tempfile.TemporaryDirectory(prefix="sparc-push-") as tmp:
        folder = Path(tmp)
        for name in FILES:
            shutil.copyfile(run / name, folder / name)
        (folder / CARD).write_text(model_card(run, model, repo_id))
        for ev in run.glob("eval-*"):
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
            raise SparcError(f"could not push to {repo_id} ({_one_line(e)}); check the network and your token "
                             "(hf auth login, or HF_TOKEN)") from None
    return str(getattr(info, "commit_url", info))
