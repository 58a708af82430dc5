"""CatBoost as a kdx model (teacher=catboost): symmetric (oblivious) trees on the CPU, seeded."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from kdx.errors import ConfigError
from kdx.models.base import require_float, require_int
from kdx.models.boosting import BoosterClassifier
from kdx.models.ensemble import Tree, float32_at_most, with_base_from


def _oblivious(tree: dict, flat_index: dict[int, int], outputs: int, scale: float) -> list[Tree]:
    """One symmetric tree as a full binary tree per output: level ℓ tests splits[ℓ] (right when x > border),
    and the leaf reached with bits b_ℓ is CatBoost's leaf Σ b_ℓ·2^ℓ."""
    splits = tree["splits"]
    depth = len(splits)
    values = np.asarray(tree["leaf_values"], dtype=np.float64).reshape(2**depth, outputs) * scale
    weights = np.asarray(tree["leaf_weights"], dtype=np.float64)
    n_inner = 2**depth - 1
    n = n_inner + 2**depth
    left, right = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    feature, threshold, cover = np.full(n, -2, dtype=np.int64), np.zeros(n), np.zeros(n)
    for level in range(depth):
        split = splits[level]
        for p in range(2**level):
            node = 2**level - 1 + p
            left[node], right[node] = 2 ** (level + 1) - 1 + 2 * p, 2 ** (level + 1) - 1 + 2 * p + 1
            feature[node] = flat_index[split["float_feature_index"]]
            threshold[node] = split["border"]
    leaf_of = np.zeros(2**depth, dtype=np.int64)  # BFS leaf position p → CatBoost's leaf index
    for p in range(2**depth):
        leaf_of[p] = sum(((p >> (depth - 1 - level)) & 1) << level for level in range(depth))
    cover[n_inner:] = weights[leaf_of]
    for node in range(n_inner - 1, -1, -1):
        cover[node] = cover[left[node]] + cover[right[node]]
    threshold = float32_at_most(threshold)
    out = []
    for k in range(outputs):
        value = np.zeros(n)
        value[n_inner:] = values[leaf_of, k]
        out.append(Tree(left, right, feature, threshold, value, cover))
    return out


def outputs_of(dump: dict) -> int:
    return len(np.atleast_1d(dump.get("scale_and_bias", [1.0, [0.0]])[1]))


class CatBoostClassifier(BoosterClassifier):
    library, option = "catboost", "teacher=catboost"

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.1, depth: int = 6, l2_leaf_reg: float = 3.0,
                 early_stopping_rounds: int | None = None, seed: int = 0, device: str = "cpu",
                 kd_fit: str = "soft_rows"):
        super().__init__(n_estimators, learning_rate, early_stopping_rounds, seed, device, kd_fit)
        self.depth = require_int("depth", depth)
        self.l2_leaf_reg = require_float("l2_leaf_reg", l2_leaf_reg, 0.0)

    def get_params(self) -> dict:
        return {**super().get_params(), "depth": self.depth, "l2_leaf_reg": self.l2_leaf_reg}

    def _train(self, X, y, w, X_val, y_val, n_classes):
        import catboost

        model = catboost.CatBoostClassifier(
            iterations=self.n_estimators, learning_rate=self.learning_rate, depth=self.depth,
            l2_leaf_reg=self.l2_leaf_reg, loss_function="Logloss" if n_classes == 2 else "MultiClass",
            class_names=list(range(n_classes)), random_seed=self.seed, thread_count=self.threads(), verbose=False,
            allow_writing_files=False,  # no catboost_info/ folder in the user's working directory
            early_stopping_rounds=self.early_stopping_rounds if X_val is not None else None,
            use_best_model=X_val is not None)
        eval_set = None if X_val is None else catboost.Pool(X_val, y_val)
        return model.fit(catboost.Pool(X, y, weight=w), eval_set=eval_set)

    def _train_logits(self, X, targets, weight, n_classes):
        """A regression (one output): CatBoost's squared-error regressor of the target, weighted."""
        import catboost

        if targets.shape[1] != 1:
            raise ConfigError("kd_fit=logits needs a booster that can regress margins (lightgbm, xgboost), not "
                              "catboost")
        model = catboost.CatBoostRegressor(
            iterations=self.n_estimators, learning_rate=self.learning_rate, depth=self.depth,
            l2_leaf_reg=self.l2_leaf_reg, loss_function="RMSE", random_seed=self.seed, thread_count=self.threads(),
            verbose=False, allow_writing_files=False)
        return model.fit(catboost.Pool(X, targets[:, 0], weight=weight))

    def _raw(self, X):
        return self.model_.predict(X, prediction_type="RawFormulaVal")

    def n_params(self) -> int:
        """Per tree: each level's feature and border (2 per level, shared by the level's nodes), one value per
        leaf and output; plus the bias. (The expanded binary trees kdx explains would count more.)"""
        return self.stored_values_

    def memory_bytes(self) -> int:
        return 8 * self.stored_values_

    def _rounds(self) -> int:
        return int(self.model_.tree_count_)

    def _native_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.cbm"
            self.model_.save_model(str(path), format="cbm")
            return path.read_bytes()

    def _ensemble(self, X):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.json"
            self.model_.save_model(str(path), format="json")
            dump = json.loads(path.read_text())
        # A symmetric tree stores each level's split once: 2 values per level, one per leaf and output.
        self.stored_values_ = sum(2 * len(t["splits"]) + len(t["leaf_values"]) for t in dump["oblivious_trees"])
        self.stored_values_ += outputs_of(dump)
        flat = {f["feature_index"]: f["flat_feature_index"] for f in dump["features_info"].get("float_features", [])}
        scale = dump.get("scale_and_bias", [1.0, [0.0]])[0]
        outputs = outputs_of(dump)
        trees: list[list[Tree]] = [[] for _ in range(outputs)]
        for tree in dump["oblivious_trees"]:
            for k, t in enumerate(_oblivious(tree, flat, outputs, float(scale))):
                trees[k].append(t)
        return with_base_from(trees, X, self._raw(X), "CatBoost")
