"""One ONNX graph from raw rows to class probabilities: kdx's preprocessing, then the model.

Inputs: one per original feature, numeric as tensor(double) [N, 1] (NaN = missing), categorical as
tensor(string) [N, 1] ("" = missing, unseen values encode as all zeros like kdx's one-hot encoder).
Outputs: `probabilities` float [N, C] (kdx's `predict_proba`) and `label` string [N] (the class name); a
regressor's one output is `prediction` double [N], in the target's units.

The preprocessing is computed in double, exactly as scikit-learn computes it, then cast to float32, so the
model sees the same bits as in kdx. Each model family contributes a sub-graph from the encoded rows `x`
(float [N, d]) to probabilities over all C classes (a regressor's: to its standardized prediction, float [N, 1],
which the graph maps back to the target's units in double); `kdx.deploy.families` holds one converter per family.
"""

from __future__ import annotations

import json

import numpy as np

from kdx import __version__
from kdx.data.preprocess import MISSING
from kdx.deploy.schema import Schema
from kdx.errors import ExportError

OPSET = 17
ML_OPSET = 3  # ai.onnx.ml: LabelEncoder-2, TreeEnsembleClassifier-3
ENCODED = "kdx/encoded_rows"  # the sub-graph's input: preprocessed float32 rows
PROBA = "kdx/model_probabilities"
OUTPUTS = ("probabilities", "label")  # the sub-graph's output: probabilities over all classes


def _const(name: str, values, dtype) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def preprocessing(schema: Schema) -> tuple[list, list, list]:
    """(inputs, nodes, initializers) computing ENCODED from the raw feature inputs."""
    from onnx import TensorProto, helper

    inputs, nodes, inits, blocks = [], [], [], []
    if schema.numeric:
        names = [f.name for f in schema.numeric]
        inputs += [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 1]) for n in names]
        inits += [
            _const("kdx/num_median", [f.median for f in schema.numeric], np.float64),
            _const("kdx/num_mean", [f.mean for f in schema.numeric], np.float64),
            _const("kdx/num_scale", [f.scale for f in schema.numeric], np.float64),
            # A column empty in training carries no information: kdx sets it to 0 whatever its value.
            _const("kdx/num_keep", [0.0 if f.empty else 1.0 for f in schema.numeric], np.float32),
        ]
        nodes += [
            helper.make_node("Concat", names, ["kdx/num_raw"], axis=1),
            helper.make_node("IsNaN", ["kdx/num_raw"], ["kdx/num_isnan"]),
            helper.make_node("Where", ["kdx/num_isnan", "kdx/num_median", "kdx/num_raw"], ["kdx/num_imputed"]),
            helper.make_node("Sub", ["kdx/num_imputed", "kdx/num_mean"], ["kdx/num_centred"]),
            helper.make_node("Div", ["kdx/num_centred", "kdx/num_scale"], ["kdx/num_scaled"]),
            helper.make_node("Cast", ["kdx/num_scaled"], ["kdx/num_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["kdx/num_float", "kdx/num_keep"], ["kdx/num_block"]),
        ]
        blocks.append("kdx/num_block")
    for j, f in enumerate(schema.categorical):
        inputs.append(helper.make_tensor_value_info(f.name, TensorProto.STRING, [None, 1]))
        keys = list(f.categories)
        values = list(range(len(keys)))
        if "" not in keys and MISSING in keys:
            keys.append("")  # an empty string is a missing value: the training rows' missing level
            values.append(f.categories.index(MISSING))
        inits.append(_const(f"kdx/cat{j}_levels", np.arange(len(f.categories)), np.int64))
        nodes += [
            # Unknown strings map to -1, which equals no level: all zeros, as handle_unknown="ignore".
            helper.make_node("LabelEncoder", [f.name], [f"kdx/cat{j}_index"], domain="ai.onnx.ml",
                             keys_strings=keys, values_int64s=values, default_int64=-1),
            helper.make_node("Equal", [f"kdx/cat{j}_index", f"kdx/cat{j}_levels"], [f"kdx/cat{j}_hot"]),
            helper.make_node("Cast", [f"kdx/cat{j}_hot"], [f"kdx/cat{j}_block"], to=TensorProto.FLOAT),
        ]
        blocks.append(f"kdx/cat{j}_block")
    nodes.append(helper.make_node("Concat", blocks, [ENCODED], axis=1))
    return inputs, nodes, inits


def compose(schema: Schema, model_graph, class_names: list[str], metadata: dict[str, str] | None = None,
            target: tuple[float, float] | None = None) -> bytes:
    """The whole model: preprocessing → `model_graph` (ENCODED → PROBA) → probabilities and label; for a
    regressor (`target`: the standardization's mean and sd) → prediction = PROBA·sd + mean, in double."""
    from onnx import TensorProto, helper

    taken = [name for name in schema.names if name in OUTPUTS or name.startswith(("kdx/", "torch/", "sk/", "gbt/"))]
    if taken:
        raise ExportError(f"feature(s) {taken} have a name the exported model uses for its outputs or internals; "
                          "rename the column(s) in the table")
    inputs, nodes, inits = preprocessing(schema)
    n_classes = len(class_names)
    nodes += list(model_graph.node)
    inits += list(model_graph.initializer)
    properties = {"classes": json.dumps([str(c) for c in class_names]), **(metadata or {})}
    if target is not None:
        more_nodes, more_inits, outputs = _prediction(target)
        return _finish(inputs, nodes + more_nodes, inits + more_inits, outputs, {**properties, "task": "regression"})
    nodes += [
        helper.make_node("Identity", [PROBA], ["probabilities"]),
        helper.make_node("ArgMax", [PROBA], ["kdx/label_index"], axis=1, keepdims=0),
        helper.make_node("LabelEncoder", ["kdx/label_index"], ["label"], domain="ai.onnx.ml",
                         keys_int64s=list(range(n_classes)), values_strings=[str(c) for c in class_names],
                         default_string=""),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]),
               helper.make_tensor_value_info("label", TensorProto.STRING, [None])]
    return _finish(inputs, nodes, inits, outputs, properties)


def _prediction(target: tuple[float, float]) -> tuple[list, list, list]:
    """(nodes, initializers, outputs) of a regressor's `prediction`: its standardized output in double, times the
    target's sd, plus its mean, as one value per row."""
    from onnx import TensorProto, helper

    mean, scale = target
    nodes = [helper.make_node("Cast", [PROBA], ["kdx/standardized"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["kdx/standardized", "kdx/target_scale"], ["kdx/scaled"]),
             helper.make_node("Add", ["kdx/scaled", "kdx/target_mean"], ["kdx/prediction_column"]),
             helper.make_node("Squeeze", ["kdx/prediction_column", "kdx/column_axis"], ["prediction"])]
    inits = [_const("kdx/target_scale", scale, np.float64), _const("kdx/target_mean", mean, np.float64),
             _const("kdx/column_axis", [1], np.int64)]
    return nodes, inits, [helper.make_tensor_value_info("prediction", TensorProto.DOUBLE, [None])]


def _finish(inputs: list, nodes: list, inits: list, outputs: list, properties: dict[str, str]) -> bytes:
    """The checked, serialized model of these nodes, with `properties` as its metadata."""
    from onnx import checker, helper

    graph = helper.make_graph(nodes, "kdx", inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="kdx", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = 8  # the oldest IR that opset 17 needs: readable by older runtimes too
    helper.set_model_props(model, properties)
    try:
        checker.check_model(model, full_check=True)
    except (checker.ValidationError, ValueError) as exc:
        raise ExportError(f"the ONNX graph is invalid: {str(exc).splitlines()[0]}") from None
    return model.SerializeToString()
