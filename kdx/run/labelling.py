"""The KD student's rows and the teacher's labels on them, per seed: the training rows, plus the rows an
augmenter generates (kdx.data.augment) for the teacher to label; the teacher's logits in-sample, or out of fold
from cross-fitted teachers (kdx.distill.labels). The study's protocol is the case with neither."""

from __future__ import annotations

import logging

import numpy as np
from omegaconf import DictConfig

from kdx.data import TabularData
from kdx.data.augment import GeneratedRows, generate_rows
from kdx.data.rows import SeedData
from kdx.distill.labels import FixedLogits, OutOfFold, out_of_fold_logits
from kdx.errors import TrainingError
from kdx.models import Classifier
from kdx.models.losses import UNLABELLED
from kdx.models.outputs import resolve_output
from kdx.run.artefacts import load_labels, save_labels
from kdx.run.building import build_augmenter, build_model
from kdx.store.cache import ArtifactCache, content_key
from kdx.timing import Stages

log = logging.getLogger("kdx")


def out_of_fold(cfg: DictConfig, raw_teacher: bool) -> bool:
    """Whether the KD student's training-row labels are out of fold: asked for, and the teacher is one kdx trains
    (a teacher read from a file cannot be cross-fitted)."""
    return cfg.kd.get("soft_labels", "insample") == "oof" and not raw_teacher


class StudentRows:
    """What the KD student of each seed trains on, for one run's config. `codec`: the raw-row codec of a
    teacher that reads raw columns (a pretrained file), None for a teacher kdx trains (which can be
    cross-fitted). Per seed it records the generated rows kept (`generated_counts`) and the out-of-fold
    teachers' training time (`oof_seconds`)."""

    def __init__(self, cfg: DictConfig, data: TabularData, cache: ArtifactCache, stages: Stages, device: str,
                 codec=None):
        self.cfg, self.data, self.cache, self.stages, self.device, self.codec = cfg, data, cache, stages, device, codec
        self.augmenter = build_augmenter(cfg.get("augment"))
        self.augmenting = self.augmenter.active
        self.oof_folds = int(cfg.kd.get("oof_folds", 5))
        self.requested = cfg.kd.get("soft_labels", "insample")
        self.out_of_fold = out_of_fold(cfg, raw_teacher=codec is not None)
        self.notes: list[str] = []
        if self.requested == "oof" and codec is not None:
            self.notes.append("kd.soft_labels=oof: a pretrained teacher cannot be cross-fitted, so its labels on the "
                              "training rows are in-sample")
            log.warning(self.notes[-1])
        self.generated_counts: dict[int, dict] = {}
        self.oof_seconds: dict[int, float] = {}

    def key_settings(self) -> dict:
        """What the KD student's cache key adds for its rows and labels ({} for the study's: keys unchanged)."""
        out = {}
        if self.augmenting:
            out["augment"] = self.augmenter.settings()
        if self.out_of_fold:
            out["soft_labels"] = {"method": "oof", "folds": self.oof_folds}
        return out

    def generated(self, sd: SeedData, seed: int) -> GeneratedRows:
        """The seed's rows for the teacher to label, made once per seed and augmenter (kept with the seed)."""
        key = ("generated", content_key(self.augmenter.settings()))
        if key not in sd.memo:
            with self.stages("augmentation"):
                sd.memo[key] = generate_rows(self.augmenter, self.data, sd.split.train, sd.X["train"],
                                             sd.preprocessor, seed)
        self.generated_counts[seed] = sd.memo[key].record()
        return sd.memo[key]

    def label_generated(self, teacher: Classifier, rows: GeneratedRows) -> np.ndarray:
        """The full teacher's logits on generated rows: from their raw values for a teacher that reads raw
        columns, else from their encoding."""
        with self.stages("augmentation"):
            if self.codec is not None:
                return np.asarray(teacher.raw_logits(self.codec.encode(rows.frame)), dtype=np.float32)
            return np.asarray(teacher.logits(rows.X), dtype=np.float32)

    def rows(self, sd: SeedData, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows the KD student trains on: the seed's training rows, then (augmenting) the generated rows,
        labelled UNLABELLED (NaN for a regression: the teacher's label is all they have)."""
        if not self.augmenting:
            return sd.X["train"], sd.y["train"]
        key = ("kd_rows", content_key(self.augmenter.settings()))
        generated = self.generated(sd, seed)
        if key not in sd.memo:
            unlabelled = np.full(len(generated), np.nan if self.data.regression else UNLABELLED,
                                 dtype=sd.y["train"].dtype)
            sd.memo[key] = (np.concatenate([sd.X["train"], generated.X]), np.concatenate([sd.y["train"], unlabelled]))
        return sd.memo[key]

    def _oof_key(self, teacher_key: str) -> str:
        return content_key("oof_labels", teacher_key, self.oof_folds)

    def oof_labels(self, seed: int, sd: SeedData, teacher_key: str) -> OutOfFold:
        """Out-of-fold logits of the seed's training rows, cached like a teacher (`teacher_key`: the full
        teacher's cache key, which fixes the data, split, seed and teacher config)."""
        key = self._oof_key(teacher_key)

        def compute() -> OutOfFold:
            with self.stages("out-of-fold teachers"):
                try:
                    return out_of_fold_logits(
                        lambda k: build_model("teacher", self.cfg.teacher, seed, self.device, self.cfg.limits),
                        sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], self.data.n_classes, self.oof_folds,
                        seed)
                except TrainingError as exc:
                    raise TrainingError(f"out-of-fold teacher seed {seed}: {exc}") from None

        memo = ("oof", key)
        if memo not in sd.memo:
            sd.memo[memo], _ = self.cache.get_or_compute("labels", key, compute, save_labels, load_labels,
                                                         f"out-of-fold teachers seed {seed}")
        labels = sd.memo[memo]
        self.oof_seconds[seed] = labels.fit_seconds
        if not np.isfinite(labels.logits).all():
            raise TrainingError(f"out-of-fold teacher seed {seed}: non-finite logits on the training rows")
        return labels

    def signals(self, objective, teacher: Classifier, sd: SeedData, seed: int, teacher_key: str):
        """`objective`'s teacher signals on the KD student's rows. Out of fold, the training rows' logits come
        from the cross-fitted teachers; generated rows are labelled by the full teacher."""
        output = resolve_output(self.cfg.explain.output, self.data.n_classes)
        X, y = self.rows(sd, seed)
        labeller = teacher
        if objective.logit_signals and (self.out_of_fold or self.augmenting):
            train = self.oof_labels(seed, sd, teacher_key).logits if self.out_of_fold else teacher.logits(sd.X["train"])
            generated = self.generated(sd, seed)
            labeller = FixedLogits(np.concatenate([train, self.label_generated(teacher, generated)])
                                   if len(generated) else train)
        return objective.signals(labeller, X, y, self.data.n_classes, sd.preprocessor.column_feature_, output)

    def account(self, sd: SeedData, seed: int, teacher_key: str) -> None:
        """Record the seed's generated rows and out-of-fold cost when the KD student came from the cache."""
        if self.augmenting:
            self.generated(sd, seed)
        if self.out_of_fold and seed not in self.oof_seconds and self.cache.has("labels", self._oof_key(teacher_key)):
            self.oof_labels(seed, sd, teacher_key)

    def columns(self, seed: int) -> dict:
        """The KD student's metrics columns on its rows and labels (none for the study's)."""
        out = {}
        if self.augmenting:
            out["generated_rows"] = self.generated_counts.get(seed, {}).get("rows", 0)
        if self.out_of_fold:
            out["oof_teacher_seconds"] = self.oof_seconds.get(seed, float("nan"))
        return out

    def record(self) -> tuple[dict, dict | None]:
        """summary.json's additions: to `kd` (where the training rows' labels came from) and `augment`."""
        kd = {"soft_labels": "oof" if self.out_of_fold else "insample"}
        if self.requested != kd["soft_labels"]:
            kd["soft_labels_requested"] = self.requested
        if self.out_of_fold:
            kd.update(oof_folds=self.oof_folds, oof_teacher_seconds=dict(self.oof_seconds))
        augment = ({**self.augmenter.settings(), "rows_per_seed": dict(self.generated_counts)}
                   if self.augmenting else None)
        return kd, augment
