"""MLflow tracking (`kdx run +tracking=mlflow`): every job an MLflow run, one parent run per sweep.

A Hydra callback. The launching process creates the tracking database and the experiment once
(`on_multirun_start`), so jobs running in parallel never race on schema creation, and opens the sweep's
parent run; each job, in its own process (basic, joblib or Slurm launcher), logs itself as a nested run when
it ends: the flattened config as params, every numeric column of metrics.csv per model with the seed as the
step, their means, and summary.json, metrics.csv, report.md and the figures as artifacts. The default store
is `sqlite:///mlflow.db` in the launch directory (MLflow's file store is deprecated); artifacts go next to it
(`mlartifacts/`). Everything is written through `MlflowClient`, never MLflow's process-global active run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pandas as pd
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kdx.errors import MissingExtra

log = logging.getLogger("kdx")
PARENT_FILE = "mlflow_parent.json"  # in the sweep folder: where the jobs log and under which parent run
RUN_FILE = "mlflow_run.json"  # in a job's folder: the run it was logged as
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def require() -> None:
    import importlib.util

    missing = [m for m in ("mlflow", "sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"+tracking=mlflow needs {', '.join(missing)}: pip install 'kdx[tracking]' "
                           "(or make install)")


def resolve_uri(uri: str, base: Path) -> str:
    """A relative sqlite path is taken relative to the launch directory (absolute, so every job, wherever it
    runs, writes to the same database)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str((base / uri[len(prefix):]).resolve())
    return uri


def flatten(node, prefix: str = "") -> dict[str, str]:
    """Dotted keys → string values (lists as JSON), each within MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


def metric_rows(metrics: pd.DataFrame) -> list[tuple[str, float, int]]:
    """(key, value, step) for every finite numeric cell of metrics.csv: `<model>/<column>` at step = seed,
    and `<model>/<column>/mean` over seeds at step 0."""
    out = []
    numeric = [c for c in metrics.columns if c not in ("seed", "model") and pd.api.types.is_numeric_dtype(metrics[c])]
    for model, rows in metrics.groupby("model", sort=False):
        for column in numeric:
            values = rows[column].astype(float)
            out += [(f"{model}/{column}", float(v), int(s)) for s, v in zip(rows.seed, values) if math.isfinite(v)]
            mean = values.mean()
            if math.isfinite(mean):
                out.append((f"{model}/{column}/mean", float(mean), 0))
    return out


def _retry(call, attempts: int = 5):
    """SQLite allows one writer at a time: parallel jobs may find the database locked for a moment."""
    for k in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 — MLflow wraps the driver's OperationalError in its own types
            if "locked" not in str(exc).lower() or k == attempts - 1:
                raise
            time.sleep(0.2 * 2**k)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class MLflowCallback(Callback):
    """Off unless `enabled` (conf/tracking/mlflow.yaml switches it on): every hook returns at once."""

    def __init__(self, uri: str = "sqlite:///mlflow.db", experiment: str = "kdx", enabled: bool = True):
        self.enabled = bool(enabled)
        if self.enabled:
            require()
        self.uri, self.experiment = uri, experiment

    def _client(self, uri: str):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)

    def _experiment_id(self, client, base: Path) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        # Artifacts next to the database, by absolute path: jobs running elsewhere find the same place.
        return client.create_experiment(self.experiment, artifact_location=(base / "mlartifacts").resolve().as_uri())

    # -- the launching process ---------------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not self.enabled:
            return
        base = Path(config.hydra.runtime.cwd)
        uri = resolve_uri(self.uri, base)
        client = self._client(uri)
        experiment_id = self._experiment_id(client, base)  # creates the database and its schema, once
        sweep = Path(config.hydra.sweep.dir)
        parent = client.create_run(experiment_id, run_name=f"sweep {sweep.name}",
                                   tags={"kdx.sweep_dir": str(sweep.resolve()), "kdx.kind": "sweep"})
        sweep.mkdir(parents=True, exist_ok=True)
        (sweep / PARENT_FILE).write_text(json.dumps({"uri": uri, "experiment_id": experiment_id,
                                                     "run_id": parent.info.run_id}))
        log.info("MLflow: sweep run %s in experiment %r at %s", parent.info.run_id, self.experiment, uri)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        file = Path(config.hydra.sweep.dir) / PARENT_FILE
        if not self.enabled or not file.is_file():
            return
        parent = json.loads(file.read_text())
        self._log_report(Path(config.hydra.sweep.dir), parent)
        _retry(lambda: self._client(parent["uri"]).set_terminated(parent["run_id"], "FINISHED"))

    # -- each job, in its own process --------------------------------------------------------------------
    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if not self.enabled:
            return
        try:
            self._log_job(config, job_return)
        except Exception as exc:  # noqa: BLE001 — tracking must never cost a job its results
            log.warning("MLflow: this job was not logged (%s: %s); its results are in %s", type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "", config.hydra.runtime.output_dir)

    def _log_job(self, config: DictConfig, job_return) -> None:
        from mlflow.entities import Metric, Param

        out = Path(config.hydra.runtime.output_dir)
        parent_file = Path(config.hydra.sweep.dir) / PARENT_FILE
        multirun = config.hydra.mode == RunMode.MULTIRUN and parent_file.is_file()
        if multirun:
            parent = json.loads(parent_file.read_text())
            uri, experiment_id = parent["uri"], parent["experiment_id"]
            client = self._client(uri)
        else:
            base = Path(config.hydra.runtime.cwd)
            uri = resolve_uri(self.uri, base)
            client = self._client(uri)
            experiment_id = self._experiment_id(client, base)
        overrides = " ".join(config.hydra.overrides.task) or "(defaults)"
        tags = {"kdx.output_dir": str(out.resolve()), "kdx.overrides": overrides[:5000], "kdx.kind": "job"}
        if multirun:
            tags["mlflow.parentRunId"] = parent["run_id"]
        run = _retry(lambda: client.create_run(experiment_id, run_name=f"job {config.hydra.job.num}: {overrides}"[:250]
                                               if multirun else overrides[:250], tags=tags))
        run_id = run.info.run_id
        job_cfg = OmegaConf.to_container(config, resolve=False)
        job_cfg.pop("hydra", None)
        params = [Param(k, v) for k, v in flatten(job_cfg).items()]
        for i in range(0, len(params), 100):
            _retry(lambda chunk=params[i:i + 100]: client.log_batch(run_id, params=chunk))
        metrics_file = out / "metrics.csv"
        if metrics_file.is_file():
            now = int(time.time() * 1000)
            rows = [Metric(k, v, now, s) for k, v, s in metric_rows(pd.read_csv(metrics_file))]
            for i in range(0, len(rows), 1000):
                _retry(lambda chunk=rows[i:i + 1000]: client.log_batch(run_id, metrics=chunk))
        for path in (out / "summary.json", metrics_file):
            if path.is_file():
                _retry(lambda p=path: client.log_artifact(run_id, str(p)))
        status = getattr(getattr(job_return, "status", None), "name", "COMPLETED")
        _retry(lambda: client.set_terminated(run_id, "FINISHED" if status == "COMPLETED" else "FAILED"))
        # A single run's report and figures are written after the job (kdx.analysis.report.ReportCallback.on_run_end).
        (out / RUN_FILE).write_text(json.dumps({"uri": uri, "run_id": run_id}))

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        out = Path(config.hydra.runtime.output_dir)
        if self.enabled and (out / RUN_FILE).is_file():
            self._log_report(out, json.loads((out / RUN_FILE).read_text()))

    def _log_report(self, folder: Path, run: dict) -> None:
        """report.md, its tables and figures, logged to the run (a job) or the parent run (a sweep)."""
        try:
            client = self._client(run["uri"])
            for path in [folder / "report.md", folder / "report_points.csv", *sorted(folder.glob("*.png"))]:
                if path.is_file():
                    _retry(lambda p=path: client.log_artifact(run["run_id"], str(p), artifact_path="report"))
        except Exception as exc:  # noqa: BLE001 — as above: the report is on disk whatever happens here
            log.warning("MLflow: report of %s not logged (%s)", folder, str(exc).splitlines()[0] if str(exc) else exc)
