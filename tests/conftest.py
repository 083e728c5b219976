"""Shared test set-up: tests/ on sys.path for the oracle and the synthetic data."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
