"""Aggregation over seeds: mean and sample standard deviation of every metric, per model."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mean_sd(values: pd.Series) -> dict:
    v = values.dropna().to_numpy(dtype=float)
    return {
        "mean": float(v.mean()) if len(v) else None,
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "n": int(len(v)),
    }


def summarize(metrics: pd.DataFrame) -> dict:
    """Per model, mean ± sd (ddof=1) of each numeric column; accuracy retention of each student."""
    numeric = [c for c in metrics.columns if c not in ("seed", "model") and pd.api.types.is_numeric_dtype(metrics[c])]
    per_model = {
        model: {col: mean_sd(group[col]) for col in numeric}
        for model, group in metrics.groupby("model", sort=False)
    }
    if "accuracy" not in metrics.columns:
        return {"metrics": per_model}
    acc = metrics.pivot(index="seed", columns="model", values="accuracy")
    retention = {
        student: mean_sd(acc[student] / acc["teacher"])
        for student in acc.columns if student != "teacher" and "teacher" in acc.columns
    }
    return {"metrics": per_model, "accuracy_retention": retention}


def kd_text(tau: float | None, alpha: float) -> str:
    """A distillation setting as messages, tables and figures name it: `τ=4 α=0.5`, or `α=0.5` for a regression
    (its τ None, or NaN in a table)."""
    return ("" if tau is None or tau != tau else f"τ={tau:g} ") + f"α={alpha:g}"


def format_mean_sd(stat: dict | None, spec: str = ".4f") -> str:
    """'mean ± sd' with a format spec such as '.4f' or '.1e'; just the mean when sd is undefined."""
    if stat is None or stat.get("mean") is None or np.isnan(stat["mean"]):
        return "—"
    if stat.get("sd") is None or np.isnan(stat["sd"]):
        return f"{stat['mean']:{spec}}"
    return f"{stat['mean']:{spec}} ± {stat['sd']:{spec}}"


RETENTION_FLAG = 1.5  # a student this many times as accurate as its teacher says the teacher is broken


def sanity_warnings(metrics: pd.DataFrame, majority_accuracy: dict[int, float]) -> list[str]:
    """Lines flagging results that say more about a broken teacher than about distillation: a teacher below
    the majority-class rate (always predicting the training set's most frequent class) on a seed's test rows,
    a student whose accuracy is over RETENTION_FLAG times the teacher's."""
    if "r2" in metrics.columns and "teacher" in set(metrics.model):
        r2 = metrics[metrics.model == "teacher"].set_index("seed")["r2"]
        low = r2[r2 < 0]
        if len(low):
            shown = ", ".join(f"seed {s}: {v:.4f}" for s, v in low.items())
            return [f"teacher R² below 0 (worse than predicting the mean of the test rows) on {len(low)} of {len(r2)} "
                    f"seed(s) ({shown}): check the teacher before reading anything else"]
    if "accuracy" not in metrics.columns:
        return []
    acc = metrics.pivot(index="seed", columns="model", values="accuracy")
    out = []
    if "teacher" in acc.columns:
        low = [(s, a, majority_accuracy[s]) for s, a in acc["teacher"].items()
               if s in majority_accuracy and a < majority_accuracy[s]]
        if low:
            shown = ", ".join(f"seed {s}: {a:.4f} < {b:.4f}" for s, a, b in low)
            out.append(f"teacher accuracy below chance (the majority-class rate of the test rows) on {len(low)} of "
                       f"{len(acc)} seed(s) ({shown}): check the teacher before reading anything else")
        for student in (m for m in pd.unique(metrics.model) if m != "teacher"):
            ratio = acc[student] / acc["teacher"]
            high = ratio[ratio > RETENTION_FLAG]
            if len(high):
                out.append(f"accuracy retention {student}/teacher above {RETENTION_FLAG:g} on {len(high)} seed(s) "
                           f"(up to {high.max():.2f}): the student beats its teacher by far, which says the teacher "
                           "is broken (wrong class order, other data), not that distillation worked")
    return out
