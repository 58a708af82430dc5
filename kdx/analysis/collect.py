"""Find the runs under a run or sweep directory, and what a sweep should have produced but did not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from kdx.analysis.summary import kd_text
from kdx.errors import DataError
from kdx.store.persist import (
    CONFIG_FILE,
    METRICS_FILE,
    NOT_APPLICABLE_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    read_run_file,
)


@dataclass
class RunRecord:
    path: Path
    name: str
    config: dict
    metrics: pd.DataFrame | None
    summary: dict | None
    stats: pd.DataFrame | None
    overrides: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.summary and self.summary.get("complete"))

    @property
    def tau(self) -> float:
        """The run's τ as its objective resolved it (kd.tau: null is 4 on a classification, none on a regression:
        NaN); from the config where the run has no summary."""
        kd = (self.summary or {}).get("kd") or self.config.get("kd") or {}
        return np.nan if kd.get("tau") is None else float(kd["tau"])

    @property
    def alpha(self) -> float:
        return float(self.config["kd"]["alpha"])

    @property
    def label(self) -> str:
        c = self.config
        augment = c.get("augment") or {}  # generated rows: runs that differ only there have different labels
        rows = "" if augment.get("name", "none") == "none" else (
            f" + {augment['name']}" + (f" ×{augment['size_factor']:g}" if "size_factor" in augment else ""))
        return (f"{c['dataset']['name']}: {c['teacher']['name']}→{c['student']['name']} "
                f"{kd_text(self.tau, self.alpha)}{rows}")


@dataclass
class Collection:
    root: Path
    runs: list[RunRecord]
    missing: list[str]  # human-readable lines: jobs that failed, stopped or never ran
    not_applicable: list[str] = field(default_factory=list)  # jobs whose objective does not apply


def read_summary(path: Path) -> dict | None:
    summary = read_run_file(path / SUMMARY_FILE, lambda f: json.loads(f.read_text()), required=False)
    if summary is not None and not isinstance(summary, dict):
        raise DataError(f"{path / SUMMARY_FILE} is damaged (not a JSON object); rerun that run to rewrite it")
    return summary


def _read_run(path: Path, name: str) -> RunRecord:
    config = read_run_file(path / CONFIG_FILE, lambda f: OmegaConf.to_container(OmegaConf.load(f), resolve=False),
                           required=False)
    if not isinstance(config, dict) or not all(k in config for k in ("dataset", "teacher", "student", "kd")):
        raise DataError(f"{path / CONFIG_FILE} is not a kdx run config (damaged?)")
    metrics = read_run_file(path / METRICS_FILE, pd.read_csv, required=False)
    summary = read_summary(path)
    stats = read_run_file(path / STATS_FILE, pd.read_csv, required=False)
    overrides = read_run_file(path / ".hydra" / "overrides.yaml", lambda f: list(OmegaConf.load(f)),
                              required=False) or []
    return RunRecord(path, name, config, metrics, summary, stats, [str(o) for o in overrides])


def _expected_jobs(root: Path) -> list[list[str]] | None:
    """The job override lists a Hydra sweep directory was launched with (None when unknown)."""
    file = root / "multirun.yaml"
    if not file.is_file():
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.load(file)
    if "BasicSweeper" not in str(cfg.hydra.get("sweeper", {}).get("_target_", "BasicSweeper")):
        return None  # e.g. an Optuna search: its jobs are decided as it goes (optuna.json lists them)
    task = [str(o) for o in cfg.hydra.overrides.task]
    params = cfg.hydra.get("sweeper", {}).get("params") or {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in task}
    task += [f"{k}={v}" for k, v in params.items() if k not in given]
    parsed = OverridesParser.create().parse_overrides(task)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [job for batch in batches for job in batch]


def collect(path: str | Path) -> Collection:
    """Runs at `path`: the run itself, or every job directory of a sweep (complete or not)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory")
    if (root / CONFIG_FILE).is_file():
        run = _read_run(root, root.name)
        missing = [] if run.complete else [f"{root.name}: did not finish (no complete {SUMMARY_FILE})"]
        return Collection(root, [run], missing)
    jobs = sorted((p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()),
                  key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    started = {p.name for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()} | {p.name for p in jobs}
    if not jobs and not started:
        raise DataError(f"no kdx runs under {root} (expected a run directory or a sweep of them)")
    runs, damaged, skipped = [], [], []
    for p in jobs:
        if (p / NOT_APPLICABLE_FILE).is_file():
            skipped.append(f"job {p.name}: {(p / NOT_APPLICABLE_FILE).read_text().strip()}")
            continue
        try:
            runs.append(_read_run(p, p.name))
        except DataError as exc:  # one damaged job must not hide the others
            damaged.append(f"job {p.name}: {exc}")
    missing = [f"job {r.name} ({' '.join(r.overrides)}): did not finish (no complete {SUMMARY_FILE})"
               for r in runs if not r.complete] + damaged
    missing += [f"job {name}: failed before writing any result" for name in sorted(started - {p.name for p in jobs})]
    expected = _expected_jobs(root)
    if expected is not None:
        for i, job in enumerate(expected):
            if str(i) not in started:
                missing.append(f"job {i} ({' '.join(job)}): no output: it never ran, or was stopped before it wrote "
                               "anything (the sweep stopped, the job was cancelled or killed)")
    return Collection(root, runs, missing, skipped)
