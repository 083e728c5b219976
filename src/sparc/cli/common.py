"""What the ``sparc`` commands' modules share: option annotations."""

from __future__ import annotations

import tyro

Flat = tyro.conf.OmitArgPrefixes
"""A nested settings dataclass whose flags go without its field's prefix (--lr, not --train.lr)."""
