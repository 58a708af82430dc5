"""Model-agnostic Shapley values of the interventional game, batched over rows and background rows.

The game of row x: v(S) = mean over background rows r of g(x_S, r_rest), where g is the explained output
(a fixed combination of the logits per row). Two estimators, both additive by construction
(Σφ = v(all) − v(∅) exactly) and deterministic for the same input and seed:
- `exact_shapley`: every coalition of the columns (2^d of them): exact, for a handful of columns;
- `permutation_shapley`: antithetic permutation sampling (each random order is also walked backwards),
  the estimator of `shap.PermutationExplainer`, with the permutations shared by all rows.
Players are the columns, or with `groups` (column → player) groups of columns that enter or leave a
coalition together: the game whose players are the original features, one-hot blocks moving as one.
Costs are counted in model evaluations: 2^d · background per row (exact), (2·pairs·(d−1) + 2) · background
per row (permutation).
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import numpy as np

from kdx.errors import ConfigError

LogitFn = Callable[[np.ndarray], np.ndarray]
MAX_EXACT_COLUMNS = 16  # 65,536 coalitions × background evaluations per row


def evaluations_per_row(method: str, columns: int, background: int, pairs: int = 10) -> int:
    """Model evaluations (rows through the model) each explained row costs."""
    if method == "exact":
        return (1 << columns) * background
    return (2 * pairs * max(columns - 1, 0) + 2) * background


def players_of(X: np.ndarray, groups: np.ndarray | None) -> int:
    return X.shape[1] if groups is None else int(groups.max()) + 1


def coalition_values(logits: LogitFn, X: np.ndarray, background: np.ndarray, masks: np.ndarray,
                     weights: np.ndarray, chunk_evals: int = 1 << 18, groups: np.ndarray | None = None,
                     dtype=np.float32) -> np.ndarray:
    """v (rows, coalitions): the mean over background rows of the explained output with the players of
    each mask taken from the row and the others from the background row. `weights` (rows, classes);
    `groups`: each column's player (None: each column is one); `dtype`: what the model is fed."""
    if groups is not None:
        masks = masks[:, groups]
    n, k, m, d = len(X), len(masks), len(background), X.shape[1]
    out = np.empty(n * k, dtype=np.float64)
    per_chunk = max(1, chunk_evals // m)  # (row, coalition) pairs per model call
    for start in range(0, n * k, per_chunk):
        pair = np.arange(start, min(start + per_chunk, n * k))
        rows, mk = pair // k, masks[pair % k]
        mixed = np.where(mk[:, None, :], X[rows][:, None, :], background[None, :, :]).reshape(-1, d)
        z = logits(mixed.astype(dtype, copy=False)).astype(np.float64).reshape(len(pair), m, -1)
        out[pair] = np.einsum("pc,pc->p", z.mean(1), weights[rows])
    return out.reshape(n, k)


def exact_shapley(logits: LogitFn, X: np.ndarray, background: np.ndarray, weights: np.ndarray,
                  groups: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
    """Exact Shapley values (rows, players) by enumerating all coalitions."""
    d = players_of(X, groups)
    if d > MAX_EXACT_COLUMNS:
        raise ConfigError(f"explain.method=exact enumerates 2^{d} coalitions of {d} players; it is "
                          f"limited to {MAX_EXACT_COLUMNS} players: use explain.method=permutation")
    codes = np.arange(1 << d)
    masks = (codes[:, None] >> np.arange(d)) & 1 == 1
    v = coalition_values(logits, X, background, masks, weights, groups=groups, dtype=dtype)
    # Shapley weight of a coalition S not containing j: |S|!(d−|S|−1)!/d! = 1 / (d · C(d−1, |S|)).
    weight_of_size = 1.0 / (d * np.array([comb(d - 1, s) for s in range(d)], dtype=np.float64))
    size = masks.sum(1)
    phi = np.empty((len(X), d), dtype=np.float64)
    for j in range(d):
        without = codes[~masks[:, j]]
        phi[:, j] = (v[:, without | (1 << j)] - v[:, without]) @ weight_of_size[size[without]]
    return phi


def antithetic_permutations(d: int, pairs: int, seed: int) -> np.ndarray:
    """2·pairs orders of d columns: each seeded random order followed by its reverse."""
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(pairs):
        order = rng.permutation(d)
        orders += [order, order[::-1]]
    return np.array(orders)


def permutation_shapley(logits: LogitFn, X: np.ndarray, background: np.ndarray, weights: np.ndarray,
                        pairs: int = 10, seed: int = 0, groups: np.ndarray | None = None,
                        dtype=np.float32) -> np.ndarray:
    """Shapley values (rows, players) estimated from `pairs` antithetic pairs of player orders."""
    d = players_of(X, groups)
    orders = antithetic_permutations(d, pairs, seed)
    # Coalitions along each order: the empty and the full one are shared by all orders.
    steps = np.zeros((len(orders), d + 1, d), dtype=bool)
    for p, order in enumerate(orders):
        for k in range(1, d + 1):
            steps[p, k, order[:k]] = True
    interior = steps[:, 1:d].reshape(-1, d)
    ends = np.stack([np.zeros(d, dtype=bool), np.ones(d, dtype=bool)])
    v_ends = coalition_values(logits, X, background, ends, weights, groups=groups, dtype=dtype)
    v_inner = coalition_values(logits, X, background, interior, weights, groups=groups,
                               dtype=dtype).reshape(len(X), len(orders), d - 1)
    v = np.concatenate([np.repeat(v_ends[:, None, :1], len(orders), 1), v_inner,
                        np.repeat(v_ends[:, None, 1:], len(orders), 1)], axis=2)  # (rows, orders, d+1)
    phi = np.zeros((len(X), d), dtype=np.float64)
    gains = np.diff(v, axis=2)  # gains[:, p, k] belongs to column orders[p, k]
    for p, order in enumerate(orders):
        phi[:, order] += gains[:, p]
    return phi / len(orders)
