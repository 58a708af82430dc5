"""Teachers and students behind one interface: fit on encoded rows, return logits."""

import sys
from pathlib import Path

import joblib

from kdx.data import preprocess, raw, split
from kdx.models.base import Classifier
from kdx.models.gbt import GBTClassifier
from kdx.models.mlp import MLPClassifier
from kdx.models.tree import TreeClassifier

__all__ = ["Classifier", "GBTClassifier", "MLPClassifier", "TreeClassifier", "load_checkpoint", "load_model"]


# Where classes pickled by kdx before its package had layers (run folders' checkpoints) live now.
LEGACY_MODULES = {"kdx.preprocess": preprocess, "kdx.raw": raw, "kdx.split": split}


def load_checkpoint(path: Path):
    """joblib.load of a checkpoint (a model or a fitted preprocessing), written by this kdx or by one before
    its modules moved into layers."""
    missing = {name: module for name, module in LEGACY_MODULES.items() if name not in sys.modules}
    sys.modules.update(missing)
    try:
        return joblib.load(path)
    finally:
        for name in missing:
            sys.modules.pop(name, None)


def load_model(path: Path) -> Classifier:
    """Load a checkpoint written by `Classifier.save`."""
    path = Path(path)
    if path.suffix == ".pt":
        return MLPClassifier.load(path)
    if path.suffix == ".joblib":
        return load_checkpoint(path)
    raise ValueError(f"unknown checkpoint type: {path}")
