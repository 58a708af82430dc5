"""Build, run and time an exported model in onnxruntime."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdx.data.preprocess import Preprocessor
from kdx.deploy import require
from kdx.deploy.families import model_graph
from kdx.deploy.graph import compose
from kdx.deploy.schema import Schema, raw_feed
from kdx.errors import ExportError
from kdx.measure.efficiency import ProfileSettings, profiled_rows, time_calls
from kdx.models import Classifier
from kdx.models.mlp import INFERENCE_ROWS

PARITY_TOLERANCE = 1e-5


def export_model(model: Classifier, pre: Preprocessor, class_names, metadata: dict[str, str] | None = None) -> bytes:
    """The serialized ONNX model of `model` behind `pre` (raw rows in, probabilities and label out; a regressor's
    prediction out, in the target's units)."""
    require()
    schema = Schema.of(pre)
    target = (pre.target_mean_, pre.target_scale_) if pre.regression else None
    return compose(schema, model_graph(model, pre.n_features_out, len(class_names)), list(class_names), metadata,
                   target)


class DeployedModel:
    """An exported model in an onnxruntime session: one intra-op thread, sequential execution (the setting
    the latency figures use), fed with raw rows."""

    def __init__(self, onnx_bytes: bytes, schema: Schema, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning worker threads would burn a core between calls on a busy machine (threads > 1 only).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.schema = schema
        self.n_bytes = len(onnx_bytes)

    def feed(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        return raw_feed(rows, self.schema)

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feed)

    def probabilities(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The first output (probabilities, or a regressor's predictions) on the rows of `feed`, in passes of at
        most INFERENCE_ROWS rows (one pass holds the hidden activations of every row it scores)."""
        rows = len(next(iter(feed.values()))) if feed else 0
        if rows <= INFERENCE_ROWS:
            return self.run(feed)[0]
        return np.concatenate([self.run({k: v[i : i + INFERENCE_ROWS] for k, v in feed.items()})[0]
                               for i in range(0, rows, INFERENCE_ROWS)])

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        return self.probabilities(self.feed(rows))

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """The class names (a regressor: its predictions)."""
        outputs = self.run(self.feed(rows))
        return outputs[-1]


def parity(deployed: DeployedModel, model: Classifier, pre: Preprocessor, rows: pd.DataFrame,
           encoded: np.ndarray | None = None, feed: dict[str, np.ndarray] | None = None) -> float:
    """Largest absolute difference between onnxruntime's probabilities on raw `rows` and kdx's (a regressor:
    between their predictions, in units of the target's sd, the scale its models fit). `encoded`, `feed`: `rows`
    as `pre` encodes them and as onnxruntime's inputs, when the caller has them already."""
    X = pre.transform(rows) if encoded is None else encoded
    theirs = deployed.probabilities(deployed.feed(rows) if feed is None else feed)
    if pre.regression:
        ours = pre.unscale_target(model.logits(X))
        if theirs.shape != ours.shape:
            raise ExportError(f"the exported model gives outputs of shape {theirs.shape}, kdx {ours.shape}")
        return float(np.max(np.abs(theirs - ours)) / pre.target_scale_) if len(rows) else 0.0
    ours = model.predict_proba(X)
    if theirs.shape != ours.shape:
        raise ExportError(f"the exported model gives {theirs.shape[1]} probabilities per row, kdx {ours.shape[1]}")
    return float(np.max(np.abs(theirs.astype(np.float64) - ours))) if len(rows) else 0.0


def check_parity(deployed: DeployedModel, model: Classifier, pre: Preprocessor, rows: pd.DataFrame,
                 tolerance: float = PARITY_TOLERANCE) -> float:
    gap = parity(deployed, model, pre, rows)
    if not gap <= tolerance:
        what = "predictions (in target sd)" if pre.regression else "probabilities"
        raise ExportError(f"parity check failed: onnxruntime's {what} differ from kdx's by up to {gap:.3g} "
                          f"on {len(rows)} test rows (tolerance {tolerance:g}); the export was not written")
    return gap


def measure_deployed(model: Classifier, pre: Preprocessor, rows: pd.DataFrame, settings: ProfileSettings,
                     seed: int, class_names, timed: bool = True, encoded: np.ndarray | None = None,
                     feed: dict[str, np.ndarray] | None = None) -> dict:
    """The exported model's file size, its parity gap with kdx on raw `rows`, and (timed) its onnxruntime
    latency on raw rows, preprocessing included, at batch 1 and `settings.batch_size`: the rows that
    `kdx.measure.efficiency.profile_model` times with the same seed, warm-up and repeats. `encoded`, `feed`: `rows`
    encoded by `pre` and as onnxruntime's inputs (the same for every model of a seed: the runner makes them
    once; reading and encoding Adult's test rows costs 0.25-0.5 s, exporting a student 0.02 s)."""
    deployed = DeployedModel(export_model(model, pre, class_names), Schema.of(pre), threads=settings.threads)
    feed = deployed.feed(rows) if feed is None else feed
    out = {"onnx_bytes": deployed.n_bytes, "onnx_parity": parity(deployed, model, pre, rows, encoded, feed)}
    return {**out, **time_deployed(deployed, rows, settings, seed, feed)} if timed else out


def time_deployed(deployed: DeployedModel, rows: pd.DataFrame, settings: ProfileSettings, seed: int,
                  feed: dict[str, np.ndarray] | None = None) -> dict:
    """The ort_latency_* columns: onnxruntime latency of `deployed` on raw rows (preprocessing included).
    `feed`: all of `rows` as onnxruntime's inputs, if made already (the timed rows are taken from it)."""
    out = {}
    feed = deployed.feed(rows) if feed is None else feed
    first, picks = profiled_rows(len(rows), settings.batch_size, seed)
    for label, idx in (("", first), ("batch_", picks)):
        part = {name: values[idx] for name, values in feed.items()}
        t = time_calls(lambda f=part: deployed.run(f), settings.warmup, settings.repeats) * 1e3
        out[f"ort_latency_{label}ms"] = float(t.mean())
        out[f"ort_latency_{label}median_ms"] = float(np.median(t))
        out[f"ort_latency_{label}p95_ms"] = float(np.percentile(t, 95))
    out["ort_latency_per_row_ms"] = out["ort_latency_batch_ms"] / settings.batch_size
    return out
