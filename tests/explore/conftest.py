"""Fixtures of the explore tests: a small synthetic store with labels and a hierarchy,
and a model over its streams (random initialisation: the statistics do not depend on
training, only their meaning does)."""

from __future__ import annotations

import pytest
import torch

from sparc.data import FeatureStore
from sparc.model import SPARC, SPARCConfig
from synthetic import make_store

# The synthetic labels are c0..c15: c0-7 → low; c8-15 → high.
HIERARCHY = {**{f"c{i}": "low" if i < 8 else "high" for i in range(16)}, "low": None, "high": None}


@pytest.fixture(scope="session")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("explore") / "store", n_rows=300, label_hierarchy=HIERARCHY)


@pytest.fixture(scope="session")
def store(store_path):
    return FeatureStore.open(store_path)


def small_model(streams, topk: str = "global", seed: int = 0, n_latents: int = 32, k: int = 4) -> SPARC:
    torch.manual_seed(seed)
    model = SPARC(streams, SPARCConfig(n_latents=n_latents, k=k, topk=topk)).eval()
    with torch.no_grad():
        model.b_lat.normal_(std=0.05)
    return model


@pytest.fixture(scope="session")
def model(store):
    return small_model(store.streams)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The stand-in world of :mod:`tests.explore.world`: store, trained run, images."""
    from tests.explore.world import session_world

    return session_world(tmp_path_factory)


@pytest.fixture(autouse=True)
def fake_backbones(monkeypatch):
    """The world's stand-in backbones, registered for each test."""
    from tests.explore.world import register_fakes

    register_fakes(monkeypatch)
