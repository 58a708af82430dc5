"""Per model family, the ONNX sub-graph from encoded rows (ENCODED, float [N, d]) to kdx's probabilities
(PROBA, float [N, C]). A new family registers one converter with `@converter(ClassName)`."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np

from kdx.deploy.graph import ENCODED, ML_OPSET, OPSET, PROBA, _const
from kdx.errors import ExportError
from kdx.models import Classifier
from kdx.models.tree import PROBA_FLOOR

CONVERTERS: dict[str, Callable] = {}


def converter(class_name: str):
    def register(fn):
        CONVERTERS[class_name] = fn
        return fn

    return register


def model_graph(model: Classifier, n_features: int, n_classes: int):
    """The registered converter's sub-graph for `model` (all internal names prefixed, so they cannot clash)."""
    name = type(model).__name__
    if name not in CONVERTERS:
        raise ExportError(f"no ONNX exporter for {name} models; exportable: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[name](model, n_features, n_classes)


def _adopt(proto, source_input: str, source_output: str, prefix: str, tail: list | None = None,
           tail_inits: list | None = None):
    """`proto`'s graph with names prefixed, its input renamed ENCODED and (with no `tail`) its output PROBA;
    `tail` nodes continue from the prefixed output to PROBA."""
    from onnx import compose, helper

    graph = compose.add_prefix(proto, prefix).graph
    inp, out = prefix + source_input, prefix + source_output
    nodes = []
    for node in graph.node:
        node.input[:] = [ENCODED if i == inp else i for i in node.input]
        if tail is None:
            node.output[:] = [PROBA if o == out else o for o in node.output]
        nodes.append(node)
    nodes += [helper.make_node(n.op_type, [out if i == "$in" else i for i in n.input], list(n.output),
                               domain=n.domain, **{a.name: helper.get_attribute_value(a) for a in n.attribute})
              for n in (tail or [])]
    return helper.make_graph(nodes, "model", [], [], list(graph.initializer) + list(tail_inits or []))


@converter("MLPClassifier")
def mlp(model, n_features: int, n_classes: int):
    """torch.onnx (TorchScript exporter: no onnxscript needed) of the network followed by a softmax (a regressor:
    the network alone)."""
    import onnx
    import torch
    from torch import nn

    wrapped = (model.net_ if n_classes == 1 else nn.Sequential(model.net_, nn.Softmax(dim=1))).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(wrapped, (torch.zeros(1, n_features),), buffer, input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {0: "rows"}, "p": {0: "rows"}}, opset_version=OPSET, dynamo=False)
    return _adopt(onnx.load_from_string(buffer.getvalue()), "x", "p", "torch/")


def _sklearn(estimator, n_features: int):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    try:
        return convert_sklearn(estimator, initial_types=[("x", FloatTensorType([None, n_features]))],
                               target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                               options={id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None)
    except Exception as exc:  # skl2onnx raises many types for what it cannot convert
        raise ExportError(f"skl2onnx cannot convert {type(estimator).__name__}: {str(exc).splitlines()[0]}") from exc


def _all_classes(classes: np.ndarray, n_classes: int) -> tuple[list, list]:
    """Nodes mapping probabilities over the estimator's classes_ onto all classes (a class absent from the
    training rows gets probability 0, as in kdx)."""
    from onnx import helper

    select = np.zeros((len(classes), n_classes), dtype=np.float32)
    select[np.arange(len(classes)), np.asarray(classes, dtype=np.int64)] = 1
    return ([helper.make_node("MatMul", ["$in", "sk/select"], ["sk/full"])], [_const("sk/select", select, np.float32)])


@converter("TreeClassifier")
def tree(model, n_features: int, n_classes: int):
    """skl2onnx's tree ensemble, then kdx's floor: p ← max(p, 1e-6) renormalized (softmax of the logits
    log(max(p, 1e-6)) that kdx predicts with). A regression tree: skl2onnx's regressor, its value as it is."""
    from onnx import helper

    if n_classes == 1:
        return _adopt(_sklearn(model.model_, n_features), "x", "variable", "sk/")
    nodes, inits = _all_classes(model.model_.classes_, n_classes)
    nodes += [helper.make_node("Max", ["sk/full", "sk/floor"], ["sk/floored"]),
              helper.make_node("ReduceSum", ["sk/floored", "sk/axis"], ["sk/total"], keepdims=1),
              helper.make_node("Div", ["sk/floored", "sk/total"], [PROBA])]
    inits += [_const("sk/floor", PROBA_FLOOR, np.float32), _const("sk/axis", [1], np.int64)]
    return _adopt(_sklearn(model.model_, n_features), "x", "probabilities", "sk/", nodes, inits)


def _boosted(model, n_features: int, n_classes: int):
    """Boosted trees from kdx's representation (kdx.models.ensemble) as one TreeEnsembleRegressor (raw scores
    = kdx's logits), then a softmax (a regressor: its one raw score, the standardized prediction). Its thresholds
    are float32-exact for "x ≤ t", the ONNX rule BRANCH_LEQ, so every row takes the path it takes in kdx.
    (Written here rather than by skl2onnx, whose HistGBT converter, 1.20, fails on scikit-learn 1.9.)"""
    from onnx import helper

    ensemble = model.ensemble()
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                             "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids",
                             "target_ids", "target_weights")}
    tree_id = 0
    for target, trees in enumerate(ensemble.trees):
        for tree in trees:
            leaf = tree.leaves
            n = len(leaf)
            attrs["nodes_treeids"] += [tree_id] * n
            attrs["nodes_nodeids"] += list(range(n))
            attrs["nodes_featureids"] += np.where(leaf, 0, tree.feature).tolist()
            attrs["nodes_modes"] += ["LEAF" if lf else "BRANCH_LEQ" for lf in leaf]
            attrs["nodes_values"] += np.where(leaf, 0.0, tree.threshold).tolist()
            attrs["nodes_truenodeids"] += np.where(leaf, 0, tree.left).tolist()
            attrs["nodes_falsenodeids"] += np.where(leaf, 0, tree.right).tolist()
            leaves = np.flatnonzero(leaf)
            attrs["target_treeids"] += [tree_id] * len(leaves)
            attrs["target_nodeids"] += leaves.tolist()
            attrs["target_ids"] += [target] * len(leaves)
            attrs["target_weights"] += tree.value[leaves].tolist()
            tree_id += 1
    nodes = [helper.make_node("TreeEnsembleRegressor", [ENCODED], ["gbt/scores"], domain="ai.onnx.ml",
                              n_targets=len(ensemble.trees), base_values=ensemble.base.tolist(),
                              aggregate_function="SUM", post_transform="NONE", **attrs)]
    inits = []
    if n_classes == 1:  # a regressor: the score is the output
        nodes.append(helper.make_node("Identity", ["gbt/scores"], [PROBA]))
        return helper.make_graph(nodes, "model", [], [], inits)
    if ensemble.binary:  # logits [0, z]
        inits.append(_const("gbt/zero_weight", [[0.0, 1.0]], np.float32))
        nodes.append(helper.make_node("MatMul", ["gbt/scores", "gbt/zero_weight"], ["gbt/logits"]))
    else:
        nodes.append(helper.make_node("Identity", ["gbt/scores"], ["gbt/logits"]))
    nodes.append(helper.make_node("Softmax", ["gbt/logits"], [PROBA], axis=1))
    return helper.make_graph(nodes, "model", [], [], inits)


for _name in ("GBTClassifier", "XGBoostClassifier", "LightGBMClassifier", "CatBoostClassifier", "EBMClassifier"):
    converter(_name)(_boosted)
