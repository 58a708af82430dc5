"""The interval of a mean over seeds: re-split seeds share most of their training rows, so the variance of the
mean is s²·(1/n + n_test/n_train) (Nadeau & Bengio 2003), not s²/n. Used by the statistics and the model card."""

from __future__ import annotations

import numpy as np
from scipy import stats as st


def variance_factor(n: int, test_train_ratio: float) -> float:
    """What multiplies the sample variance of the differences: 1/n (paired) + n_test/n_train (corrected)."""
    return 1.0 / n + test_train_ratio


def mean_interval(values, confidence: float = 0.95, test_train_ratio: float = 0.0) -> tuple[float, float] | None:
    """t-based confidence interval of the mean over seeds, with the variance factor 1/n + n_test/n_train (the
    corrected interval for re-split seeds; 0 gives the plain one). None with fewer than 2 values."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return None
    m, se = values.mean(), values.std(ddof=1) * np.sqrt(variance_factor(n, test_train_ratio))
    half = st.t.ppf(0.5 + confidence / 2, n - 1) * se
    return float(m - half), float(m + half)
