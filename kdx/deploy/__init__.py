"""Deployable models: one ONNX file from raw rows to probabilities (kdx's preprocessing inside), checked
against kdx's own predictions, timed in onnxruntime, described by a model card. Needs `kdx[deploy]`."""

from __future__ import annotations

import importlib.util

from kdx.errors import MissingExtra

PACKAGES = ("onnx", "onnxruntime", "skl2onnx")


def missing_packages() -> list[str]:
    return [p for p in PACKAGES if importlib.util.find_spec(p) is None]


def available() -> bool:
    return not missing_packages()


def require(what: str = "ONNX export") -> None:
    """Raise one line naming the extra when onnx/onnxruntime/skl2onnx are missing."""
    missing = missing_packages()
    if missing:
        raise MissingExtra(f"{what} needs {', '.join(missing)}: pip install 'kdx[deploy]' (or make install)")
