"""One rank of a distributed ``sparc train``, for the tests: ``python dist_worker.py
FAIL_RANK FAIL_BATCH SPARC_ARGS...`` runs ``sparc SPARC_ARGS`` with torchrun's
environment as the caller set it; rank FAIL_RANK raises at its training batch
FAIL_BATCH (counted from 1 in this process; -1: never)."""

from __future__ import annotations

import sys

from sparc.data import loader
from sparc.errors import SparcError


def main() -> int:
    fail_rank, fail_batch, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    original = loader.BatchLoader.iter_batches

    def failing(self):
        for n, batch in enumerate(original(self), start=1):
            if self.rank == fail_rank and self.split == "train" and n == fail_batch:
                raise SparcError(f"simulated failure of rank {self.rank} at its batch {n}")
            yield batch

    loader.BatchLoader.iter_batches = failing
    from sparc.cli.main import main as sparc

    return sparc(args)


if __name__ == "__main__":
    sys.exit(main())
