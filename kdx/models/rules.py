"""A fitted decision tree as rules in the units of the original features (what a reviewer reads)."""

from __future__ import annotations

import numpy as np

from kdx.data.preprocess import Preprocessor


def _condition(pre: Preprocessor, column: int, threshold: float) -> tuple[str, str]:
    """Texts of the left (≤) and right (>) branch of a split on an encoded column."""
    name = pre.columns_[column]
    if column < len(pre.numeric):
        raw = threshold * pre.scale_[column] + pre.mean_[column]
        return f"{name} <= {raw:.4g}", f"{name} > {raw:.4g}"
    feature, level = name.split("=", 1)
    return f"{feature} is not {level}", f"{feature} is {level}"


def tree_rules(tree, pre: Preprocessor, class_names, proba_of_node) -> str:
    """Indented if/else rules; each leaf shows the predicted class, its probability and the training
    weight it holds. `proba_of_node(i)` gives the class probabilities of node i. A regression tree
    (`pre.regression`) shows each leaf's predicted value in the target's units instead."""
    t = tree.tree_
    lines: list[str] = []

    def walk(node: int, depth: int) -> None:
        pad = "|   " * depth
        if t.children_left[node] == -1:
            p = proba_of_node(node)
            weight = t.weighted_n_node_samples[node]
            if pre.regression:
                value = float(pre.unscale_target(np.atleast_1d(p[:1]))[0])
                lines.append(f"{pad}└─ predict {class_names[0]} = {value:.4g} (training weight {weight:.1f})")
                return
            k = int(np.argmax(p))
            lines.append(f"{pad}└─ predict {class_names[k]} (p = {p[k]:.3f}, training weight {weight:.1f})")
            return
        left, right = _condition(pre, int(t.feature[node]), float(t.threshold[node]))
        lines.append(f"{pad}if {left}:")
        walk(int(t.children_left[node]), depth + 1)
        lines.append(f"{pad}else ({right}):")
        walk(int(t.children_right[node]), depth + 1)

    walk(0, 0)
    return "\n".join(lines) + "\n"
