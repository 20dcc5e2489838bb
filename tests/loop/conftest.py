"""Fixtures of the correction-loop tests: tiny real classifiers and project DBs in tmp dirs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.tileserver import tile_server  # noqa: F401


def make_classifier(seed: int = 0, *, bias: float | None = None):
    """A small untrained (but real) Classifier; bias forces every P(mining) towards sigmoid(bias)."""
    from amberwatch.model.classifier import Classifier
    from amberwatch.model.network import MiningNet, NetConfig

    torch.manual_seed(seed)
    config = NetConfig(widths=(4, 8), downsample=2, window_cells=3)
    net = MiningNet(config)
    state = net.state_dict()
    if bias is not None:
        state["head.weight"] = torch.zeros_like(state["head.weight"])
        state["head.bias"] = torch.full_like(state["head.bias"], bias)
    return Classifier(config, [state], threshold=0.5, metadata={"seed": seed})


@pytest.fixture
def tiny_classifier():
    """Factory of small real classifiers."""
    return make_classifier


@pytest.fixture
def db_path(tmp_path):
    """Path of a fresh project DB file in a tmp dir."""
    return tmp_path / "project.db"


@pytest.fixture
def rng():
    """A seeded numpy random generator."""
    return np.random.default_rng(0)
