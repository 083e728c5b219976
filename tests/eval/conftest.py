"""Fixtures of the evaluation tests: a small synthetic store with a label hierarchy."""

from __future__ import annotations

import pytest

from sparc.data import FeatureStore
from synthetic import make_store

from .helpers import HIERARCHY


@pytest.fixture(scope="session")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("eval") / "store", n_rows=400, label_hierarchy=HIERARCHY)


@pytest.fixture(scope="session")
def store(store_path):
    return FeatureStore.open(store_path)
