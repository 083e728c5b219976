"""Firing counts and dead-latent patterns by hand."""

import numpy as np
import pytest
import torch

from sparc.eval.metrics.dead_latents import FiringCounter, dead_latents, firing_histogram
from sparc.model import SparseCode


def test_dead_patterns_by_hand():
    counts = np.array([[0, 1, 0, 2], [0, 0, 3, 1]])
    d = dead_latents(counts, ["a", "b"])
    # a: latents 0, 2 dead; b: 0, 1 dead. In all: {0}; in some: {1, 2}; alive in all: {3}.
    assert d.dead == {"a": 2, "b": 2}
    assert (d.dead_in_all, d.dead_in_some, d.alive_in_all) == (1, 2, 1)


def test_firing_counter_counts_nonzero_only():
    fc = FiringCounter(["a"], 4)
    fc.update({"a": SparseCode(torch.tensor([[0, 1], [0, 2]]), torch.tensor([[1.0, 0.0], [2.0, 1e-9]]), 4)})
    assert fc.counts.tolist() == [[2, 0, 1, 0]]
    assert fc.dead().dead == {"a": 2}
    h = firing_histogram(fc.counts, 2, ["a"])
    assert sum(h.counts["a"]) == 2  # dead latents are in no bin
    assert h.edges[0] == pytest.approx(0.1) and h.edges[-1] == pytest.approx(1.0)
