"""The composite objective J = a_P·P − b_C·C + g_I·I and Pareto efficiency over (P, −C, I)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdx.measure.metrics import headline

# C: mean over these columns of model / teacher (so the teacher costs 1 and a student below 1).
COST_COLUMNS = ("params", "flops")


def add_objective_terms(metrics: pd.DataFrame, cost_columns=COST_COLUMNS, prefix: str = "") -> pd.DataFrame:
    """Add P (accuracy; R² for a regression), C (normalized cost) and I (cosine to the teacher, 1 for the
    teacher) per row.

    With prefix='val_', P and I come from the validation split (for selection); C does not depend on
    the split.
    """
    out = metrics.copy()
    present = cost_columns_present(out, cost_columns)
    teacher = out[out.model == "teacher"].set_index("seed")
    if present:
        ratios = [out[c].to_numpy(float) / out.seed.map(teacher[c]).to_numpy(float) for c in present]
        out["C"] = np.mean(ratios, axis=0)
    else:
        out["C"] = np.nan
    out[f"{prefix}P"] = out[f"{prefix}{headline(out.columns)}"]
    cos = f"{prefix}cosine"
    student_i = out[cos] if cos in out.columns else pd.Series(np.nan, index=out.index)
    # Without attributions (explain off) I is undefined for every model, the teacher included.
    defined = bool(student_i[out.model != "teacher"].notna().any())
    out[f"{prefix}I"] = np.where(out.model == "teacher", 1.0 if defined else np.nan, student_i)
    return out


def cost_columns_present(metrics: pd.DataFrame, cost_columns=COST_COLUMNS) -> list[str]:
    """The cost columns a run measured for every teacher row (latency is absent when profiling is off; a
    pretrained teacher from a format without an operation count has no flops)."""
    teacher = metrics[metrics.model == "teacher"] if "model" in metrics.columns else metrics
    return [c for c in cost_columns
            if c in metrics.columns and metrics[c].notna().any() and teacher[c].notna().all()]


def objective(frame: pd.DataFrame, profiles: dict[str, dict], prefix: str = "") -> pd.DataFrame:
    """J per row and weight profile (columns <prefix>J_<profile>). A term undefined for every row (C without
    any cost measured, I without attributions) is left out of J for all rows alike: see `terms_used`."""
    out = frame.copy()
    use_c, use_i = terms_used(out, prefix)
    for name, w in profiles.items():
        j = w["a_P"] * out[f"{prefix}P"]
        if use_c:
            j = j - w["b_C"] * out["C"]
        if use_i:
            j = j + w["g_I"] * out[f"{prefix}I"]
        out[f"{prefix}J_{name}"] = j
    return out


def terms_used(frame: pd.DataFrame, prefix: str = "") -> tuple[bool, bool]:
    """Whether C and I are defined (for some row) and so enter J."""
    return bool(frame["C"].notna().any()), bool(frame[f"{prefix}I"].notna().any())


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
