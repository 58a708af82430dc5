"""XGBoost as a kdx model (teacher=xgboost): `hist` trees on the CPU, seeded."""

from __future__ import annotations

import numpy as np

from kdx.models.base import require_float, require_int
from kdx.models.boosting import BoosterClassifier
from kdx.models.ensemble import Tree, float32_at_most, with_base_from


class XGBoostClassifier(BoosterClassifier):
    library, option = "xgboost", "teacher=xgboost"
    fits_logits = True

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.1, max_depth: int = 6,
                 min_child_weight: float = 1.0, reg_lambda: float = 1.0, subsample: float = 1.0,
                 colsample_bytree: float = 1.0, early_stopping_rounds: int | None = None, seed: int = 0,
                 device: str = "cpu", kd_fit: str = "soft_rows"):
        super().__init__(n_estimators, learning_rate, early_stopping_rounds, seed, device, kd_fit)
        self.max_depth = require_int("max_depth", max_depth)
        self.min_child_weight = require_float("min_child_weight", min_child_weight, 0.0)
        self.reg_lambda = require_float("reg_lambda", reg_lambda, 0.0)
        self.subsample = require_float("subsample", subsample, 0.0, 1.0, low_open=True)
        self.colsample_bytree = require_float("colsample_bytree", colsample_bytree, 0.0, 1.0, low_open=True)

    def get_params(self) -> dict:
        return {**super().get_params(), "max_depth": self.max_depth, "min_child_weight": self.min_child_weight,
                "reg_lambda": self.reg_lambda, "subsample": self.subsample, "colsample_bytree": self.colsample_bytree}

    def _train(self, X, y, w, X_val, y_val, n_classes):
        import xgboost as xgb

        params = {"objective": "binary:logistic" if n_classes == 2 else "multi:softprob", **self._params()}
        if n_classes > 2:
            params["num_class"] = n_classes
        train = xgb.DMatrix(X, label=y, weight=w)
        if X_val is None:
            return xgb.train(params, train, self.n_estimators)
        booster = xgb.train(params, train, self.n_estimators, evals=[(xgb.DMatrix(X_val, label=y_val), "val")],
                            early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False)
        return booster[: booster.best_iteration + 1]  # the best round on validation, nothing after it

    def _params(self) -> dict:
        return {"eta": self.learning_rate, "max_depth": self.max_depth, "min_child_weight": self.min_child_weight,
                "lambda": self.reg_lambda, "subsample": self.subsample, "colsample_bytree": self.colsample_bytree,
                "tree_method": "hist", "seed": self.seed, "nthread": self.threads(), "verbosity": 0}

    def _train_logits(self, X, targets, weight, n_classes):
        import xgboost as xgb

        gradient = self.squared_error(targets, weight)
        params = {**self._params(), "base_score": 0.0, "disable_default_eval_metric": 1}
        if targets.shape[1] > 1:
            params["num_class"] = targets.shape[1]
        return xgb.train(params, xgb.DMatrix(X), self.n_estimators, obj=lambda margins, _: gradient(margins))

    def _raw(self, X):
        import xgboost as xgb

        return self.model_.predict(xgb.DMatrix(X), output_margin=True)

    def _rounds(self) -> int:
        return self.model_.num_boosted_rounds()

    def _native_bytes(self) -> bytes:
        return bytes(self.model_.save_raw("ubj"))

    def _ensemble(self, X):
        import json

        # The JSON model holds every threshold and leaf value exactly (the text dump rounds them).
        model = json.loads(bytes(self.model_.save_raw("json")))["learner"]["gradient_booster"]["model"]
        outputs = 1 if self.n_classes_ == 2 else self.n_classes_
        trees: list[list[Tree]] = [[] for _ in range(outputs)]
        for group, tree in zip(model["tree_info"], model["trees"]):
            left = np.asarray(tree["left_children"], dtype=np.int64)
            leaf = left == -1
            condition = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
            trees[int(group)].append(Tree(
                left, np.asarray(tree["right_children"], dtype=np.int64),
                np.where(leaf, -2, np.asarray(tree["split_indices"], dtype=np.int64)),
                # XGBoost goes left when x < split_condition (compared in float32).
                np.where(leaf, 0.0, float32_at_most(condition, strict=True)),
                np.where(leaf, condition, 0.0),  # a leaf's split_condition is its value
                np.asarray(tree["sum_hessian"], dtype=np.float64)))
        return with_base_from(trees, X, self._raw(X), "XGBoost")
