"""Checks before and during a run: the objective applies, a pretrained teacher matches the data and passes the
validation-row check, a trained model gives finite logits, the ONNX latency setting."""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig, OmegaConf

from kdx import deploy
from kdx.data import TabularData
from kdx.data.raw import RawCodec
from kdx.data.rows import SeedData
from kdx.errors import ConfigError, DataError, TrainingError
from kdx.measure.metrics import SANITY_P, label_sanity, regression_sanity
from kdx.models import Classifier
from kdx.models.base import reads_raw
from kdx.run.building import build_augmenter, build_model, build_objective
from kdx.run.labelling import out_of_fold

log = logging.getLogger("kdx")


def check_pretrained(teacher, sd: SeedData, data: TabularData, seed: int) -> dict:
    """A teacher read from a file, checked on the seed's validation rows before anything is distilled from it:
    one line and a stop where it is worse than always predicting the training majority class, or where its
    outputs in another order of the classes score better (sign tests at SANITY_P: the classes are read in the
    wrong order, or the model is not a model of this data). A regressor: a stop where the training mean is nearer
    the target than its prediction on significantly more validation rows (a sign test at SANITY_P)."""
    if data.regression:
        return _check_regressor(teacher, sd, seed)
    majority = int(np.bincount(sd.y["train"], minlength=data.n_classes).argmax())
    check = label_sanity(teacher.predict(sd.X["val"]), sd.y["val"], majority, data.n_classes)
    where = f"teacher.path={teacher.path.name} (seed {seed}, {len(sd.y['val'])} validation rows)"
    names = data.class_names
    if (check["mapping"] != np.arange(data.n_classes)).any() and check["p_permuted"] < SANITY_P:
        labels = getattr(teacher, "output_labels_", names)
        suggested = [names[check["mapping"][names.index(label)]] for label in labels]
        raise DataError(f"{where}: accuracy {check['accuracy']:.4f}, but {check['permuted_accuracy']:.4f} with its "
                        f"outputs read as other classes: its classes are likely in another order than kdx reads "
                        f"them ({list(labels)}); if the model's outputs are {suggested}, set teacher.classes="
                        f"[{', '.join(suggested)}]")
    if check["accuracy"] < check["majority_accuracy"] and check["p_below_majority"] < SANITY_P:
        raise DataError(f"{where}: accuracy {check['accuracy']:.4f}, below always predicting '{names[majority]}' "
                        f"({check['majority_accuracy']:.4f}): the model is likely not trained on this data, these "
                        "columns or this label coding; check teacher.path, the dataset and teacher.classes")
    return check


def _check_regressor(teacher, sd: SeedData, seed: int) -> dict:
    """A pretrained regressor against always predicting the training rows' mean, on the seed's validation rows
    (standardized units: the mean is 0)."""
    z, y = teacher.logits(sd.X["val"])[:, 0], np.asarray(sd.y["val"], dtype=np.float64)
    check = regression_sanity(z, y)
    if check["p_below_mean"] < SANITY_P:
        raise DataError(f"teacher.path={teacher.path.name} (seed {seed}, {len(y)} validation rows): R² "
                        f"{check['r2']:.4f}; always predicting the training mean is nearer the target on "
                        f"{check['mean_nearer']} of {len(y)} rows: the model is likely not trained on this target "
                        "(or these columns, or these units); check teacher.path and the dataset")
    return check


def check_finite(model: Classifier, sd: SeedData, label: str) -> None:
    """A trained model must give finite logits on the validation rows (one line naming it otherwise)."""
    if not np.all(np.isfinite(model.logits(sd.X["val"]))):
        raise TrainingError(f"{label}: the trained model gives non-finite logits on validation rows; "
                            "check for extreme values or lower the learning rate")


def teacher_reads_raw(node: DictConfig) -> bool:
    """Whether the teacher a config names reads the dataset's raw columns (teacher=pretrained)."""
    from hydra.utils import get_class

    try:
        return reads_raw(get_class(str(node.get("_target_"))))
    except Exception:  # noqa: BLE001 — an unknown target is reported when the teacher is built
        return False


def teacher_identity(node: DictConfig, pretrained=None) -> dict:
    """The teacher config as the cache keys it: a pretrained teacher by its file's content, not its path."""
    identity = OmegaConf.to_container(node, resolve=True)
    if pretrained is not None:
        identity["path"] = {"sha256": pretrained.sha256}
    return identity


def check_objective(cfg: DictConfig, data: TabularData) -> None:
    """Refuse a distillation objective that does not apply to this task or these models, before any
    training (e.g. kd=dkd on a binary task, kd=jacobian with a tree teacher or student, kd=dkd with augmented
    rows). The augmenter is built here too, so that its settings and file are checked before any work."""
    objective = build_objective(cfg.kd, data.regression)
    objective.check(data.n_classes, *model_families(cfg))
    augmenter = build_augmenter(cfg.get("augment"))
    augmenter.check(data)
    objective.check_rows(augmenter.name, out_of_fold(cfg, teacher_reads_raw(cfg.teacher)))


def model_families(cfg: DictConfig) -> tuple[str, str]:
    """The teacher's and the student's model family (torch, a booster's, ...), as the objectives check them."""
    return tuple(build_model(role, cfg[role], 0, "cpu", cfg.limits).family for role in ("teacher", "student"))


def check_teacher(cfg: DictConfig, data: TabularData):
    """A teacher that reads raw columns, read and checked against the data before any work (feature names or
    count, categorical columns, classes: one line naming the mismatch); None for a teacher kdx trains."""
    if teacher_reads_raw(cfg.student):
        raise ConfigError("student: a pretrained model can be the teacher, not the student (kdx trains students)")
    if not teacher_reads_raw(cfg.teacher):
        return None
    teacher = build_model("teacher", cfg.teacher, 0, "cpu", cfg.limits)
    return teacher.attach(data, RawCodec.of(data.X, data.numeric, data.categorical))


def deploy_latency(setting) -> bool:
    """Whether runs time the ONNX export: profile.onnx=true requires kdx[deploy]; auto uses it if installed."""
    if setting is True:
        deploy.require("profile.onnx=true")
    if setting == "auto" and not deploy.available():
        log.info("profile.onnx=auto: %s not installed, so no onnxruntime latency columns (pip install "
                 "'kdx[deploy]')", ", ".join(deploy.missing_packages()))
    return setting is True or (setting == "auto" and deploy.available())

