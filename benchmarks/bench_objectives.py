"""One training epoch of every distillation objective against `hinton` on Adult (64-32 MLP student, batch
256, a trained 512-…-32 teacher's signals), side by side in one run: the ratio each objective costs."""

from __future__ import annotations

import time

import numpy as np

from kdx.data import load_adult
from kdx.data.preprocess import Preprocessor
from kdx.data.split import stratified_split
from kdx.distill.objectives.attribution import Attribution
from kdx.distill.objectives.dkd import DKD
from kdx.distill.objectives.hinton import Hinton
from kdx.distill.objectives.jacobian import Jacobian
from kdx.distill.objectives.label_smoothing import LabelSmoothing
from kdx.models import MLPClassifier


def _adult():
    data = load_adult()
    split = stratified_split(data.y, 0)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X.iloc[split.train])
    X = {k: pre.transform(data.X.iloc[getattr(split, k)]) for k in ("train", "val")}
    y = {k: data.y[getattr(split, k)] for k in ("train", "val")}
    return X, y, pre.column_feature_


def main(epochs: int = 3, repeats: int = 3) -> dict:
    X, y, column_feature = _adult()
    teacher = MLPClassifier(hidden=(512, 256, 128, 64, 32), epochs=2, seed=0).fit(X["train"], y["train"], X["val"],
                                                                                   y["val"], 2)
    # DKD is refused for binary tasks (its non-target term is 0), but its computation is timed here all the
    # same: fit() does not check applicability, the runner does.
    objectives = {"hinton": Hinton(), "label_smoothing": LabelSmoothing(), "dkd": DKD(), "jacobian": Jacobian(),
                  "attribution": Attribution()}
    signals = {name: o.signals(teacher, X["train"], y["train"], 2, column_feature, "margin")
               for name, o in objectives.items()}
    times = {name: [] for name in objectives}
    for _ in range(repeats):  # interleaved, so drift in the machine's speed hits every objective alike
        for name, objective in objectives.items():
            start = time.perf_counter()
            # patience > epochs: exactly `epochs` epochs run; validation passes are included for all alike
            MLPClassifier(hidden=(64, 32), epochs=epochs, patience=epochs + 1, seed=0).fit(
                X["train"], y["train"], X["val"], y["val"], 2, objective=objective, signals=signals[name])
            times[name].append((time.perf_counter() - start) / epochs)
    base = float(np.median(times["hinton"]))
    results = {}
    for name, t in times.items():
        per_epoch = float(np.median(t))
        results[name] = {"seconds_per_epoch": per_epoch, "ratio_to_hinton": per_epoch / base}
        goal = " (goal ≤ 3×)" if objectives[name].needs_gradients else ""
        print(f"  {name:16s} {per_epoch:.3f} s/epoch  ×{per_epoch / base:.2f} of hinton{goal}")
    print("  (dkd timed on Adult for its cost only: runs refuse it on binary tasks)")
    return results


if __name__ == "__main__":
    main()
