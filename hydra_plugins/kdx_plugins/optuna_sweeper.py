"""`+sweep=optuna`: search τ, α and the student's width with Optuna (TPE) on validation, one Hydra job per
trial (any launcher: local, joblib, Slurm).

Each trial is an ordinary kdx job with its own folder; its value is what the job returns, the KD student's
mean **validation** accuracy over seeds (kdx.cli): the test split plays no part in the search. Hydra's
optuna sweeper plugin (1.3.0) pins optuna>=2.10,<3 (2021–22 releases that predate NumPy 2), so kdx drives
Optuna ≥ 4 directly with its ask-and-tell interface. The study is seeded (TPE's seed) and
written to the sweep folder as optuna.json: every trial's parameters, value and folder, the best trial.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("kdx")
STUDY_FILE = "optuna.json"
OBJECTIVE = "the KD student's mean validation accuracy over seeds (R² for a regression)"


def _refuse(message: str) -> None:
    """One line and exit 2, as kdx's own config errors (Hydra would print a traceback)."""
    print(f"kdx: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _distribution(name: str, spec: dict):
    """An Optuna distribution from {low, high[, log]} (float), {low, high, step|int} or {choices: [...]}."""
    import optuna

    if "choices" in spec:
        return optuna.distributions.CategoricalDistribution([str(c) for c in spec["choices"]])
    if not {"low", "high"} <= set(spec):
        _refuse(f"+sweep=optuna: hydra.sweeper.space.{name} needs low and high, or choices (got {dict(spec)})")
    if spec.get("int"):
        return optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def _regression(config: DictConfig) -> bool:
    """Whether the sweep's dataset is a regression (its task, `auto` included, as kdx reads the data)."""
    from kdx.data.rows import build_dataset  # the dataset's loader, only when a τ is to be searched
    from kdx.errors import KdxError

    try:
        return build_dataset(config.dataset).regression
    except KdxError as exc:
        _refuse(str(exc))


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int = 20, batch_size: int = 1, seed: int = 0, direction: str = "maximize",
                 space: DictConfig | dict | None = None):
        for key, value in (("n_trials", n_trials), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _refuse(f"hydra.sweeper.{key} must be an integer >= 1, got {value!r}")
        if direction not in ("maximize", "minimize"):
            _refuse(f"hydra.sweeper.direction must be maximize or minimize, got {direction!r}")
        self.n_trials, self.batch_size, self.seed, self.direction = n_trials, batch_size, seed, direction
        space = OmegaConf.to_container(space, resolve=True) if isinstance(space, DictConfig) else dict(space or {})
        if not space:
            _refuse("+sweep=optuna: hydra.sweeper.space is empty; name the keys to search")
        self.space = {k: _distribution(k, v) for k, v in space.items()}
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(arguments)
        swept = [o.key_or_group for o in parsed if o.is_sweep_override()]
        clash = [o.key_or_group for o in parsed if o.key_or_group in self.space]
        if swept or clash:
            _refuse(f"+sweep=optuna chooses {', '.join(self.space)} itself; remove "
                    f"{', '.join(swept + clash)} from the command line (or from hydra.sweeper.space)")
        if "kd.tau" in self.space and _regression(self.config):
            del self.space["kd.tau"]
            log.info("+sweep=optuna: %s is a regression, which has no temperature: kd.tau left out of the search",
                     self.config.dataset.name)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction=self.direction, sampler=optuna.samplers.TPESampler(seed=self.seed))
        records: list[dict] = []
        job = 0
        while job < self.n_trials:
            trials = [study.ask(self.space) for _ in range(min(self.batch_size, self.n_trials - job))]
            batch = [[*arguments, *(f"{k}={v}" for k, v in t.params.items())] for t in trials]
            self.validate_batch_is_legal(batch)
            for trial, result in zip(trials, self.launcher.launch(batch, initial_job_idx=job)):
                value = result.return_value  # a failed job raises here, as with Hydra's basic sweeper
                ok = isinstance(value, (int, float)) and math.isfinite(value)
                study.tell(trial, float(value) if ok else None,
                           state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL)
                records.append({"number": trial.number, "job": job, "params": trial.params,
                                "value": float(value) if ok else None, "folder": str(sweep_dir / str(job))})
                log.info("optuna trial %d: %s → %s", trial.number, trial.params, value)
                job += 1
            self._write(sweep_dir / STUDY_FILE, study, records)
        return [study.best_trial] if any(r["value"] is not None for r in records) else []

    def _write(self, file: Path, study, records: list[dict]) -> None:
        done = [r for r in records if r["value"] is not None]
        pick = max if self.direction == "maximize" else min
        best = pick(done, key=lambda r: r["value"]) if done else None
        file.write_text(json.dumps({
            "sampler": "TPE", "seed": self.seed, "direction": self.direction, "objective": OBJECTIVE,
            "test_split": "not used: every trial is ranked on validation only",
            "space": {k: repr(d) for k, d in self.space.items()}, "n_trials": self.n_trials,
            "trials": records, "best": best,
        }, indent=2))
