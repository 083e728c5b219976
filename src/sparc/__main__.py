"""``python -m sparc`` (and ``torchrun ... -m sparc train ...``): the ``sparc`` command."""

import sys

from sparc.cli.main import main

sys.exit(main())
