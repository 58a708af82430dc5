"""The protocol: per seed, split → preprocess → teacher → no-KD and KD students → measurements.

Trained models and their measurements go through a content-addressed cache (kdx.store.cache): in a τ/α sweep
the teacher and the no-KD student are trained and measured once per (data, config, seed) and reused by
every grid point and later run; only the KD student, which τ and α change, is computed per point.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from kdx import progress
from kdx.config import split_settings, units_of, validate
from kdx.data import TabularData
from kdx.data.rows import SeedData, fingerprint, load_data, seed_data, with_raw
from kdx.deploy.runtime import PARITY_TOLERANCE, measure_deployed
from kdx.deploy.schema import Schema, raw_feed
from kdx.distill.objectives.base import TeacherSignals
from kdx.distill.stacked import fit_stacked, stackable
from kdx.environment import code_fingerprint, cpu_model, library_versions, seed_everything
from kdx.errors import ConfigError, ExportError, NotApplicable, TrainingError
from kdx.measure.efficiency import ProfileSettings, cpu_threads, profile_model, relative_to_teacher
from kdx.measure.explain import (
    ExplainContext,
    ExplainSettings,
    ModelExplanation,
    compare,
    explain_model,
    resolve_players,
)
from kdx.measure.metrics import headline, headline_name, scores, to_teacher
from kdx.measure.shapley import MAX_EXACT_COLUMNS
from kdx.models import Classifier
from kdx.models.base import reads_raw
from kdx.models.losses import Loss
from kdx.models.mlp import resolve_device
from kdx.run.artefacts import (
    cache_for,
    checkpoint,
    load_cached_model,
    load_measurement,
    save_attributions,
    save_measurement,
    save_model,
)
from kdx.run.building import build_model, build_objective
from kdx.run.checks import (
    check_finite,
    check_objective,
    check_pretrained,
    check_teacher,
    deploy_latency,
    teacher_identity,
)
from kdx.run.labelling import StudentRows
from kdx.run.record import RunResult, finish, finished
from kdx.run.resources import resolve_threads, seed_order
from kdx.store.cache import ArtifactCache, content_key
from kdx.store.persist import (
    CLASSES_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODELS,
    NOT_APPLICABLE_FILE,
    SUMMARY_FILE,
    atomic_file,
    write_csv,
    write_json,
    write_text,
)
from kdx.timing import Stages

log = logging.getLogger("kdx")


def train_together(node: DictConfig, seed: int, device: str, limits: DictConfig, sd: SeedData, n_classes: int,
                   objectives: list, signals, names: list[str]) -> dict[int, Classifier]:
    """Students of one config node and seed, one per objective (None = no KD), trained in one stacked pass
    (kdx.distill.stacked) when they can be: {index: fitted model}; {} when they cannot (then each trains
    alone). `signals(objective)`: that objective's teacher signals on the training rows, asked once per
    distinct `signals_key` (a τ/α grid's KD students share one). Regression students (one output) train one
    by one: the stacked engine's fused loss is the classification one."""
    if len(objectives) < 2 or n_classes == 1:
        return {}
    models = [build_model("student", node, seed, device, limits) for _ in objectives]
    if not stackable(models):
        return {}
    computed = {}
    for o in objectives:
        if o is not None and o.signals_key() not in computed:
            computed[o.signals_key()] = signals(o)
    given = [None if o is None else computed[o.signals_key()] for o in objectives]
    losses = [Loss() if o is None else o.student_loss(s) for o, s in zip(objectives, given)]
    teacher = next((s.rows["teacher_logits"] for s in given if s is not None and "teacher_logits" in s.rows), None)
    fit_stacked(models, losses, sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], n_classes, teacher,
                names=names, signals=term_signals(losses, given))
    for name, model, loss in zip(names, models, losses):
        check_finite(model, sd, name)
        model.history_["resolved"] = loss.resolved
    return dict(enumerate(models))


def term_signals(losses: list[Loss], given: list) -> TeacherSignals | None:
    """The teacher's signals the students' own terms read (jacobian, attribution: input gradients), merged into
    one: objectives that compute the same name must compute the same values (the same teacher pass)."""
    merged = TeacherSignals({}, {})
    for loss, s in zip(losses, given):
        if loss.term is None:
            continue
        for target, source in ((merged.rows, {k: v for k, v in s.rows.items() if k != "teacher_logits"}),
                               (merged.constants, s.constants)):
            for key, value in source.items():
                if key in target and not np.array_equal(target[key], value):
                    raise ValueError(f"two objectives of one stacked pass give different teacher signals {key!r}")
                target[key] = value
    return merged if merged.rows or merged.constants else None


def _settings(cls, node: DictConfig):
    """The settings dataclass a config node describes, or None when the node is switched off."""
    return cls(**node) if node.enabled else None


class Protocol:
    """One run's settings and the per-seed work; `run()` below drives it over the seeds."""

    def __init__(self, cfg: DictConfig, data: TabularData, cache: ArtifactCache, pretrained=None,
                 stages: Stages | None = None):
        """`pretrained`: the teacher read from a file and checked against `data` (check_teacher), if any;
        `stages`: where the run's time per stage is summed."""
        self.cfg = cfg
        self.data = data
        self.cache = cache
        self.device = str(resolve_device(cfg.device))
        self.objective = build_objective(cfg.kd, data.regression)
        self.tau, self.alpha = self.objective.tau, self.objective.alpha  # τ: None for a regression
        self.split_args = split_settings(cfg)
        self.profiling = _settings(ProfileSettings, cfg.profile)
        self.deploying = self.profiling is not None and deploy_latency(self.profiling.onnx)
        self.explaining = _settings(ExplainSettings, cfg.explain)
        self.raw_teacher = pretrained is not None
        self.feature_game = resolve_players(cfg.explain.get("players", "auto"), self.raw_teacher) == "features"
        # A teacher reading raw columns gets each seed's rows as raw code rows (kdx.data.raw), encoded once.
        self.codec = None if pretrained is None else pretrained.codec
        self.codes = None if self.codec is None else self.codec.encode(data.X)
        self.stages = stages or Stages()
        # The KD student's rows (augmentation) and the teacher's labels on them (in-sample or out of fold).
        self.student_rows = StudentRows(cfg, data, cache, self.stages, self.device, self.codec)
        self.teacher_identity = teacher_identity(cfg.teacher, pretrained)
        self.pretrained = pretrained  # read once per run, bound to each seed's rows
        self.teacher_columns: tuple[str, ...] = ()
        self.teacher_format = ""
        versions = library_versions()
        self.base = {
            "data": fingerprint(data), "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
            "split": self.split_args, "limits": OmegaConf.to_container(cfg.limits, resolve=True),
            "device": self.device, "versions": {k: versions[k] for k in ("kdx", "torch", "scikit-learn", "numpy")},
            "code": code_fingerprint(),
        }
        self.split_sizes: dict[int, dict[str, int]] = {}
        self.majority_accuracy: dict[int, float] = {}  # per seed: always predicting train's majority, on test
        self.threads: dict[int, int] = {}  # torch threads per seed (threads=auto follows the idle cores)
        self.measure_settings = {
            "metrics": OmegaConf.to_container(cfg.metrics), "cpu": cpu_model(),
            "profile": OmegaConf.to_container(cfg.profile), "explain": OmegaConf.to_container(cfg.explain),
            "onnxruntime": versions["onnxruntime"] if self.deploying else None,
        }

    def _fit(self, role: str, node: DictConfig, key: str, seed: int, sd: SeedData, label: str,
             signals=None, trained: Classifier | None = None,
             rows=None) -> tuple[Classifier, bool]:
        """Train (or reuse from the cache) one model; `signals`: a callable giving the teacher's per-seed
        signals for the KD student (computed only when the student is actually trained). A pretrained teacher
        (read and checked once per run, check_teacher) is not trained or cached: it scores the rows it is given.
        `trained`: the model already trained (in a stacked pass), to be stored in the cache. `rows`: a callable
        giving the rows to train on, (X, y), when they are not the seed's training rows (augmentation)."""
        pretrained = role == "teacher" and self.raw_teacher

        def compute() -> Classifier:
            if trained is not None:
                resolved = trained.history_.pop("resolved", {})
                if signals is not None:
                    trained.history_["objective"] = {**self.objective.settings(), **resolved}
                return trained
            if pretrained:
                model = self.pretrained
            else:
                model = build_model(role, node, seed, self.device, self.cfg.limits)
            kd = {} if signals is None else {"objective": self.objective, "signals": signals()}
            X, y = (sd.X["train"], sd.y["train"]) if rows is None else rows()
            try:
                fitted = (model.fit_teacher(X, y, sd.X["val"], sd.y["val"], self.data.n_classes) if role == "teacher"
                          else model.fit(X, y, sd.X["val"], sd.y["val"], self.data.n_classes, **kd))
            except TrainingError as exc:
                raise TrainingError(f"{label}: {exc}") from None
            check_finite(fitted, sd, label)
            if signals is not None:  # what the objective resolved from the data (e.g. label smoothing's ε)
                fitted.history_["objective"] = {**self.objective.settings(), **kd["signals"].resolved}
            return fitted

        if pretrained:  # the file is the model: nothing to train or cache
            return compute(), False
        return self.cache.get_or_compute("models", key, compute, save_model, load_cached_model, label)

    def _measure(self, name: str, model: Classifier, teacher_test: np.ndarray, sd: SeedData, seed: int,
                 ctx: ExplainContext | None, teacher_expl: ModelExplanation | None, profile_as: dict | None = None):
        """Fidelity, efficiency and alignment of one model. `profile_as`: the efficiency figures of a model of
        the same fixed compute graph (torch, same architecture) measured this seed, reused rather than timed
        again, so that every model of one architecture has the same latency (no timing noise in selections).
        `teacher_test`: the teacher's logits on the test rows (agreement with it, KL from it)."""
        bins, pre = self.cfg.metrics.ece_bins, sd.preprocessor
        with self.stages("fidelity metrics"):
            logits = model.logits(sd.X["test"])
            row = {
                "seed": seed, "model": name, **scores(logits, self.truth(sd, "test"), bins, pre),
                **{f"val_{k}": v for k, v in scores(model.logits(sd.X["val"]), self.truth(sd, "val"), bins,
                                                    pre).items()},
                "train_seconds": model.history_["fit_seconds"], "epochs_run": model.history_.get("epochs_run"),
                "best_epoch": model.history_.get("best_epoch"), "params": model.n_params(), "flops": model.flops(),
                # Students trained in one stacked pass (kdx.distill.stacked): train_seconds is this one's share.
                "trained_together": model.history_.get("trained_together", 1),
                **to_teacher(logits, teacher_test, pre, name == "teacher"),
            }
        if self.profiling is not None and profile_as is not None:
            timed = ("latency_", "peak_mb", "model_mb", "ort_latency_")
            row.update({k: v for k, v in profile_as.items() if k.startswith(timed)},
                       profiled_as="student_nokd", size_bytes=model.size_bytes(), profile_seconds=0.0)
            if self.deploying:
                with self.stages("ONNX export and latency"):
                    row.update(self._deployed(model, sd, seed, timed=False))
        elif self.profiling is not None:
            start = time.perf_counter()
            with self.stages("profiling"):
                row.update(profile_model(model, sd.X["test"], self.profiling, seed))
            if self.deploying and not reads_raw(model):  # kdx exports the models it trains
                with self.stages("ONNX export and latency"):
                    row.update(self._deployed(model, sd, seed))
            row["profile_seconds"] = time.perf_counter() - start
        expl = None
        if ctx is not None:
            with self.stages("SHAP and stability"):
                expl = explain_model(model, ctx, sd.preprocessor.group_columns)
            row.update(expl.metrics, explainer=expl.explainer)
            if teacher_expl is not None:
                row.update(compare(teacher_expl, expl, ctx.top_k))
        return row, expl

    def truth(self, sd: SeedData, part: str) -> np.ndarray:
        """What a part's predictions are scored against: its labels, or a regression's target in its own units."""
        return self.data.y[sd.split.parts()[part]] if self.data.regression else sd.y[part]

    def _deployed(self, model: Classifier, sd: SeedData, seed: int, timed: bool = True) -> dict:
        """The model exported to ONNX with the seed's preprocessing: its parity gap with kdx on the raw test
        rows and (timed) its onnxruntime latency. A model that cannot be exported leaves the columns empty."""
        try:
            out = measure_deployed(model, sd.preprocessor, self.data.X.iloc[sd.split.test], self.profiling, seed,
                                   self.data.class_names, timed=timed, encoded=sd.X["test"],
                                   feed=self._test_feed(sd))
        except Exception as exc:  # noqa: BLE001 — an export failure must not cost the run its other results
            reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            log.warning("seed %d: no onnxruntime figures for a %s: %s", seed, type(model).__name__, reason)
            return {}
        if not out["onnx_parity"] <= PARITY_TOLERANCE:
            log.warning("seed %d: the ONNX export of a %s differs from kdx by up to %.3g (kdx export would refuse it)",
                        seed, type(model).__name__, out["onnx_parity"])
        return out

    def _test_feed(self, sd: SeedData) -> dict[str, np.ndarray]:
        """The raw test rows as an exported model's onnxruntime inputs (kdx.deploy.schema), made once a seed."""
        if "test_feed" not in sd.memo:
            sd.memo["test_feed"] = raw_feed(self.data.X.iloc[sd.split.test], Schema.of(sd.preprocessor))
        return sd.memo["test_feed"]

    def keys(self, seed: int) -> dict[str, str]:
        """Cache keys of the seed's three models: the KD student's adds the teacher's and the objective's."""
        base = {**self.base, "seed": seed}
        keys = {"teacher": content_key("teacher", base, self.teacher_identity)}
        keys["student_nokd"] = content_key("student_nokd", base,
                                           OmegaConf.to_container(self.cfg.student, resolve=True))
        labels = self.student_rows.key_settings()  # {} for the study's rows and labels: its keys stay
        keys["student_kd"] = content_key("student_kd", keys["student_nokd"], keys["teacher"],
                                         self.objective.settings(), *([labels] if labels else []))
        return keys

    def seed_rows(self, seed: int) -> SeedData:
        """The seed's split and encoded rows (kdx.data.rows.seed_data); for a teacher that reads raw columns, each
        part as `Rows` that carry their raw code rows too."""
        sd = seed_data(self.data, self.base["data"], seed, self.split_args)
        return sd if self.codes is None else with_raw(sd, self.codes)

    def teacher_signals(self, teacher: Classifier, sd: SeedData, objective=None, seed: int = 0):
        """The teacher's contribution to the KD student's loss (soft targets, gradients) on the rows the KD
        student trains on (kdx.run.labelling), for this run's objective or, in a stacked pass, another of its
        group's."""
        return self.student_rows.signals(objective or self.objective, teacher, sd, seed, self.keys(seed)["teacher"])

    def fit_students(self, seed: int, sd: SeedData, teacher: Classifier,
                     keys: dict[str, str]) -> dict[str, tuple[Classifier, bool]]:
        """The no-KD and KD students (trained, or reused from the cache). When both must be trained and can
        be (kdx.distill.stacked: the same MLP without dropout), they train together in one pass."""
        node = self.cfg.student
        together = {}
        # With augmentation the KD student trains on more rows than its no-KD twin: they cannot share a pass.
        if self.cfg.get("train_together", True) and not self.student_rows.augmenting and not any(
                self.cache.has("models", keys[k]) for k in ("student_nokd", "student_kd")):
            together = train_together(
                node, seed, self.device, self.cfg.limits, sd, self.data.n_classes,
                [None, self.objective], lambda o: self.teacher_signals(teacher, sd, o, seed),
                [f"student_nokd seed {seed}", f"student_kd seed {seed}"])
        out = {"student_nokd": self._fit("student", node, keys["student_nokd"], seed, sd, f"student_nokd seed {seed}",
                                         trained=together.get(0))}
        out["student_kd"] = self._fit("student", node, keys["student_kd"], seed, sd, f"student_kd seed {seed}",
                                      lambda: self.teacher_signals(teacher, sd, seed=seed), trained=together.get(1),
                                      rows=lambda: self.student_rows.rows(sd, seed))
        self.student_rows.account(sd, seed, keys["teacher"])
        return out

    def run_seed(self, seed: int, seed_dir: Path) -> list[dict]:
        cfg, data = self.cfg, self.data
        seed_everything(seed)
        with self.stages("split and preprocessing"):
            sd = self.seed_rows(seed)
        columns = len(data.features) if self.feature_game else sd.X["train"].shape[1]
        if self.explaining is not None and self.explaining.method == "exact" and columns > MAX_EXACT_COLUMNS:
            # Before any training: one-hot encoding decides the column count.
            players = "original features" if self.feature_game else "encoded columns"
            raise ConfigError(f"explain.method=exact enumerates every coalition of the {players} and is "
                              f"limited to {MAX_EXACT_COLUMNS}; {data.name} has {columns}: use "
                              "explain.method=permutation")
        self.split_sizes[seed] = sd.split.sizes()
        if not data.regression:
            majority = np.bincount(sd.y["train"], minlength=data.n_classes).argmax()
            self.majority_accuracy[seed] = float((sd.y["test"] == majority).mean())
        with atomic_file(seed_dir / "split.npz") as tmp:
            np.savez_compressed(tmp, train=sd.split.train, val=sd.split.val, test=sd.split.test)
        with atomic_file(seed_dir / "preprocessor.joblib") as tmp:
            joblib.dump(sd.preprocessor, tmp)
        keys = self.keys(seed)
        with self.stages("teacher training"):
            teacher, reused_t = self._fit("teacher", cfg.teacher, keys["teacher"], seed, sd, f"teacher seed {seed}")
        if self.raw_teacher:
            self.teacher_columns, self.teacher_format = teacher.columns_, teacher.file.format
            check_pretrained(teacher, sd, data, seed)
        with self.stages("student training"):
            models = {"teacher": (teacher, reused_t), **self.fit_students(seed, sd, teacher, keys)}
        ctx = None
        if self.explaining is not None:
            with self.stages("SHAP and stability"):
                    ctx = ExplainContext.build(teacher, len(data.numeric), sd.X["train"], sd.X["test"], self.explaining,
                                           seed, X_val=sd.X["val"], column_feature=sd.preprocessor.column_feature_,
                                           preprocessor=sd.preprocessor)
            if ctx.method != "auto":
                log.info("explain.method=%s on %d %s: %.3g model evaluations per model (seed %d)", ctx.method,
                         columns, "original features" if self.feature_game else "encoded columns",
                         ctx.model_evaluations(), seed)
            elif self.feature_game:
                log.info("explain.players=features: every model by permutation sampling over %d original features, "
                         "%.3g model evaluations per model (seed %d)", columns, ctx.model_evaluations(), seed)
        teacher_test = teacher.logits(sd.X["test"])
        rows, explanations = {}, {}
        # KD and no-KD MLP students share one architecture: one latency measurement serves both.
        share = models["student_kd"][0].family == "torch" and models["student_nokd"][0].family == "torch"
        for name, (model, reused_model) in models.items():
            key = content_key("measure", keys[name], keys["teacher"], self.measure_settings)
            profile_as = rows["student_nokd"] if name == "student_kd" and share else None
            (row, expl), reused = self.cache.get_or_compute(
                "measurements", key,
                lambda n=name, m=model, p=profile_as: self._measure(n, m, teacher_test, sd, seed, ctx,
                                                                    explanations.get("teacher"), p),
                save_measurement, load_measurement, f"{name} measurements seed {seed}")
            resolved = model.history_.get("objective", {}) if name == "student_kd" else {}
            rows[name] = {**row, "reused": bool(reused_model and reused),
                          "kd_method": self.objective.name if name == "student_kd" else "none",
                          **(self.student_rows.columns(seed) if name == "student_kd" else {}),
                          **{f"kd_{k}": v for k, v in resolved.items()
                             if k not in ("name", "tau", "alpha") and isinstance(v, (int, float))}}
            if expl is not None:
                explanations[name] = expl
            if cfg.save_checkpoints:
                with self.stages("checkpoints"):
                    checkpoint(model, seed_dir, name, self.cache.entry("models", keys[name]))
            if hasattr(model, "rules"):
                write_text(seed_dir / f"{name}_rules.txt", model.rules(sd.preprocessor, data.class_names))
        if self.profiling is not None:
            for name in MODELS[1:]:
                rows[name].update(relative_to_teacher(rows[name], rows["teacher"]))
        if explanations:
            save_attributions(seed_dir.parent.parent / "attributions" / f"seed_{seed}.npz", explanations,
                              ctx.classes, sd, sd.preprocessor.feature_names_, ctx.players)
        return list(rows.values())


def run(cfg: DictConfig, out_dir: Path, parallel_jobs: int = 1, job_index: int = 0,
        concurrent_jobs: int | None = None) -> RunResult:
    """Run the whole protocol described by `cfg`, writing results and checkpoints under `out_dir`.

    A directory that already holds a complete run of the same config is returned as it is (resume).
    `parallel_jobs` (jobs sharing this machine's cores), `concurrent_jobs` (jobs running at once anywhere,
    e.g. a Slurm array's; default parallel_jobs) and `job_index` (this job's number in the sweep) set threads
    and the seed order; results do not depend on them."""
    validate(cfg)
    out_dir = Path(out_dir)
    stages = Stages()
    with stages("data loading and checks"):
        data = load_data(cfg)
        done = finished(out_dir, cfg, fingerprint(data))
    if done is not None:
        log.info("%s already holds this run, complete: skipped", out_dir)
        done.summary["skipped"] = True
        return done
    try:
        with stages("data loading and checks"):
            check_objective(cfg, data)
    except ConfigError as exc:
        if cfg.get("on_inapplicable_objective", "fail") != "skip":
            raise
        # A methods sweep runs every objective; one that does not apply leaves a note, not a failure.
        write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        write_text(out_dir / NOT_APPLICABLE_FILE, f"{exc}\n")
        raise NotApplicable(str(exc)) from None
    with cpu_threads(resolve_threads(cfg.get("threads", "auto"), parallel_jobs)):
        with stages("data loading and checks"):
            pretrained = check_teacher(cfg, data)
        order = seed_order(units_of(cfg), concurrent_jobs or parallel_jobs, job_index)
        return _run(cfg, out_dir, data, order, parallel_jobs, pretrained, stages)


def _run(cfg: DictConfig, out_dir: Path, data: TabularData, order: list[int], parallel_jobs: int = 1,
         pretrained=None, stages: Stages | None = None) -> RunResult:
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
    write_text(out_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    seeds = units_of(cfg)
    if cfg.explain.enabled and data.regression and cfg.explain.output not in ("auto", "raw"):
        raise ConfigError(f"explain.output={cfg.explain.output} needs classes; {data.name} is a regression, whose one "
                          "output (the prediction) is explained: use explain.output=auto")
    if cfg.explain.enabled and cfg.explain.output == "margin" and data.n_classes != 2:
        raise ConfigError(f"explain.output=margin needs a binary task; {data.name} has {data.n_classes} classes "
                          "(use explain.output=centred)")
    if data.regression:
        log.info("%s: %d rows, %d features, regression of '%s' (mean %.4g, sd %.4g, %.4g..%.4g)", data.name,
                 len(data.y), data.X.shape[1], data.class_names[0], data.y.mean(), data.y.std(), data.y.min(),
                 data.y.max())
    else:
        log.info("%s: %d rows, %d features, %d classes %s", data.name, len(data.y), data.X.shape[1],
                 data.n_classes, data.class_counts())
    for note in data.notes.get("columns", []):
        log.warning("%s: %s", data.name, note)
    cache = cache_for(cfg)
    protocol = Protocol(cfg, data, cache, pretrained, stages)
    write_json(out_dir / "checkpoints" / CLASSES_FILE, list(data.class_names))

    rows: list[dict] = []
    label = f"{data.name}: {cfg.teacher.name} → {cfg.student.name}"
    with progress.display(len(order), label, protocol.stages) as shown:
        for seed in order:
            # The machine may have got busier (or quieter): recently_idle_cores looks again once its last look
            # is IDLE_LOOK_EVERY seconds old (a look takes 0.1 s).
            if cfg.get("threads", "auto") in (None, "auto"):
                threads = resolve_threads("auto", parallel_jobs)
                if threads != torch.get_num_threads():
                    log.info("seed %d: %d torch thread(s), as the machine's idle cores changed", seed, threads)
                    torch.set_num_threads(threads)
            protocol.threads[seed] = torch.get_num_threads()
            rows = _seed(protocol, seed, out_dir, rows, seeds)
            if shown is not None:
                shown.seed_done()
    return finish(cfg, out_dir, data, rows, protocol, order, parallel_jobs, started)


def _seed(protocol: Protocol, seed: int, out_dir: Path, rows: list[dict], seeds: list[int]) -> list[dict]:
    """One seed's models and measurements, added to `rows` and written to metrics.csv."""
    seed_dir = out_dir / "checkpoints" / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    seed_rows = protocol.run_seed(seed, seed_dir)
    rows = sorted(rows + seed_rows, key=lambda r: seeds.index(r["seed"]))  # stable: model order kept
    # Rewritten after every seed: an interrupted run keeps the seeds it finished.
    write_csv(out_dir / METRICS_FILE, pd.DataFrame(rows))
    metric = headline(seed_rows[0])
    acc = {r["model"]: r[metric] for r in seed_rows}
    log.info("seed %d: %s teacher %.4f | student no-KD %.4f | student KD %.4f%s", seed,
             headline_name(metric), acc["teacher"], acc["student_nokd"], acc["student_kd"],
             " (reused: " + ", ".join(r["model"] for r in seed_rows if r["reused"]) + ")"
             if any(r["reused"] for r in seed_rows) else "")
    return rows


