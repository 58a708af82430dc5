"""Shared fixtures: configs composed with Hydra's compose API, exactly as `kdx run` composes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig


def make_config(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="kdx.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def nonlinear_task(n_classes: int, n: int = 600, d: int = 5, seed: int = 0):
    """Gaussian rows and classes cut at quantiles of a score with a square and an interaction (the tree and
    booster tests' task)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    score = X[:, 0] + 0.8 * X[:, 1] ** 2 - 0.5 * X[:, 2] * X[:, 3]
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])).astype(np.int64)
    return X, y


TINY = ("seeds=[0]", "limits.rows=300", "limits.epochs=5", "limits.n_estimators=10", "device=cpu")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own artifact cache (kdx reads KDX_CACHE), never the working directory's."""
    monkeypatch.setenv("KDX_CACHE", str(tmp_path_factory.mktemp("kdx-cache")))


@pytest.fixture
def compose_cfg():
    return make_config


@pytest.fixture
def tiny_csv(tmp_path) -> str:
    """A small mixed-type table with missing values and a learnable binary label."""
    rng = np.random.default_rng(0)
    n = 240
    age = rng.normal(40, 10, n)
    city = rng.choice(["north", "south", "east"], n)
    score = rng.normal(0, 1, n)
    label = np.where(score + (city == "north") + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    frame = pd.DataFrame({"id": np.arange(n), "age": age, "city": city, "score": score, "label": label})
    frame.loc[::17, "age"] = np.nan
    frame.loc[::23, "city"] = np.nan
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False)
    return str(path)
