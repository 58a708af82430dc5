"""Teachers and students behind one interface: fit on encoded rows, return logits."""

from kdx.models.base import Classifier, load_model
from kdx.models.gbt import GBTClassifier
from kdx.models.mlp import MLPClassifier
from kdx.models.tree import TreeClassifier

__all__ = ["Classifier", "GBTClassifier", "MLPClassifier", "TreeClassifier", "load_model"]
