"""Out-of-fold soft labels with k = 5 (kd.soft_labels=oof) against one teacher's training, side by side in
one run: the default teacher trained once on a seed's training rows; its five fold teachers trained together in
one stacked pass (what kdx does: MLPClassifier.fit_on_rows); the same five trained one by one. On Adult, seeds
0-2 (KDX_OOF_SEEDS), each column timed in turn on the same seed. Goal (issue #30): the five cost ≤ 3× one
teacher. Also how far the stacked fold teachers' labels are from the one-by-one ones (rounding carried through
training, and where it moves an early-stopping epoch)."""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from scipy.special import softmax

from benchmarks.bench_teacher import SPLIT, _teacher_config
from kdx.data import load_adult
from kdx.data.rows import prepare_seed
from kdx.distill.labels import out_of_fold_logits
from kdx.models.mlp import MLPClassifier

FOLDS = 5


def _seed(data, seed: int, params: dict) -> dict:
    sd = prepare_seed(data, seed, SPLIT)
    X, y, Xv, yv = sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"]

    def teacher(k: int = 0) -> MLPClassifier:
        return MLPClassifier(**{**params, "seed": seed, "device": "cpu"})

    start = time.perf_counter()
    one = teacher().fit_teacher(X, y, Xv, yv, 2)
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    together = out_of_fold_logits(teacher, X, y, Xv, yv, 2, FOLDS, seed)
    together_s = time.perf_counter() - start
    alone_check = MLPClassifier.trains_together
    MLPClassifier.trains_together = staticmethod(lambda models: False)  # the same folds, one fit each
    try:
        start = time.perf_counter()
        alone = out_of_fold_logits(teacher, X, y, Xv, yv, 2, FOLDS, seed)
        alone_s = time.perf_counter() - start
    finally:
        MLPClassifier.trains_together = alone_check
    p, q = softmax(together.logits, axis=1), softmax(alone.logits, axis=1)
    return {"teacher": one_s, "teacher epochs": one.history_["epochs_run"], "together": together_s,
            "alone": alone_s, "agree": float((p.argmax(1) == q.argmax(1)).mean()),
            "mean |dp|": float(np.abs(p - q)[:, 1].mean()), "max |dp|": float(np.abs(p - q)[:, 1].max()),
            "acc together": float((p.argmax(1) == y).mean()), "acc alone": float((q.argmax(1) == y).mean())}


def main() -> dict:
    params = {k: v for k, v in _teacher_config().items() if k != "device"}
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    seeds = [int(s) for s in os.environ.get("KDX_OOF_SEEDS", "0,1,2").split(",")]
    data = load_adult()
    print(f"  teacher: MLP {'-'.join(map(str, params['hidden']))}, dropout {params['dropout']}, up to "
          f"{params['epochs']} epochs (patience {params['patience']}); {FOLDS} folds; Adult; "
          f"{torch.get_num_threads()} threads")
    print(f"  {'seed':>4} {'one teacher':>12} {'5 together':>11} {'ratio':>6} {'5 one by one':>13} {'ratio':>6} "
          f"{'speed-up':>8}   {'labels agree':>12} {'mean |Δp|':>9} {'max |Δp|':>8} {'OOF acc together/alone':>23}")
    rows = {}
    for seed in seeds:
        r = rows[seed] = _seed(data, seed, params)
        print(f"  {seed:>4} {r['teacher']:>10.1f} s {r['together']:>9.1f} s {r['together'] / r['teacher']:>5.2f}x "
              f"{r['alone']:>11.1f} s {r['alone'] / r['teacher']:>5.2f}x {r['alone'] / r['together']:>7.2f}x   "
              f"{r['agree']:>12.4f} {r['mean |dp|']:>9.4f} {r['max |dp|']:>8.3f} "
              f"{r['acc together']:>11.4f}/{r['acc alone']:.4f}", flush=True)
    total = {k: sum(r[k] for r in rows.values()) for k in ("teacher", "together", "alone")}
    print(f"  {'all':>4} {total['teacher']:>10.1f} s {total['together']:>9.1f} s "
          f"{total['together'] / total['teacher']:>5.2f}x {total['alone']:>11.1f} s "
          f"{total['alone'] / total['teacher']:>5.2f}x {total['alone'] / total['together']:>7.2f}x")
    print("  (a teacher's time depends on the epochs early stopping runs: the ratio per seed moves with them)")
    return rows


if __name__ == "__main__":
    main()
