"""A decision-tree student that can be distilled from soft labels and read as rules."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from kdx.models.base import Classifier, require_int
from kdx.models.rules import tree_rules
from kdx.models.soft_targets import hard_targets, regression_targets, weighted_rows

PROBA_FLOOR = 1e-6  # leaves with a zero class probability get this before the log: logits stay finite


class TreeClassifier(Classifier):
    """CART with the log-loss criterion. KD fits the blended target q = α·onehot(y) + (1−α)·softmax(z_T/τ)
    through weighted duplicated rows (see `weighted_rows`): with log-loss splits and leaf values equal to
    weighted class proportions, each leaf predicts the mean q of its rows, so a tree can match the
    teacher's soft labels exactly. α = 1 gives exactly the hard-label tree.

    Logits are log(max(p, 1e-6)) of the leaf probabilities. With one output (a regression) it is CART with the
    squared error: each leaf predicts the weighted mean of its rows' targets (kdx.models.soft_targets.
    regression_targets: α·y + (1−α)·ŷ_T with KD).
    """

    family = "sklearn"

    def __init__(self, max_depth: int | None = 4, max_leaf_nodes: int | None = None, min_samples_leaf: int = 5,
                 seed: int = 0, device: str = "cpu"):
        self.max_depth = None if max_depth is None else require_int("max_depth", max_depth)
        self.max_leaf_nodes = None if max_leaf_nodes is None else require_int("max_leaf_nodes", max_leaf_nodes, 2)
        self.min_samples_leaf = require_int("min_samples_leaf", min_samples_leaf)
        self.seed = require_int("seed", seed, minimum=0)
        self.device = device

    def get_params(self) -> dict:
        return {"max_depth": self.max_depth, "max_leaf_nodes": self.max_leaf_nodes,
                "min_samples_leaf": self.min_samples_leaf, "seed": self.seed}

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        start = time.perf_counter()
        shape = {"max_depth": self.max_depth, "max_leaf_nodes": self.max_leaf_nodes,
                 "min_samples_leaf": self.min_samples_leaf, "random_state": self.seed}
        if n_classes == 1:
            t, w = regression_targets(y) if objective is None else objective.regression_targets(y, signals)
            self.model_ = DecisionTreeRegressor(criterion="squared_error", **shape).fit(X, t[:, 0], sample_weight=w)
        else:
            q = hard_targets(y, n_classes) if objective is None else objective.soft_targets(y, signals, n_classes)
            Xw, yw, w = weighted_rows(X, q)
            self.model_ = DecisionTreeClassifier(criterion="log_loss", **shape).fit(Xw, yw, sample_weight=w)
        self.n_classes_ = n_classes
        self.history_ = {"fit_seconds": time.perf_counter() - start, "train_device": "cpu",
                         "leaves": int(self.model_.get_n_leaves()), "depth": int(self.model_.get_depth())}
        return self

    @property
    def regression(self) -> bool:
        return self.n_classes_ == 1

    def _full_proba(self, X: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(X), self.n_classes_))
        proba[:, self.model_.classes_] = self.model_.predict_proba(X)
        return proba

    def logits(self, X: np.ndarray) -> np.ndarray:
        if self.regression:
            return self.model_.predict(X)[:, None]
        return np.log(np.maximum(self._full_proba(X), PROBA_FLOOR))

    def node_proba(self) -> np.ndarray:
        """Per node, the class probabilities it predicts (nodes × classes)."""
        values = self.model_.tree_.value[:, 0, :]
        if self.regression:
            return values.astype(np.float64)  # (nodes, 1): each node's predicted value
        proba = np.zeros((len(values), self.n_classes_))
        proba[:, self.model_.classes_] = values / values.sum(1, keepdims=True)
        return proba

    def leaf_logits(self) -> np.ndarray:
        """Per node, the logits it predicts (nodes × classes), for exact tree SHAP (a regression: its value)."""
        if self.regression:
            return self.node_proba()
        return np.log(np.maximum(self.node_proba(), PROBA_FLOOR))

    def n_params(self) -> int:
        """Per split node its feature and threshold (2), per leaf one probability per class."""
        t = self.model_.tree_
        leaves = int((t.children_left == -1).sum())
        return 2 * (t.node_count - leaves) + leaves * self.n_classes_

    def flops(self) -> float:
        """Per row: the expected comparisons on the path to a leaf, each leaf's depth weighted by the
        (weighted) training rows that reach it."""
        t = self.model_.tree_
        depth = np.zeros(t.node_count)
        for node in range(t.node_count):  # children always come after their parent
            for child in (t.children_left[node], t.children_right[node]):
                if child != -1:
                    depth[child] = depth[node] + 1
        leaf = t.children_left == -1
        return float(np.average(depth[leaf], weights=t.weighted_n_node_samples[leaf]))

    def size_bytes(self) -> int:
        return len(pickle.dumps(self.model_, protocol=pickle.HIGHEST_PROTOCOL))

    def memory_bytes(self) -> int:
        t = self.model_.tree_
        return sum(a.nbytes for a in (t.children_left, t.children_right, t.feature, t.threshold, t.value))

    def rules(self, preprocessor, class_names) -> str:
        """The tree as if/else rules in the original features' units."""
        proba = self.node_proba()
        return tree_rules(self.model_, preprocessor, class_names, lambda node: proba[node])

    def save(self, stem: Path) -> Path:
        path = Path(stem).with_suffix(".joblib")
        joblib.dump(self, path, compress=3)
        return path
