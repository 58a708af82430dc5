"""LightGBM as a kdx model (teacher=lightgbm): leaf-wise trees on the CPU, seeded and deterministic."""

from __future__ import annotations

import numpy as np

from kdx.models.base import require_float, require_int
from kdx.models.boosting import BoosterClassifier
from kdx.models.ensemble import Tree, float32_at_most, with_base_from


def _tree(structure: dict) -> Tree:
    """One dumped tree as node arrays in preorder (a parent before its children)."""
    nodes: list[dict] = []

    def visit(node: dict) -> int:
        index = len(nodes)
        nodes.append(node)
        if "split_index" in node:
            node["_left"] = visit(node["left_child"])
            node["_right"] = visit(node["right_child"])
        return index

    visit(structure)
    split = [("split_index" in n) for n in nodes]
    return Tree(
        np.array([n["_left"] if s else -1 for n, s in zip(nodes, split)], dtype=np.int64),
        np.array([n["_right"] if s else -1 for n, s in zip(nodes, split)], dtype=np.int64),
        np.array([n["split_feature"] if s else -2 for n, s in zip(nodes, split)], dtype=np.int64),
        # LightGBM goes left when x ≤ threshold (a double).
        float32_at_most(np.array([n["threshold"] if s else 0.0 for n, s in zip(nodes, split)], dtype=np.float64)),
        np.array([0.0 if s else n["leaf_value"] for n, s in zip(nodes, split)], dtype=np.float64),
        np.array([n.get("internal_count" if s else "leaf_count", 0) for n, s in zip(nodes, split)], dtype=np.float64),
    )


class LightGBMClassifier(BoosterClassifier):
    library, option = "lightgbm", "teacher=lightgbm"
    fits_logits = True

    def __init__(self, n_estimators: int = 200, learning_rate: float = 0.1, num_leaves: int = 31,
                 min_child_samples: int = 20, reg_lambda: float = 0.0, early_stopping_rounds: int | None = None,
                 seed: int = 0, device: str = "cpu", kd_fit: str = "soft_rows"):
        super().__init__(n_estimators, learning_rate, early_stopping_rounds, seed, device, kd_fit)
        self.num_leaves = require_int("num_leaves", num_leaves, minimum=2)
        self.min_child_samples = require_int("min_child_samples", min_child_samples)
        self.reg_lambda = require_float("reg_lambda", reg_lambda, 0.0)

    def get_params(self) -> dict:
        return {**super().get_params(), "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                "reg_lambda": self.reg_lambda}

    def _params(self) -> dict:
        return {"learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples, "lambda_l2": self.reg_lambda, "seed": self.seed,
                "deterministic": True, "force_row_wise": True, "num_threads": self.threads(), "verbose": -1}

    def _train_logits(self, X, targets, weight, n_classes):
        import lightgbm as lgb

        gradient = self.squared_error(targets, weight)
        params = {**self._params(), "objective": lambda margins, _: gradient(margins)}
        if targets.shape[1] > 1:
            params["num_class"] = targets.shape[1]
        return lgb.train(params, lgb.Dataset(X), self.n_estimators)

    def _train(self, X, y, w, X_val, y_val, n_classes):
        import lightgbm as lgb

        params = {"objective": "binary" if n_classes == 2 else "multiclass", **self._params()}
        if n_classes > 2:
            params["num_class"] = n_classes
        train = lgb.Dataset(X, label=y, weight=w)
        if X_val is None:
            return lgb.train(params, train, self.n_estimators)
        booster = lgb.train(params, train, self.n_estimators, valid_sets=[lgb.Dataset(X_val, y_val, reference=train)],
                            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        # Keep only the rounds up to the best one on validation.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    def _raw(self, X):
        return self.model_.predict(X, raw_score=True)

    def _rounds(self) -> int:
        return self.model_.current_iteration()

    def _native_bytes(self) -> bytes:
        return self.model_.model_to_string().encode()

    def _ensemble(self, X):
        dump = self.model_.dump_model()
        outputs = dump["num_tree_per_iteration"]
        trees: list[list[Tree]] = [[] for _ in range(outputs)]
        for info in dump["tree_info"]:
            trees[info["tree_index"] % outputs].append(_tree(info["tree_structure"]))
        return with_base_from(trees, X, self._raw(X), "LightGBM")
