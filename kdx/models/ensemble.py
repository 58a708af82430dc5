"""One representation for every boosted-tree model: the trees of each output, in float32-exact form.

The explainers (interventional TreeSHAP through SHAP's generic tree format), the ONNX exporter, the
parameter and operation counts all read this, so XGBoost, LightGBM, CatBoost and scikit-learn's HistGBT
are handled by one code path. Each library's own test is turned into "go left when x ≤ threshold" with a
threshold representable in float32: kdx feeds float32 rows, and for a float32 x, x < s ⇔ x ≤ the float32
just below s, and x ≤ t ⇔ x ≤ the largest float32 not above t. `logits` re-computes the raw scores from
this representation; tests check it against each library's own prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdx.errors import KdxError


def float32_at_most(threshold: np.ndarray, strict: bool = False) -> np.ndarray:
    """The largest float32 t' with (x ≤ t' ⇔ x ≤ t), or with strict=True (x ≤ t' ⇔ x < t), for float32 x."""
    t = np.asarray(threshold, dtype=np.float64)
    t32 = t.astype(np.float32)
    too_high = (t32.astype(np.float64) >= t) if strict else (t32.astype(np.float64) > t)
    return np.where(too_high, np.nextafter(t32, np.float32(-np.inf)), t32).astype(np.float64)


@dataclass
class Tree:
    """Node arrays; a leaf has left = right = -1. Rows with x[feature] ≤ threshold go left."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray  # the leaf's raw score (read at leaves only)
    cover: np.ndarray  # training weight reaching the node (for path weights and flops)

    @property
    def leaves(self) -> np.ndarray:
        return self.left == -1

    def shap_dict(self) -> dict:
        leaf = self.leaves
        return {"children_left": self.left.astype(np.int64), "children_right": self.right.astype(np.int64),
                "children_default": self.left.astype(np.int64),  # kdx's rows are imputed: no missing values
                "features": np.where(leaf, -2, self.feature).astype(np.int64),
                "thresholds": self.threshold.astype(np.float64), "values": self.value.astype(np.float64)[:, None],
                "node_sample_weight": self.cover.astype(np.float64)}

    def predict(self, X: np.ndarray) -> np.ndarray:
        node = np.zeros(len(X), dtype=np.int64)
        x = X.astype(np.float32).astype(np.float64)
        for _ in range(len(self.left)):
            inner = self.left[node] != -1
            if not inner.any():
                break
            rows = np.flatnonzero(inner)
            n = node[rows]
            go_left = x[rows, self.feature[n]] <= self.threshold[n]
            node[rows] = np.where(go_left, self.left[n], self.right[n])
        return self.value[node]

    def depths(self) -> np.ndarray:
        depth = np.zeros(len(self.left))
        for node in range(len(self.left)):  # children come after their parent in every format read here
            for child in (self.left[node], self.right[node]):
                if child != -1:
                    depth[child] = depth[node] + 1
        return depth


@dataclass
class TreeEnsemble:
    """Raw score of output k = base[k] + Σ trees[k]. One output (binary: the log-odds, logits [0, z]; a
    regression: the standardized prediction, its one logit) or one per class."""

    trees: list[list[Tree]]
    base: np.ndarray
    regression: bool = False

    @property
    def binary(self) -> bool:
        return len(self.trees) == 1 and not self.regression

    def scores(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self.base[k] + sum((t.predict(X) for t in trees), np.zeros(len(X)))
                                for k, trees in enumerate(self.trees)])

    def logits(self, X: np.ndarray) -> np.ndarray:
        s = self.scores(X)
        return np.column_stack([np.zeros(len(X)), s[:, 0]]) if self.binary else s

    def shap_model(self, k: int) -> dict:
        """Output k in SHAP's generic tree format (shap.TreeExplainer accepts it)."""
        return {"trees": [t.shap_dict() for t in self.trees[k]], "base_offset": float(self.base[k])}

    def all_trees(self) -> list[Tree]:
        return [t for trees in self.trees for t in trees]

    def n_params(self) -> int:
        """Stored values: per split node its feature index and threshold, per leaf its value, the base scores."""
        total = 0
        for t in self.all_trees():
            leaves = int(t.leaves.sum())
            total += 2 * (len(t.left) - leaves) + leaves
        return total + len(self.base)

    def flops(self) -> float:
        """Per row: each tree's expected comparisons to a leaf (leaf depths weighted by the training weight
        reaching them) plus one addition of the leaf value."""
        total = 0.0
        for t in self.all_trees():
            leaf = t.leaves
            w = t.cover[leaf]
            total += float(np.average(t.depths()[leaf], weights=w if w.sum() > 0 else None)) + 1
        return total

    def memory_bytes(self) -> int:
        """Bytes of the arrays prediction reads: children, feature, threshold (float32), leaf value."""
        nodes = sum(len(t.left) for t in self.all_trees())
        return nodes * (8 + 8 + 4 + 4 + 8) + 8 * len(self.base)


def with_base_from(trees: list[list[Tree]], X: np.ndarray, raw_scores: np.ndarray, what: str) -> TreeEnsemble:
    """The ensemble whose base scores make its raw scores equal the library's on X (the libraries store the
    base in version-dependent places); refuses if the trees do not reproduce the library's predictions."""
    partial = TreeEnsemble(trees, np.zeros(len(trees))).scores(X)
    raw = np.asarray(raw_scores, dtype=np.float64).reshape(len(X), -1)
    base = (raw - partial).mean(axis=0)
    gap = float(np.abs(raw - partial - base).max()) if len(X) else 0.0
    if gap > 1e-4 * max(1.0, float(np.abs(raw).max())):
        raise KdxError(f"{what}: kdx's reading of the trees differs from the library's predictions by {gap:.3g}")
    return TreeEnsemble(trees, base)
