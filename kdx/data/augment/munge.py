"""MUNGE (Bucilă, Caruana & Niculescu-Mizil 2006, "Model Compression"): rows made by mixing each training
row with its nearest neighbour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kdx.config import require_float
from kdx.data.augment.base import Augmenter, Columns


class Munge(Augmenter):
    """Each generated row starts from a training row e (the training rows in turn, in a per-seed order) and its
    nearest other training row e' (Euclidean, on the seed's encoding: standardized numeric, one-hot
    categorical). Each feature, with probability `p`, is replaced: a categorical one by e's value, a numeric
    one by a draw from N(e'_a, |e_a − e'_a| / s). As in AutoGluon's `munge` (the paper also perturbs e' in the
    same draw; one row per draw is kept here, so rows stay independent draws)."""

    name = "munge"

    def __init__(self, size_factor: float = 5.0, max_rows: int = 100_000, p: float = 0.5, s: float = 1.0):
        super().__init__(size_factor, max_rows)
        self.p = require_float("augment.p", p, 0.0, 1.0)
        self.s = require_float("augment.s", s, 0.0, low_open=True)

    def settings(self) -> dict:
        return {**super().settings(), "p": self.p, "s": self.s}

    def generate(self, train: pd.DataFrame, encoded: np.ndarray, columns: Columns,
                 rng: np.random.Generator) -> pd.DataFrame:
        n, count = len(train), self.count(len(train))
        neighbour = nearest_other(encoded)
        base = np.resize(rng.permutation(n), count)  # every training row once before any twice
        near = neighbour[base]
        swap = rng.random((count, len(train.columns))) < self.p
        out = {}
        for j, c in enumerate(train.columns):
            own, other = train[c].to_numpy()[base], train[c].to_numpy()[near]
            if c in columns.numeric:
                own, other = own.astype(float), other.astype(float)
                drawn = rng.normal(other, np.abs(own - other) / self.s)
                if c in columns.integer:
                    drawn = np.round(drawn)
                out[c] = np.where(swap[:, j], drawn, own)
            else:
                out[c] = np.where(swap[:, j], other, own)
        return pd.DataFrame(out)


def nearest_other(encoded: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each row, the index of its nearest other row (Euclidean). Brute force in blocks of `chunk` rows,
    ‖b‖² − 2a·b (‖a‖² is the same for a whole row of the block) as one float32 matrix product a block: a
    tree search over one-hot columns is many times slower. Near-ties may resolve either way in float32."""
    n = len(encoded)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    X = torch.as_tensor(np.ascontiguousarray(encoded, dtype=np.float32))
    norms = (X * X).sum(1)
    out = np.empty(n, dtype=np.int64)
    with torch.no_grad():
        for start in range(0, n, chunk):
            block = X[start : start + chunk]
            d = torch.addmm(norms[None, :], block, X.T, alpha=-2.0)
            d[torch.arange(len(block)), torch.arange(start, start + len(block))] = torch.inf  # not the row itself
            out[start : start + chunk] = d.argmin(1).numpy()
    return out
