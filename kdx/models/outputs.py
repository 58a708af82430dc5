"""The scalar a model's logits are explained by, and matched on by the gradient objectives: the margin
z₁ − z₀ (binary), the centred logit of a class z_c − mean_k z_k, or the raw logit z_c (explain.output)."""

from __future__ import annotations

import numpy as np

from kdx.config import OUTPUTS


def resolve_output(output: str, n_classes: int) -> str:
    """'auto' → 'margin' (binary), 'centred' (multiclass) or 'raw' (one output: a regression's prediction); other
    choices unchanged."""
    if output == "auto":
        return "raw" if n_classes == 1 else "margin" if n_classes == 2 else "centred"
    return output


def output_matrix(n_classes: int, output: str) -> tuple[np.ndarray, bool]:
    """A (C × m) such that explained outputs = logits @ A, and whether a per-row class picks the column."""
    output = resolve_output(output, n_classes)
    if output == "margin":
        if n_classes != 2:
            raise ValueError("explain.output=margin needs a binary task; use centred")
        return np.array([[-1.0], [1.0]]), False
    if output == "centred":
        if n_classes == 1:
            raise ValueError("explain.output=centred needs classes; a regression's one output is explained as it is")
        return np.eye(n_classes) - 1.0 / n_classes, True
    if output == "raw":
        return (np.eye(1), False) if n_classes == 1 else (np.eye(n_classes), True)
    raise ValueError(f"unknown explain.output {output!r}; choose one of {OUTPUTS}")


def explained_output(values: np.ndarray, A: np.ndarray, per_class: bool, classes: np.ndarray) -> np.ndarray:
    """Combine per-logit values (rows, ..., C) into the explained output (rows, ...), picking each row's
    class when the output is per class."""
    combined = values @ A
    if not per_class:
        return combined[..., 0]
    index = classes.reshape((-1,) + (1,) * (combined.ndim - 2))
    return np.take_along_axis(combined, index[..., None], axis=-1)[..., 0]
