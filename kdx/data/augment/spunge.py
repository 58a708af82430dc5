"""SPUNGE: AutoGluon's simplified MUNGE (Fakoor et al. 2020, FAST-DAD), without a neighbour search."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdx.config import require_float
from kdx.data.augment.base import Augmenter, Columns


class Spunge(Augmenter):
    """Each generated row starts from a training row (the training rows in turn, in a per-seed order); between
    1 and max(1, ⌊frac_perturb·d⌋) of its d features (uniformly many, uniformly which) take the value of that
    feature in another training row drawn at random (hot-deck); then each numeric feature, with probability
    `frac_perturb`, gets Gaussian noise of `noise` × that feature's standard deviation in the training rows."""

    name = "spunge"

    def __init__(self, size_factor: float = 5.0, max_rows: int = 100_000, frac_perturb: float = 0.1,
                 noise: float = 0.1):
        super().__init__(size_factor, max_rows)
        self.frac_perturb = require_float("augment.frac_perturb", frac_perturb, 0.0, 1.0, low_open=True)
        self.noise = require_float("augment.noise", noise, 0.0)

    def settings(self) -> dict:
        return {**super().settings(), "frac_perturb": self.frac_perturb, "noise": self.noise}

    def generate(self, train: pd.DataFrame, encoded: np.ndarray, columns: Columns,
                 rng: np.random.Generator) -> pd.DataFrame:
        n, d, count = len(train), len(train.columns), self.count(len(train))
        base = np.resize(rng.permutation(n), count)
        most = max(1, int(self.frac_perturb * d))
        how_many = rng.integers(1, most + 1, size=count)
        # which features: the how_many smallest of d uniform keys per row (a uniform subset of that size)
        ranks = rng.random((count, d)).argsort(1).argsort(1)
        resampled = ranks < how_many[:, None]
        donor = rng.integers(0, n, size=(count, d))
        noisy = rng.random((count, d)) < self.frac_perturb
        out = {}
        for j, c in enumerate(train.columns):
            values = train[c].to_numpy()
            column = np.where(resampled[:, j], values[donor[:, j]], values[base])
            if c in columns.numeric:
                column, numbers = column.astype(float), values.astype(float)
                spread = float(np.nanstd(numbers)) if np.isfinite(numbers).any() else 0.0
                column = column + noisy[:, j] * rng.normal(0.0, 1.0, count) * spread * self.noise
                if c in columns.integer:
                    column = np.round(column)
            out[c] = pd.Series(column, dtype=object if column.dtype == object else None)  # no string inference
        return pd.DataFrame(out)
