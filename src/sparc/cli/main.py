"""Entry point of the ``sparc`` command."""

from __future__ import annotations

import os
import sys

# Large CPU tensors on transparent huge pages: fresh gradient buffers then cost a few
# page faults instead of thousands (read once, before torch allocates anything).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import tyro  # noqa: E402

from sparc.cli.commands import ImportCheckpoint, ImportH5, Info, Train  # noqa: E402
from sparc.errors import SparcError  # noqa: E402

COMMANDS = {
    "train": Train,
    "import-h5": ImportH5,
    "import-checkpoint": ImportCheckpoint,
    "info": Info,
}


def main(argv: list[str] | None = None) -> int:
    """Run ``sparc``; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    try:
        command = tyro.extras.subcommand_cli_from_dict(
            COMMANDS, args=argv, prog="sparc",
            description="sparc: concept-aligned sparse autoencoders (SPARC) across models and modalities.",
        )
        command.run()
    except SparcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
