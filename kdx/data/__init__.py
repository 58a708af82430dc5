"""Tabular datasets: the study's three (bundled, checksummed), scikit-learn's diabetes (regression) and a
user's own CSV."""

from kdx.data.base import TabularData
from kdx.data.loaders import load_adult, load_breast_cancer, load_csv, load_diabetes, load_wine_quality

__all__ = ["TabularData", "load_adult", "load_breast_cancer", "load_csv", "load_diabetes", "load_wine_quality"]
