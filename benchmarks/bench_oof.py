"""Out-of-fold soft labels with k = 5 (kd.soft_labels=oof) against one teacher's training, side by side in
one run: the teacher trained once on a seed's training rows (MLPClassifier.fit_teacher); its five fold teachers
(the folds kdx.distill.labels makes) trained together in one stacked pass (what kdx does:
MLPClassifier.fit_on_rows) and the same five trained one by one (fit_teacher each), with early stopping as a
run trains them. Adult's deep teacher (dnn) and Wine Quality's (mlp4), seeds 0-2 (KDX_OOF_SEEDS). Goal (issue
#30): the five cost ≤ 3× one teacher. Also how far the stacked fold teachers' labels are from the one-by-one
ones (float rounding carried through training, and where it moves an early-stopping epoch)."""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from scipy.special import softmax

from benchmarks.bench_teacher import SPLIT, _teacher_config
from kdx.data import load_adult, load_wine_quality
from kdx.data.rows import prepare_seed
from kdx.distill.labels import fold_parts
from kdx.models.mlp import MLPClassifier

FOLDS = 5


def _seed(data, seed: int, params: dict) -> dict:
    sd = prepare_seed(data, seed, SPLIT)
    X, y, Xv, yv, classes = sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], data.n_classes

    def teacher() -> MLPClassifier:
        return MLPClassifier(**{**params, "seed": seed})

    parts = fold_parts(y, classes, FOLDS, seed)  # the folds kd.soft_labels=oof trains
    start = time.perf_counter()
    one = teacher().fit_teacher(X, y, Xv, yv, classes)
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    together = MLPClassifier.fit_on_rows([teacher() for _ in parts], X, y, [fit for fit, _ in parts], Xv, yv, classes)
    together_s = time.perf_counter() - start
    start = time.perf_counter()
    alone = [teacher().fit_teacher(X[fit], y[fit], Xv, yv, classes) for fit, _ in parts]
    alone_s = time.perf_counter() - start
    p, q = (np.zeros((len(y), classes)) for _ in range(2))
    for (_, held), a, b in zip(parts, together, alone):
        p[held], q[held] = softmax(a.logits(X[held]), axis=1), softmax(b.logits(X[held]), axis=1)
    epochs = [m.history_["epochs_run"] for m in together]
    per_epoch = one_s / one.history_["epochs_run"]  # one teacher's epoch, validation included
    gap = np.abs(p - q).sum(1) / 2  # total variation between the two labels of a row
    return {"teacher": one_s, "teacher epochs": one.history_["epochs_run"], "together": together_s,
            "alone": alone_s, "fold epochs": epochs, "equal epochs": together_s / (per_epoch * np.mean(epochs)),
            "agree": float((p.argmax(1) == q.argmax(1)).mean()), "mean gap": float(gap.mean()),
            "max gap": float(gap.max()), "acc together": float((p.argmax(1) == y).mean()),
            "acc alone": float((q.argmax(1) == y).mean())}


def _table(label: str, data, params: dict, seeds: list[int]) -> dict:
    print(f"  {label}: MLP {'-'.join(map(str, params['hidden']))}, dropout {params['dropout']}, batch "
          f"{params['batch_size']}, up to {params['epochs']} epochs (patience {params['patience']}); {FOLDS} folds")
    print(f"  {'seed':>4} {'one teacher':>17} {'5 together':>11} {'ratio':>6} {'5 one by one':>13} {'ratio':>6} "
          f"{'speed-up':>8} {'fold epochs':>21} {'ratio, equal epochs':>19}")
    rows = {}
    for seed in seeds:
        r = rows[seed] = _seed(data, seed, params)
        print(f"  {seed:>4} {r['teacher']:>6.1f} s ({r['teacher epochs']:>2} ep.) {r['together']:>9.1f} s "
              f"{r['together'] / r['teacher']:>5.2f}x {r['alone']:>11.1f} s {r['alone'] / r['teacher']:>5.2f}x "
              f"{r['alone'] / r['together']:>7.2f}x {str(r['fold epochs']):>21} {r['equal epochs']:>18.2f}x",
              flush=True)
    total = {k: sum(r[k] for r in rows.values()) for k in ("teacher", "together", "alone")}
    print(f"  {'all':>4} {total['teacher']:>6.1f} s {'':>9} {total['together']:>9.1f} s "
          f"{total['together'] / total['teacher']:>5.2f}x {total['alone']:>11.1f} s "
          f"{total['alone'] / total['teacher']:>5.2f}x {total['alone'] / total['together']:>7.2f}x")
    print(f"  {'seed':>4} {'labels agree':>12} {'mean TV':>8} {'max TV':>7} {'OOF accuracy together/alone':>28}")
    for seed, r in rows.items():
        print(f"  {seed:>4} {r['agree']:>12.4f} {r['mean gap']:>8.4f} {r['max gap']:>7.3f} "
              f"{r['acc together']:>15.4f}/{r['acc alone']:.4f}")
    return rows


def main() -> dict:
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    seeds = [int(s) for s in os.environ.get("KDX_OOF_SEEDS", "0,1,2").split(",")]
    print(f"  {torch.get_num_threads()} threads; ratio: to one teacher's training as it ran; equal epochs: to one "
          "teacher's epoch times the folds' mean epochs (early stopping runs each model its own number of epochs); "
          "labels: the fold teachers together vs one by one (TV: total variation between a row's two labels)")
    return {"adult": _table("Adult, teacher=dnn", load_adult(), _teacher_config("dnn"), seeds),
            "wine_quality": _table("Wine Quality, teacher=mlp4", load_wine_quality(), _teacher_config("mlp4"), seeds)}


if __name__ == "__main__":
    main()
