"""Entry point of the ``sparc`` command."""

from __future__ import annotations

import os
import signal
import sys
import threading

from sparc.errors import SparcError
from sparc.openmp import restart_with_one_runtime
from sparc.process import keep_freed_memory
from sparc.threads import apply_budget, budget

COMMANDS = {
    "demo": ("train", "Demo"),
    "extract": ("data", "Extract"),
    "store": ("data", "StoreCommand"),
    "push": ("share", "Push"),
    "train": ("train", "Train"),
    "import-h5": ("data", "ImportH5"),
    "synth": ("data", "Synth"),
    "import-checkpoint": ("train", "ImportCheckpoint"),
    "info": ("info", "Info"),
    "eval": ("eval", "Eval"),
    "compare": ("eval", "Compare"),
    "stats": ("explore", "Stats"),
    "names": ("explore", "Names"),
    "latent": ("explore", "Latent"),
    "query": ("explore", "Query"),
    "report": ("explore", "Report"),
    "serve": ("explore", "Serve"),
    "steer": ("steer", "Steer"),
    "heatmap": ("localize", "Heatmap"),
    "localize": ("localize", "Localize"),
}
"""Each subcommand, in the order of the help: its module in sparc.cli and its class."""


def commands() -> dict[str, type]:
    """The subcommands. Imported when the command runs, not when this module is, so a
    Ctrl-C during the (slow) imports of PyTorch ends as cleanly as one later on."""
    import importlib

    return {name: getattr(importlib.import_module(f"sparc.cli.{module}"), cls)
            for name, (module, cls) in COMMANDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Run ``sparc``; returns the exit status (0 ok, 2 bad input, 130 interrupted).
    ``argv``: the arguments (default: the command line's, and then the process first
    starts itself again with one OpenMP runtime, waiting passively; sparc/openmp.py)."""
    if argv is None:
        restart_with_one_runtime()
    # Back large CPU tensors with transparent huge pages: fresh gradient buffers of the
    # 8192×2560 weights then cost a few page faults instead of ~20,000, about 25 ms per
    # buffer on a 2-core machine. PyTorch reads the variable at its first allocation,
    # which no import before this line makes (tests/test_import.py checks). Set it to 0 to opt out.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    # And keep freed blocks in the heap, so a training loop's per-step tensors reuse
    # memory instead of page-faulting fresh pages every step (sparc/process.py).
    keep_freed_memory()
    args = sys.argv[1:] if argv is None else argv
    if args and not args[0].startswith("-") and args[0] not in COMMANDS:
        # Checked here: with --help after it, the parser would print the main help and succeed.
        print(f"error: unknown command {args[0]!r}; see sparc --help", file=sys.stderr)
        return 2
    # Every compute pool sized to the CPUs this process may use (its affinity, its
    # cgroup's quota; --threads overrides), before the libraries start them (sparc/threads.py).
    try:
        apply_budget(budget(_threads_flag(args)))
    except SparcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # SIGTERM (a scheduler, `kill`) unwinds like Ctrl-C, so every command removes its
    # temporaries on the way out; a training says how to resume.
    previous, ours = _on_sigterm_raise()
    try:
        command = _parse(args)
        _check_runs(command)
        command.run()
    except SparcError as e:
        print(f"error: {e}", file=sys.stderr)
        _tell_torchrun(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`sparc eval ... | head`): stop quietly, as Python's docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        # Put the old handler back unless the command set its own (a distributed
        # training ignores the echoes of torchrun's SIGTERM until the process exits).
        if ours is not None and signal.getsignal(signal.SIGTERM) is ours:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _parse(args: list[str]):
    """The command the arguments name, parsed by tyro. A flag the command does not have is
    named in one line (tyro would first report a positional it took the flag's value for)."""
    import contextlib
    import io

    import tyro

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            command = tyro.extras.subcommand_cli_from_dict(
                commands(), args=args, prog="sparc",
                description="sparc: concept-aligned sparse autoencoders (SPARC) across models and modalities.",
            )
    except SystemExit as e:
        if e.code not in (0, None) and (flag := _unknown_flag(args)) is not None:
            raise SparcError(f"sparc {args[0]} has no flag {flag}; see sparc {args[0]} --help") from None
        sys.stderr.write(said.getvalue())
        raise
    sys.stderr.write(said.getvalue())
    return command


def _check_runs(command) -> None:
    """The RUN paths a command was given, checked before it loads PyTorch: a wrong path
    is said at once (sparc/model/files.py)."""
    from pathlib import Path

    from sparc.model.files import check_folder
    from sparc.train.rundir import RunDir

    given = getattr(command, "run_dir", None), *getattr(command, "runs", ())
    for path in given:
        if isinstance(path, Path):
            check_folder(RunDir(path).model_folder())


def _unknown_flag(args: list[str]) -> str | None:
    """The first flag among ``args`` (after the command's name) that the command lacks."""
    import warnings

    import tyro

    if not args or args[0] not in COMMANDS:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            parser = tyro.extras.get_parser(commands()[args[0]])
    except Exception:  # a tyro without it: tyro's own message stands
        return None
    flags = {option for action in parser._actions for option in action.option_strings}
    for token in args[1:]:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name.startswith("-") and not name.lstrip("-").replace(".", "", 1).isdigit() and name not in flags:
            return name
    return None


def _threads_flag(args: list[str]) -> int | None:
    """The value of ``--threads`` among ``args``, read before the parser (which sees it
    again) so that it sizes the pools before they start."""
    for i, arg in enumerate(args):
        text = arg.partition("=")[2] if arg.startswith("--threads=") else (
            args[i + 1] if arg == "--threads" and i + 1 < len(args) else None)
        if text is not None:
            try:
                return int(text)
            except ValueError:
                return None  # the parser's own message
    return None


def _tell_torchrun(line: str) -> None:
    """Under torchrun, leave ``line`` in the rank's error file, which torchrun's closing
    summary shows for the failed rank (instead of "To enable traceback see: ...")."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    import json
    import time

    data = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(data, f)
    except OSError:
        pass  # torchrun then reports the rank as it would have


def _on_sigterm_raise():
    """Make SIGTERM raise KeyboardInterrupt while the command runs (only where it would
    otherwise kill the process at once): (the handler replaced, ours), or (None, None)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None, None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt), interrupt


if __name__ == "__main__":
    sys.exit(main())
