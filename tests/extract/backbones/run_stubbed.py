"""Run open_clip / timm checks with the test-only torchvision stub (see the stub's doc).

Usage: python run_stubbed.py TMPDIR CHECK [CHECK ...]; exits 0 when all pass.
"""

import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torchvision_stub

torchvision_stub.install()

import oc_timm_checks as checks
import torch

torch.set_num_threads(1)  # tiny models: a thread pool only loses on a busy machine

if __name__ == "__main__":
    tmp = Path(sys.argv[1])
    failed = 0
    for name in sys.argv[2:]:
        try:
            getattr(checks, name)(tmp / name, real_torchvision=False)
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
    sys.exit(1 if failed else 0)
