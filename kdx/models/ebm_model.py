"""InterpretML's Explainable Boosting Machine as a kdx student (student=ebm, extra kdx[glassbox]): a glass-box
GAM, one shape function per feature and a few pairwise interactions, each a lookup table over bins.

Distilled as the booster students are (`kd_fit=logits`): one EBM regressor per output fits the centred log of
the blended soft target (binary: the margin), squared error weighted by each row's share of the loss; the no-KD
twin is InterpretML's classifier. kdx reads every term into its tree form (kdx.models.ensemble: a term's bins as
a balanced tree of "x < cut" tests, an interaction as a tree of trees), so an EBM gets exact TreeSHAP, ONNX
export with the preprocessing inside and the boosters' counts, and the reading is checked against the library's
own predictions."""

from __future__ import annotations

import pickle
import warnings

import numpy as np

from kdx.errors import ConfigError
from kdx.models.base import require_int
from kdx.models.boosting import BoosterClassifier
from kdx.models.ensemble import Tree, TreeEnsemble, float32_at_most, with_base_from


class _Nodes:
    """Node arrays built in preorder (a parent before its children)."""

    def __init__(self):
        self.left, self.right, self.feature, self.threshold, self.value, self.cover = [], [], [], [], [], []

    def add(self, feature=-2, threshold=0.0, value=0.0, cover=0.0) -> int:
        for column, item in ((self.left, -1), (self.right, -1), (self.feature, feature),
                             (self.threshold, threshold), (self.value, value), (self.cover, cover)):
            column.append(item)
        return len(self.left) - 1

    def tree(self) -> Tree:
        return Tree(np.array(self.left, np.int64), np.array(self.right, np.int64), np.array(self.feature, np.int64),
                    np.array(self.threshold, np.float64), np.array(self.value, np.float64),
                    np.array(self.cover, np.float64))


def _split(nodes: _Nodes, feature: int, cuts: np.ndarray, low: int, high: int, leaf) -> int:
    """A balanced tree over bins low..high (bin b: cuts[b−2] ≤ x < cuts[b−1], InterpretML's numbering) of one
    feature; `leaf(b)` adds what bin b leads to and returns its node. Returns the subtree's root."""
    if low == high:
        return leaf(low)
    mid = (low + high) // 2  # bins low..mid go left: x < cuts[mid − 1]
    node = nodes.add(feature, float(float32_at_most(cuts[mid - 1], strict=True)))
    nodes.left[node] = _split(nodes, feature, cuts, low, mid, leaf)
    nodes.right[node] = _split(nodes, feature, cuts, mid + 1, high, leaf)
    nodes.cover[node] = nodes.cover[nodes.left[node]] + nodes.cover[nodes.right[node]]
    return node


def term_tree(features: tuple, cuts: list[np.ndarray], scores: np.ndarray, weights: np.ndarray) -> Tree:
    """One term (one feature, or a pair) as a tree: `cuts` per feature, `scores` and `weights` the term's table
    (index 0: missing; the last: unknown — neither occurs in kdx's imputed rows)."""
    nodes = _Nodes()

    def leaf_for(prefix: tuple, depth: int):
        def leaf(b: int) -> int:
            index = prefix + (b,)
            if depth + 1 < len(features):
                return _split(nodes, features[depth + 1], cuts[depth + 1], 1, len(cuts[depth + 1]) + 1,
                              leaf_for(index, depth + 1))
            return nodes.add(value=float(scores[index]), cover=float(weights[index]))
        return leaf

    _split(nodes, features[0], cuts[0], 1, len(cuts[0]) + 1, leaf_for((), 0))
    return nodes.tree()


def read_terms(ebm, output: int | None) -> list[Tree]:
    """Every term of a fitted EBM as a tree (`output`: the class of a multiclass classifier's tables)."""
    trees = []
    for features, scores, weights in zip(ebm.term_features_, ebm.term_scores_, ebm.bin_weights_):
        level = len(features) - 1
        cuts = [np.asarray(ebm.bins_[f][min(level, len(ebm.bins_[f]) - 1)], np.float64) for f in features]
        if any(not np.issubdtype(c.dtype, np.number) for c in cuts):
            raise ConfigError("student=ebm reads kdx's encoded (numeric) columns only")
        table = scores if output is None else scores[..., output]
        trees.append(term_tree(tuple(features), cuts, table, weights))
    return trees


class EBMClassifier(BoosterClassifier):
    """`max_rounds` boosting rounds per bag at most (InterpretML stops early on its own validation share of the
    training rows), `interactions` pairwise terms, `max_bins` bins per feature, `outer_bags` bagged models
    averaged. Deterministic for a seed."""

    library, option, extra = "interpret", "student=ebm", "glassbox"
    fits_logits = True

    def __init__(self, max_rounds: int = 1000, learning_rate: float = 0.02, interactions: int = 10,
                 max_bins: int = 256, outer_bags: int = 8, min_samples_leaf: int = 4, seed: int = 0,
                 device: str = "cpu", kd_fit: str = "logits"):
        super().__init__(max_rounds, learning_rate, None, seed, device, kd_fit)
        self.interactions = require_int("interactions", interactions, minimum=0)
        self.max_bins = require_int("max_bins", max_bins, minimum=2)
        self.outer_bags = require_int("outer_bags", outer_bags)
        self.min_samples_leaf = require_int("min_samples_leaf", min_samples_leaf)

    def get_params(self) -> dict:
        return {"max_rounds": self.n_estimators, "learning_rate": self.learning_rate,
                "interactions": self.interactions, "max_bins": self.max_bins, "outer_bags": self.outer_bags,
                "min_samples_leaf": self.min_samples_leaf, "seed": self.seed, "kd_fit": self.kd_fit}

    def _params(self) -> dict:
        return {"max_rounds": self.n_estimators, "learning_rate": self.learning_rate,
                "max_bins": self.max_bins, "outer_bags": self.outer_bags, "min_samples_leaf": self.min_samples_leaf,
                "random_state": self.seed, "n_jobs": self.threads()}

    def _train(self, X, y, w, X_val, y_val, n_classes):
        from interpret.glassbox import ExplainableBoostingClassifier

        with warnings.catch_warnings():  # "cannot currently visualize pairs" (multiclass): kdx reads them itself
            warnings.filterwarnings("ignore", message=".*visualize pairs.*")
            return ExplainableBoostingClassifier(interactions=self.interactions, **self._params()).fit(
                X, y, sample_weight=w)

    def _train_logits(self, X, targets, weight, n_classes):
        from interpret.glassbox import ExplainableBoostingRegressor

        return [ExplainableBoostingRegressor(interactions=self.interactions, **self._params()).fit(
            X, targets[:, k], sample_weight=weight) for k in range(targets.shape[1])]

    def _models(self) -> list:
        return self.model_ if isinstance(self.model_, list) else [self.model_]

    def _raw(self, X):
        if isinstance(self.model_, list):
            return np.column_stack([m.predict(X) for m in self.model_])
        return self.model_.decision_function(X)

    def _rounds(self) -> int:
        """Main-effect rounds of the longest bag (InterpretML counts boosting steps: rounds × terms)."""
        return int(max(np.ceil(np.max(m.best_iteration_[0]) / max(1, sum(len(f) == 1 for f in m.term_features_)))
                       for m in self._models()))

    def _native_bytes(self) -> bytes:
        return pickle.dumps(self.model_)

    def _ensemble(self, X) -> TreeEnsemble:
        if isinstance(self.model_, list):
            trees = [read_terms(m, None) for m in self.model_]
        else:
            classes = len(self.model_.classes_)
            trees = [read_terms(self.model_, None)] if classes == 2 else [read_terms(self.model_, k)
                                                                          for k in range(classes)]
        return with_base_from(trees, X, self._raw(X), "EBM")

    def n_params(self) -> int:
        """Stored values: every term's table (per output), each feature's cut points, the intercepts."""
        tables = sum(int(np.size(s)) for m in self._models() for s in m.term_scores_)
        cuts = sum(len(level) for m in self._models() for bins in m.bins_ for level in bins)
        return tables + cuts + len(self.ensemble_.base)
