"""Gradient-boosted trees (scikit-learn's histogram GBT) as a teacher whose raw scores are logits."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from kdx.models.base import Classifier, require_float, require_int
from kdx.models.ensemble import Tree, TreeEnsemble, float32_at_most
from kdx.models.soft_targets import hard_targets, regression_targets, weighted_rows


class GBTClassifier(Classifier):
    """`n_estimators` boosting rounds of depth-limited trees, no early stopping (the study's GBT(200)); with
    few shallow rounds, an interpretable student (`student=small_gbt`).

    HistGradientBoosting rather than GradientBoostingClassifier: it handles multiclass with a tree per
    class per round, is an order of magnitude faster, and SHAP's TreeExplainer supports it. Its raw
    decision function is the log-odds (binary) or per-class scores (multiclass); binary scores z become
    logits [0, z], which give the same probabilities under softmax. With one output (a regression) it is the
    squared-error regressor of the standardized target (KD: α·y + (1−α)·ŷ_T, kdx.models.soft_targets).
    """

    family = "sklearn"

    def __init__(
        self, n_estimators: int = 200, learning_rate: float = 0.1, max_depth: int | None = None,
        max_leaf_nodes: int = 31, min_samples_leaf: int = 20, l2_regularization: float = 0.0,
        seed: int = 0, device: str = "cpu",
    ):
        self.n_estimators = require_int("n_estimators", n_estimators)
        self.learning_rate = require_float("learning_rate", learning_rate, 0.0, low_open=True)
        self.max_depth = None if max_depth is None else require_int("max_depth", max_depth)
        self.max_leaf_nodes = require_int("max_leaf_nodes", max_leaf_nodes, minimum=2)
        self.min_samples_leaf = require_int("min_samples_leaf", min_samples_leaf)
        self.l2_regularization = require_float("l2_regularization", l2_regularization, 0.0)
        self.seed = require_int("seed", seed, minimum=0)
        self.device = device  # trees train on the CPU whatever the run's device

    def get_params(self) -> dict:
        return {
            "n_estimators": self.n_estimators, "learning_rate": self.learning_rate, "max_depth": self.max_depth,
            "max_leaf_nodes": self.max_leaf_nodes, "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization, "seed": self.seed,
        }

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        """Hard labels, or (KD) the blended target α·onehot(y) + (1−α)·softmax(z_T/τ) as weighted duplicated
        rows: exact for the log-loss that boosting minimizes; α = 1 is exactly the hard-label fit."""
        start = time.perf_counter()
        settings = {"max_iter": self.n_estimators, "learning_rate": self.learning_rate, "max_depth": self.max_depth,
                    "max_leaf_nodes": self.max_leaf_nodes, "min_samples_leaf": self.min_samples_leaf,
                    "l2_regularization": self.l2_regularization, "early_stopping": False, "random_state": self.seed}
        if n_classes == 1:
            t, w = regression_targets(y) if objective is None else objective.regression_targets(y, signals)
            self.model_ = HistGradientBoostingRegressor(**settings).fit(X, t[:, 0], sample_weight=w)
        else:
            q = hard_targets(y, n_classes) if objective is None else objective.soft_targets(y, signals, n_classes)
            Xw, yw, w = weighted_rows(X, q)
            self.model_ = HistGradientBoostingClassifier(**settings).fit(Xw, yw, sample_weight=w)
        self.n_classes_ = n_classes
        self.ensemble_ = None  # read from the fitted trees when first needed
        self.history_ = {"fit_seconds": time.perf_counter() - start, "train_device": "cpu"}
        return self

    def logits(self, X: np.ndarray) -> np.ndarray:
        if self.n_classes_ == 1:
            return self.model_.predict(X)[:, None]
        scores = self.model_.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([np.zeros_like(scores), scores])
        return scores

    def ensemble(self) -> TreeEnsemble:
        """The trees in kdx's representation (kdx.models.ensemble), for explanations, counts and ONNX export;
        built once per fitted model."""
        if getattr(self, "ensemble_", None) is None:
            self.ensemble_ = self._read_trees()
        return self.ensemble_

    def _read_trees(self) -> TreeEnsemble:
        est = self.model_
        trees: list[list[Tree]] = [[] for _ in est._predictors[0]]
        for round_trees in est._predictors:
            for k, predictor in enumerate(round_trees):
                n = predictor.nodes
                leaf = n["is_leaf"].astype(bool)
                trees[k].append(Tree(
                    np.where(leaf, -1, n["left"].astype(np.int64)), np.where(leaf, -1, n["right"].astype(np.int64)),
                    np.where(leaf, -2, n["feature_idx"].astype(np.int64)),
                    float32_at_most(np.where(leaf, 0.0, n["num_threshold"])),  # x ≤ threshold goes left
                    np.where(leaf, n["value"], 0.0).astype(np.float64), n["count"].astype(np.float64)))
        return TreeEnsemble(trees, np.asarray(est._baseline_prediction, dtype=np.float64).ravel(),
                            regression=self.n_classes_ == 1)

    def n_params(self) -> int:
        """Stored values: per split node its feature index and threshold, per leaf its value, the baseline(s)."""
        return self.ensemble().n_params()

    def flops(self) -> float:
        """Per row: the expected comparisons on the path to a leaf (depth weighted by the training rows that
        reach each leaf) plus one addition of the leaf value, summed over the trees."""
        return self.ensemble().flops()

    def size_bytes(self) -> int:
        return len(pickle.dumps(self.model_, protocol=pickle.HIGHEST_PROTOCOL))

    def memory_bytes(self) -> int:
        # Prediction on raw features reads only the node arrays (raw thresholds live in the nodes).
        nodes = sum(tree.nodes.nbytes for rnd in self.model_._predictors for tree in rnd)
        return nodes + np.asarray(self.model_._baseline_prediction).nbytes

    def save(self, stem: Path) -> Path:
        path = Path(stem).with_suffix(".joblib")
        joblib.dump(self, path, compress=3)
        return path
