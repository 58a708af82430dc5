"""The cost of augmentation on Adult, side by side in one run: the default teacher's training time against
generating 5x the training rows (spunge, munge) and labelling them with it; the default KD student trained
without generated rows, and with 5x spunge rows (one by one: augmented students do not stack). Goals of
issue #28: generating and labelling ≤ 10 % of the teacher's training, the augmented student ≤ 3x the plain."""

from __future__ import annotations

import time

import numpy as np
from hydra import compose, initialize_config_module

from kdx.data import load_adult
from kdx.data.augment import generate_rows
from kdx.data.augment.munge import Munge
from kdx.data.augment.spunge import Spunge
from kdx.data.rows import prepare_seed
from kdx.distill.objectives import Hinton, TeacherSignals
from kdx.models.losses import UNLABELLED
from kdx.run.building import build_model

SPLIT = {"scheme": "holdout", "folds": 5, "fractions": (0.7, 0.15, 0.15)}


def _config():
    with initialize_config_module(config_module="kdx.conf", version_base="1.3"):
        return compose(config_name="config", overrides=["device=cpu"])


def _timed(call):
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


def main() -> dict:
    cfg = _config()
    data = load_adult()
    sd = prepare_seed(data, 0, SPLIT)
    teacher, t_teacher = _timed(lambda: build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits).fit(
        sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], 2))
    print(f"  teacher (dnn 512-256-128-64-32, {teacher.history_['epochs_run']} epochs): {t_teacher:.1f} s")
    results = {"teacher_seconds": t_teacher}
    for augmenter in (Spunge(size_factor=5), Munge(size_factor=5)):
        rows, t_make = _timed(lambda a=augmenter: generate_rows(a, data, sd.split.train, sd.X["train"],
                                                               sd.preprocessor, 0))
        logits, t_label = _timed(lambda r=rows: teacher.logits(r.X))
        share = (t_make + t_label) / t_teacher
        results[augmenter.name] = {"rows": len(rows), "generate_seconds": t_make, "label_seconds": t_label,
                                   "share_of_teacher": share}
        print(f"  {augmenter.name}: {len(rows)} rows (of {rows.requested}) generated in {t_make:.2f} s, labelled in "
              f"{t_label:.2f} s: {share:.1%} of the teacher's training (goal ≤ 10 %)")
        if augmenter.name == "spunge":
            spunge_rows, spunge_logits = rows, logits
    objective = Hinton(4.0, 0.5)
    plain_signals = objective.signals(teacher, sd.X["train"], sd.y["train"], 2, sd.preprocessor.column_feature_,
                                      "margin")
    X_aug = np.concatenate([sd.X["train"], spunge_rows.X])
    y_aug = np.concatenate([sd.y["train"], np.full(len(spunge_rows), UNLABELLED)])
    aug_signals = TeacherSignals({"teacher_logits": np.concatenate(
        [plain_signals.rows["teacher_logits"], spunge_logits.astype(np.float32)])})
    timings = {}
    for name, (X, y, signals) in {"plain": (sd.X["train"], sd.y["train"], plain_signals),
                                  "spunge x5": (X_aug, y_aug, aug_signals)}.items():
        student, seconds = _timed(lambda X=X, y=y, s=signals: build_model("student", cfg.student, 0, "cpu",
                                                                          cfg.limits).fit(
            X, y, sd.X["val"], sd.y["val"], 2, objective=objective, signals=s))
        epochs = student.history_["epochs_run"]
        timings[name] = (seconds, epochs)
        print(f"  KD student ({name}): {seconds:.1f} s, {epochs} epochs, {seconds / epochs:.3f} s/epoch, "
              f"test accuracy {(student.predict(sd.X['test']) == sd.y['test']).mean():.4f}")
    ratio = timings["spunge x5"][0] / timings["plain"][0]
    per_epoch = (timings["spunge x5"][0] / timings["spunge x5"][1]) / (timings["plain"][0] / timings["plain"][1])
    print(f"  augmented / plain KD student: ×{ratio:.2f} in total (goal ≤ 3×), ×{per_epoch:.2f} per epoch")
    results.update(student_ratio=ratio, student_ratio_per_epoch=per_epoch)
    return results


if __name__ == "__main__":
    main()
