"""The composite objective J = a_P·P − b_C·C + g_I·I and Pareto efficiency over (P, −C, I)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# C: mean over these columns of model / teacher (so the teacher costs 1 and a student below 1).
COST_COLUMNS = ("latency_ms", "params")


def add_objective_terms(metrics: pd.DataFrame, cost_columns=COST_COLUMNS, prefix: str = "") -> pd.DataFrame:
    """Add P (accuracy), C (normalized cost) and I (cosine to the teacher, 1 for the teacher) per row.

    With prefix='val_', P and I come from the validation split (for selection); C does not depend on
    the split.
    """
    out = metrics.copy()
    present = [c for c in cost_columns if c in out.columns]
    teacher = out[out.model == "teacher"].set_index("seed")
    if present:
        ratios = [out[c].to_numpy(float) / out.seed.map(teacher[c]).to_numpy(float) for c in present]
        out["C"] = np.mean(ratios, axis=0)
    else:
        out["C"] = np.nan
    out[f"{prefix}P"] = out[f"{prefix}accuracy"]
    cos = f"{prefix}cosine"
    out[f"{prefix}I"] = np.where(out.model == "teacher", 1.0, out[cos] if cos in out.columns else np.nan)
    return out


def objective(frame: pd.DataFrame, profiles: dict[str, dict], prefix: str = "") -> pd.DataFrame:
    """J per row and weight profile (columns <prefix>J_<profile>)."""
    out = frame.copy()
    for name, w in profiles.items():
        out[f"{prefix}J_{name}"] = w["a_P"] * out[f"{prefix}P"] - w["b_C"] * out["C"] + w["g_I"] * out[f"{prefix}I"]
    return out


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """True for rows not dominated by another row (all objectives maximized; NaN rows are never efficient).

    A row is dominated when another is ≥ in every objective and > in at least one.
    """
    points = np.asarray(points, float)
    valid = ~np.isnan(points).any(axis=1)
    efficient = valid.copy()
    for i in np.flatnonzero(valid):
        others = points[valid]
        dominated = np.all(others >= points[i], axis=1) & np.any(others > points[i], axis=1)
        efficient[i] = not dominated.any()
    return efficient
