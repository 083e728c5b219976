"""Fixtures of the localisation tests (the world is in world.py)."""

from tests.localize.world import loc_world  # noqa: F401
