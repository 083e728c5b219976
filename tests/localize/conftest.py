"""Fixtures of the localisation tests (the world is in world.py); nothing may reach a
model hub (subprocesses inherit this)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.localize.world import loc_world  # noqa: E402, F401
