"""kdx is extended without editing it: a student family and its ONNX exporter defined here, registered by one
YAML in a config directory of the user's own (Hydra's search path) and one `@converter`, run the whole protocol,
load back and export with parity. (A new objective: tests/test_stacked.py, `Margin`.)"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

import kdx
from kdx.data.rows import load_data
from kdx.deploy.families import CONVERTERS, converter
from kdx.deploy.graph import ENCODED, PROBA, _const
from kdx.models import Classifier
from kdx.models.soft_targets import hard_targets


class Centroids(Classifier):
    """A toy student family: one centroid per class, the rows' mean weighted by the (soft) targets, and the
    logits of a nearest-centroid rule, x·μ_k − ½‖μ_k‖² (linear in x). Distilled through the objective's soft
    targets, as a tree is."""

    family = "centroids"

    def __init__(self, seed: int = 0, device: str = "cpu"):
        self.seed, self.device = seed, device

    def get_params(self) -> dict:
        return {"seed": self.seed}

    def fit(self, X, y, X_val, y_val, n_classes, objective=None, signals=None):
        start = time.perf_counter()
        q = hard_targets(y, n_classes) if objective is None else objective.soft_targets(y, signals, n_classes)
        centroids = (q / q.sum(0, keepdims=True)).T @ np.asarray(X, np.float64)
        self.W_ = centroids.astype(np.float32)
        self.b_ = (-0.5 * (centroids**2).sum(1)).astype(np.float32)
        self.history_ = {"fit_seconds": time.perf_counter() - start, "train_device": "cpu"}
        return self

    def logits(self, X):
        return np.asarray(X, np.float32) @ self.W_.T + self.b_

    def n_params(self):
        return self.W_.size + self.b_.size

    def flops(self):
        return 2.0 * self.W_.size + self.b_.size

    def size_bytes(self):
        return len(pickle.dumps((self.W_, self.b_)))

    def memory_bytes(self):
        return self.W_.nbytes + self.b_.nbytes

    def save(self, stem):
        path = Path(stem).with_suffix(".joblib")
        joblib.dump(self, path)
        return path


def centroids_graph(model, n_features: int, n_classes: int):
    """ENCODED → Gemm (the logits) → Softmax → PROBA."""
    from onnx import helper

    nodes = [helper.make_node("Gemm", [ENCODED, "cen/W", "cen/b"], ["cen/z"], transB=1),
             helper.make_node("Softmax", ["cen/z"], [PROBA], axis=1)]
    return helper.make_graph(nodes, "model", [], [], [_const("cen/W", model.W_, np.float32),
                                                      _const("cen/b", model.b_, np.float32)])


@pytest.fixture
def exporter(monkeypatch):
    """`@converter("Centroids")` applied to centroids_graph, for this test only (the registry is global)."""
    monkeypatch.setitem(CONVERTERS, "Centroids", CONVERTERS.get("Centroids"))
    converter("Centroids")(centroids_graph)


def test_a_student_family_defined_outside_kdx_runs_loads_and_exports(tmp_path, compose_cfg, exporter):
    pytest.importorskip("onnxruntime")
    from kdx.run.protocol import run

    (tmp_path / "conf" / "student").mkdir(parents=True)
    (tmp_path / "conf" / "student" / "centroids.yaml").write_text(
        f"_target_: {Centroids.__module__}.Centroids\nname: centroids\n")
    cfg = compose_cfg("experiment=breast_cancer", "+smoke=on", "seeds=[0]", "student=centroids",
                      f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    result = run(cfg, tmp_path / "run")
    metrics = result.metrics.set_index("model")
    for name in ("student_nokd", "student_kd"):
        assert metrics.accuracy[name] > 0.85, name  # a nearest-centroid rule on Breast Cancer
        assert metrics.params[name] == 2 * 30 + 2 and np.isfinite(metrics.cosine[name])
    assert metrics.accuracy["student_kd"] != metrics.accuracy["student_nokd"] or \
        metrics.nll["student_kd"] != metrics.nll["student_nokd"]  # the teacher's soft targets moved the centroids
    loaded = kdx.load_run(tmp_path / "run")
    exported = loaded.export(out=tmp_path / "export")  # parity on the run's test rows, checked before writing
    assert exported.onnx.is_file() and exported.card["model"]["family"] == "centroids"
    assert exported.card["parity"]["max_abs_diff"] <= exported.card["parity"]["tolerance"]
    data = load_data(cfg)  # raw rows in, class names out, through the model read back from the run folder
    labels = loaded.predict(data.X.iloc[:50])
    assert set(labels) <= set(data.class_names) and (labels == np.asarray(data.class_names)[data.y[:50]]).mean() > 0.8
