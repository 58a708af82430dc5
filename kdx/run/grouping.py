"""Sweeps: the students of jobs that differ only in kd.* trained together, before the jobs run.

A τ/α grid is 30 jobs whose KD students share data, seed and architecture. Before the launcher starts the
jobs, `prefit_sweep` groups them by their config without `kd` and, per group and seed, trains the teacher
(cached) and every student the group needs (the no-KD student and the KD student of each job whose objective
applies) in one stacked pass (kdx.distill.stacked), storing each
under the cache key its job will ask for. The jobs then run exactly as before — same folders, files and
reports — and find their students trained. Anything that keeps a group from training together (a
tree student, dropout, augmentation, out-of-fold labels, no cache, a diverging student, a bad config) is left to
the jobs, which train one by one and report any error themselves.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict

from omegaconf import DictConfig, OmegaConf

from kdx.analysis.summary import kd_text
from kdx.config import units_of, validate
from kdx.data.rows import load_data
from kdx.errors import ConfigError, KdxError
from kdx.measure.efficiency import cpu_threads
from kdx.run.artefacts import cache_for
from kdx.run.building import build_augmenter
from kdx.run.checks import check_teacher, model_families
from kdx.run.protocol import Protocol, train_together
from kdx.run.resources import resolve_threads

log = logging.getLogger("kdx")


def group_key(cfg: DictConfig) -> str:
    """Jobs with the same key differ at most in kd.* (and where they write)."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("kd", None)
    plain.pop("hydra", None)
    return OmegaConf.to_yaml(OmegaConf.create(plain), sort_keys=True)


def prefit_sweep(configs: list[DictConfig]) -> list[dict]:
    """Train together the students of every group of two or more jobs; returns one record per group
    (jobs, students per pass, seconds, or why it was left to the jobs)."""
    groups: dict[str, list[DictConfig]] = defaultdict(list)
    for cfg in configs:
        groups[group_key(cfg)].append(cfg)
    records = []
    for members in groups.values():
        if len(members) < 2:
            continue
        started = time.perf_counter()
        try:
            record = _prefit_group(members)
        except KdxError as exc:  # the jobs meet it again and report it in their own words
            record = {"jobs": len(members), "skipped": str(exc).splitlines()[0]}
        except Exception as exc:  # noqa: BLE001 — never lose a sweep to its optional first pass
            record = {"jobs": len(members), "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        record["seconds"] = time.perf_counter() - started
        if "skipped" in record:
            log.info("%d jobs differing only in kd.*: students trained by each job (%s)", len(members),
                     record["skipped"])
        else:
            log.info("%d jobs differing only in kd.*: %s students per seed trained in one stacked pass (%.1f s)",
                     len(members), "/".join(str(n) for n in sorted(set(record["students_per_pass"]))),
                     record["seconds"])
        records.append(record)
    return records


def _prefit_group(members: list[DictConfig]) -> dict:
    for cfg in members:
        validate(cfg)
    first = members[0]
    cache = cache_for(first)
    if cache.root is None:
        return {"jobs": len(members), "skipped": "cache.enabled=false: jobs cannot share trained students"}
    if build_augmenter(first.get("augment")).active:
        return {"jobs": len(members), "skipped": "augmentation: KD students train on their own rows, one by one"}
    data = load_data(first)
    with cpu_threads(resolve_threads(first.get("threads", "auto"))):
        pretrained = check_teacher(first, data)
        everyone = [Protocol(first, data, cache, pretrained)]
        with _quiet():  # a Protocol's notes on its settings (e.g. no onnxruntime): each job says them itself
            everyone += [Protocol(cfg, data, cache, pretrained) for cfg in members[1:]]
        # A job whose objective does not apply here (e.g. dkd on a binary task, jacobian with a tree teacher)
        # says so when it runs.
        families = model_families(first)  # the same for the whole group: only kd.* differs
        # Jobs with out-of-fold labels give their KD students other teacher logits: they train their own.
        protocols = [p for p in everyone if not p.student_rows.out_of_fold
                     and _applies(p.objective, data.n_classes, families)]
        if not protocols:
            return {"jobs": len(members), "skipped": "no job's objective applies here"}
        lead = protocols[0]
        passes = []
        for seed in units_of(first):
            keys = [p.keys(seed) for p in protocols]
            # Each distinct student not yet cached: the shared no-KD student and every job's KD student.
            wanted = {}
            if not cache.has("models", keys[0]["student_nokd"]):
                wanted[keys[0]["student_nokd"]] = (None, f"student_nokd seed {seed}")
            for p, k in zip(protocols, keys):
                if not cache.has("models", k["student_kd"]):
                    wanted[k["student_kd"]] = (p, f"student_kd seed {seed} (kd={p.objective.name} "
                                                  f"{kd_text(p.tau, p.alpha)})")
            if len(wanted) < 2:
                passes.append(len(wanted))
                continue
            sd = lead.seed_rows(seed)
            teacher, _ = lead._fit("teacher", first.teacher, keys[0]["teacher"], seed, sd, f"teacher seed {seed}")
            entries = list(wanted.items())
            trained = train_together(first.student, seed, lead.device, first.limits, sd, data.n_classes,
                                     [None if p is None else p.objective for _, (p, _) in entries],
                                     lambda o, t=teacher, s=sd: lead.teacher_signals(t, s, o),
                                     [name for _, (_, name) in entries])
            if not trained:
                return {"jobs": len(members), "skipped": "the student cannot be stacked (an MLP without dropout can)"}
            for i, (key, (p, name)) in enumerate(entries):
                owner = lead if p is None else p
                owner._fit("student", first.student, key, seed, sd, name, None if p is None else (lambda: None),
                           trained=trained[i])
            passes.append(len(entries))
    return {"jobs": len(members), "students_per_pass": passes, "jobs_stacked": len(protocols)}


def _applies(objective, n_classes: int, families: tuple[str, str]) -> bool:
    """Whether a job's objective applies to this task and these models (as kdx.run.protocol.check_objective)."""
    try:
        objective.check(n_classes, *families)
    except ConfigError:
        return False
    return True


@contextlib.contextmanager
def _quiet():
    """kdx's informational log lines silenced (warnings and errors still said)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
