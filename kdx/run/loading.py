"""Load a finished run: its config, fitted preprocessing and models, to predict on new raw rows."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy.special import softmax

from kdx.data.preprocess import Preprocessor
from kdx.data.split import Split
from kdx.deploy.export import export_run
from kdx.errors import DataError
from kdx.models import Classifier, load_checkpoint, load_model
from kdx.models.base import reads_raw
from kdx.store.persist import CLASSES_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, read_run_file


class LoadedRun:
    """A run directory written by `kdx run`.

    >>> run = kdx.load_run("outputs/adult/dnn-shallow_mlp/2026-01-01_12-00-00")
    >>> run.predict_proba(raw_rows)            # KD student of the first seed, one column per class
    >>> run.predict(raw_rows, model="teacher", seed=3)
    >>> run.export(model="student_kd")         # model.onnx + model_card.md/json (needs kdx[deploy])
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / CONFIG_FILE).is_file():
            raise DataError(f"{self.path} is not a kdx run directory (no {CONFIG_FILE})")
        self.config: DictConfig = read_run_file(self.path / CONFIG_FILE, OmegaConf.load)
        if not (self.path / "checkpoints").is_dir():
            raise DataError(f"{self.path} has no checkpoints (run with save_checkpoints=true)")

    @property
    def seeds(self) -> list[int]:
        return sorted(int(p.name.split("_", 1)[1]) for p in (self.path / "checkpoints").glob("seed_*"))

    @cached_property
    def summary(self) -> dict | None:
        file = self.path / SUMMARY_FILE
        return read_run_file(file, lambda f: json.loads(f.read_text()), required=False)

    @property
    def complete(self) -> bool:
        return bool(self.summary and self.summary.get("complete"))

    @cached_property
    def metrics(self) -> pd.DataFrame:
        file = self.path / METRICS_FILE
        if not file.is_file():
            raise DataError(f"{self.path} has no {METRICS_FILE}: the run finished no seed")
        return read_run_file(file, pd.read_csv)

    @cached_property
    def class_names(self) -> list[str]:
        return read_run_file(self.path / "checkpoints" / CLASSES_FILE, lambda f: json.loads(f.read_text()))

    def _seed_dir(self, seed: int | None) -> Path:
        seed = self.seeds[0] if seed is None else seed
        path = self.path / "checkpoints" / f"seed_{seed}"
        if not path.is_dir():
            raise DataError(f"no checkpoints for seed {seed} in {self.path}; seeds present: {self.seeds}")
        return path

    def preprocessor(self, seed: int | None = None) -> Preprocessor:
        return read_run_file(self._seed_dir(seed) / "preprocessor.joblib", load_checkpoint)

    def model(self, name: str = "student_kd", seed: int | None = None) -> Classifier:
        matches = sorted(self._seed_dir(seed).glob(f"{name}.*"))
        if not matches:
            raise DataError(f"no checkpoint '{name}' for seed {seed} in {self.path}")
        return read_run_file(matches[0], load_model)

    def split(self, seed: int) -> Split:
        def read(file):
            with np.load(file) as z:
                return Split(z["train"], z["val"], z["test"])

        return read_run_file(self._seed_dir(seed) / "split.npz", read)

    def logits(self, rows: pd.DataFrame, model: str = "student_kd", seed: int | None = None) -> np.ndarray:
        fitted = self.model(model, seed)
        if reads_raw(fitted):  # a pretrained teacher reads raw rows itself
            return fitted.logits_frame(rows)
        return fitted.logits(self.preprocessor(seed).transform(rows))

    def predict_proba(self, rows: pd.DataFrame, model: str = "student_kd", seed: int | None = None) -> np.ndarray:
        if self.preprocessor(seed).regression:
            raise DataError(f"{self.path} is a regression: it predicts values, not class probabilities; use predict")
        return softmax(self.logits(rows, model, seed).astype(np.float64), axis=1)

    def predict(self, rows: pd.DataFrame, model: str = "student_kd", seed: int | None = None) -> np.ndarray:
        """Predicted class names for raw rows (original columns, as in the training table); a regression's predicted
        values, in the target's units."""
        pre = self.preprocessor(seed)
        if pre.regression:
            return pre.unscale_target(self.logits(rows, model, seed))
        return np.asarray(self.class_names)[self.logits(rows, model, seed).argmax(axis=1)]

    def export(self, seed: int | None = None, model: str = "student_kd", out: str | Path | None = None,
               tolerance: float | None = None):
        """`kdx export` from Python: model.onnx (raw rows in, preprocessing inside) and its model card, after
        the parity check on this seed's test rows; returns kdx.deploy.export.Exported (folder, onnx, card)."""
        return export_run(self, seed, model, None if out is None else Path(out), tolerance)


def load_run(path: str | Path) -> LoadedRun:
    """Open a run directory written by `kdx run` (see `LoadedRun`)."""
    return LoadedRun(path)
