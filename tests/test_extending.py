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


OBJECTIVE_MODULE = '''
from kdx.distill.objectives.hinton import Hinton


class Sharp(Hinton):
    """Hinton's loss plus a small penalty on the student's confidence (mean Σ_k p_k²): a user's objective."""

    name = "sharp"

    def __init__(self, tau=4.0, alpha=0.5, weight=0.05):
        super().__init__(tau, alpha)
        self.weight = weight

    def settings(self):
        return {**super().settings(), "weight": self.weight}

    def term_settings(self, signals):
        return {"weight": self.weight}

    @staticmethod
    def term(settings, step):
        return settings["weight"] * (step.logits.softmax(1) ** 2).sum(1).mean(1)
'''


def test_a_users_objective_runs_through_the_command_line_from_their_own_config_dir(tmp_path):
    """What a user types: their module on PYTHONPATH, their YAML under their own config directory, and
    `hydra.searchpath=[file://DIR] kd=NAME` — the option is known to the command line's checks, the run trains
    it (stacked with the no-KD student) and records its settings; an option in no directory is still refused."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "my_objectives.py").write_text(OBJECTIVE_MODULE)
    (tmp_path / "conf" / "kd").mkdir(parents=True)
    (tmp_path / "conf" / "kd" / "sharp.yaml").write_text(
        "_target_: my_objectives.Sharp\nname: sharp\ntau: 2.0\nalpha: 0.5\nweight: 0.05\nsoft_labels: insample\n"
        "oof_folds: 5\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}

    def kdx(*args):
        return subprocess.run([sys.executable, "-m", "kdx", "run", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=600)

    done = kdx("experiment=breast_cancer", "+smoke=on", "seeds=[0]", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
               "kd=sharp", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["kd"]["method"] == "sharp" and summary["kd"]["settings"]["weight"] == 0.05
    refused = kdx("kd=sharp", f"hydra.run.dir={tmp_path / 'other'}")
    assert refused.returncode == 2 and "unknown kd 'sharp'" in refused.stderr
