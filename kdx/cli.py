"""Command line: `kdx run` (Hydra), `kdx eval RUN_DIR`, `kdx report PATH`, `kdx --version`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from kdx import __version__
from kdx.errors import KdxError, NotApplicable
from kdx.run.resources import available_cores

USAGE = """usage: kdx [--version] [--help] <command> [args]

commands:
  run   [OVERRIDES...]  train teacher, KD student and no-KD student over seeds (Hydra; see kdx run --help)
  eval  RUN_DIR          reload a run's checkpoints and check its recorded test metrics
  report PATH            report.md for a run or a whole sweep directory (also written after every run)
  export RUN_DIR         one model as model.onnx (raw rows in, preprocessing inside) + model card (kdx[deploy])

examples:
  kdx run
  kdx run experiment=breast_cancer
  kdx run dataset=csv dataset.path=my.csv dataset.target=label
  kdx run +smoke=on                         # seconds: a few hundred rows, two seeds
  kdx run -m kd.tau=1,3,5 kd.alpha=0.1,0.5,0.9
  kdx run +study=paper                      # the whole study: 3 datasets x their pairs, 5 seeds, one report
  kdx eval outputs/adult/dnn-shallow_mlp/2026-01-01_12-00-00
  kdx export outputs/adult/dnn-shallow_mlp/2026-01-01_12-00-00 --model student_kd --out deploy/
"""

err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    # escape: a message naming a list ("dataset.numeric=[age, ...]") must not be read as rich markup
    err_console.print(f"[bold red]kdx: error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def config_options(search: list[str] = ()) -> dict[str, list[str]]:
    """The config groups and their options (file names under kdx.conf/<group>/), with those of the user's own
    config directories on Hydra's search path (`hydra.searchpath=[file://DIR]`: a new objective, student, ...)."""
    roots = [resources.files("kdx.conf")]
    for entry in search:
        entry = str(entry)
        if entry.startswith("file://") and Path(entry[len("file://"):]).is_dir():
            roots.append(Path(entry[len("file://"):]))
        elif entry.startswith("pkg://"):
            with contextlib.suppress(ModuleNotFoundError, TypeError):
                roots.append(resources.files(entry[len("pkg://"):].replace("/", ".")))
    options: dict[str, set[str]] = {}
    for root in roots:
        for group in root.iterdir():
            if group.is_dir() and not group.name.startswith(("_", ".")):
                options.setdefault(group.name, set()).update(
                    f.name[: -len(".yaml")] for f in group.iterdir() if f.name.endswith(".yaml"))
    return {group: sorted(names) for group, names in options.items()}


def check_group_overrides(argv: list[str]) -> None:
    """Reject an unknown group option (dataset=foo) in one line, before Hydra prints its multi-line error."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args, _ = get_args_parser().parse_known_args(argv)
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except OverrideParseException as exc:
        _fail(f"cannot parse override: {str(exc).splitlines()[0]}")
    search = [value for o in overrides if o.key_or_group == "hydra.searchpath" and not o.is_delete()
              for value in (o.value() if isinstance(o.value(), list) else [o.value()])]
    options = config_options(search)
    for override in overrides:
        group = override.key_or_group
        if group not in options or override.is_delete():
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if str(value) not in options[group]:
                _fail(f"unknown {group} '{value}'; choose one of: {', '.join(options[group])}")
    check_composes(overrides)
    check_output_dirs(overrides)


def check_extras(argv: list[str]) -> None:
    """An option whose extra is missing fails here in one line, not inside Hydra's startup."""
    import importlib.util

    needs = {"tracking=mlflow": (("mlflow", "sqlalchemy", "alembic"), "tracking"),
             "sweep=optuna": (("optuna",), "tune"),
             "hydra/launcher=slurm": (("submitit",), "parallel"),
             "hydra/launcher=joblib": (("hydra_plugins.hydra_joblib_launcher",), "parallel")}
    for arg in argv:
        option = arg.lstrip("+~")
        if option in needs:
            modules, extra = needs[option]
            missing = [m for m in modules if importlib.util.find_spec(m) is None]
            if missing:
                _fail(f"{option} needs {', '.join(missing)}: pip install 'kdx[{extra}]' (or make install)")


def check_output_dirs(overrides) -> None:
    """The run/sweep folder Hydra will create must be creatable: Hydra's own error is a traceback."""
    given = {o.key_or_group: o.get_value_element_as_str() for o in overrides
             if o.key_or_group in ("hydra.run.dir", "hydra.sweep.dir") and not o.is_sweep_override()}
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        path = Path(given.get(key, "outputs")).expanduser().absolute()
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            _fail(f"{key}={path}: {existing} is a file, not a folder; choose another {key}")
        if not os.access(existing, os.W_OK | os.X_OK):
            _fail(f"{key}={path}: {existing} is not writable (read-only?); choose another {key}")


def check_composes(overrides) -> None:
    """Compose the config of the first job (each sweep at its first value) and turn Hydra's multi-line
    composition errors (an unknown key without '+', a bad type) into one line."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    first = []
    for o in overrides:
        if o.key_or_group.startswith(("hydra", "+hydra")) and o.key_or_group != "hydra.searchpath":
            continue
        if o.is_delete():
            first.append(f"~{o.key_or_group}")
            continue
        prefix = "++" if o.is_force_add() else "+" if o.is_add() else ""
        value = next(iter(o.sweep_string_iterator())) if o.is_sweep_override() else o.get_value_element_as_str()
        first.append(f"{prefix}{o.key_or_group}={value}")
    try:
        with initialize_config_module(config_module="kdx.conf", version_base="1.3"):
            compose(config_name="config", overrides=first)
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            # a value of the wrong type for the schema (kdx.config.schema): name the key and the type it takes
            _fail(f"{cause.full_key}: {str(cause).splitlines()[0]}")
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        _fail(" ".join(lines[:2]) if lines else type(exc).__name__)


SEEDS_RANGE = re.compile(r"^(?P<key>[+~]?seeds)=range\((?P<args>\s*\d+\s*(,\s*\d+\s*){0,2})\)$")


def expand_seed_range(argv: list[str]) -> list[str]:
    """`seeds=range(10)` (Python's range: stop, or start,stop[,step]) → `seeds=[0,...,9]`. Hydra reads
    range() as a sweep over jobs; kdx's seeds are one job's list, so the range is expanded here."""
    out = []
    for arg in argv:
        match = SEEDS_RANGE.match(arg)
        if match:
            seeds = list(range(*(int(x) for x in match["args"].split(","))))
            if not seeds:
                _fail(f"{arg} gives no seeds")
            arg = f"{match['key']}=[{','.join(map(str, seeds))}]"
        out.append(arg)
    return out


def parallel_jobs(hydra_cfg) -> int:
    """How many jobs the launcher runs at the same time (for per-job thread counts)."""
    launcher = hydra_cfg.get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target:
        n = launcher.get("n_jobs") or 1
        return available_cores() if n < 0 else n
    if "submitit" in target:
        # Each submitit job gets its own cpus_per_task; share the machine only when it runs locally.
        return max(1, available_cores() // (launcher.get("cpus_per_task") or 1)) if "Local" in target else 1
    return 1


def concurrent_jobs(hydra_cfg) -> int:
    """How many jobs may run at the same time anywhere (for the seed order): a Slurm array's parallelism,
    else the jobs sharing this machine."""
    launcher = hydra_cfg.get("launcher") or {}
    if "slurm" in str(launcher.get("_target_", "")).lower():
        return max(1, int(launcher.get("array_parallelism") or 1))
    return parallel_jobs(hydra_cfg)


def _hydra_run(argv: list[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path="pkg://kdx.conf", config_name="config")
    def _main(cfg: DictConfig) -> float | None:
        # Imported per job: the parent of a parallel sweep only launches, and torch takes seconds to import.
        from kdx.analysis.console import print_run, print_summary
        from kdx.run.protocol import run

        hydra_cfg = HydraConfig.get()
        out_dir = Path(hydra_cfg.runtime.output_dir)
        try:
            result = run(cfg, out_dir, parallel_jobs=parallel_jobs(hydra_cfg),
                         job_index=int(hydra_cfg.job.get("num") or 0), concurrent_jobs=concurrent_jobs(hydra_cfg))
        except NotApplicable as exc:
            logging.getLogger("kdx").info("not applicable, skipped: %s", exc)
            return None
        except KdxError as exc:
            _fail(str(exc))
        except OSError as exc:  # read-only or full filesystem, a path under a file, ...
            _fail(f"cannot write {exc.filename or out_dir}: {exc.strerror or exc}; finished seeds are kept in "
                  f"{out_dir / 'metrics.csv'}")
        except RuntimeError as exc:
            if "writing file" not in str(exc):  # torch.save on a full disk
                raise
            _fail(f"cannot write a checkpoint under {out_dir}: {str(exc).splitlines()[0]} (disk full?)")
        console = Console(width=None if sys.stdout.isatty() else 120)
        if cfg.get("console", "summary") == "full":
            print_run(console, result.summary, out_dir, result.comparisons)
        else:
            print_summary(console, result.summary, out_dir, result.metrics, result.comparisons)
        # What an Optuna sweep maximizes: the KD student's validation accuracy (R² for a regression).
        regression = result.summary["dataset"].get("task") == "regression"
        return result.summary["metrics"]["student_kd"]["val_r2" if regression else "val_accuracy"]["mean"]

    argv = expand_seed_range(argv)
    check_extras(argv)
    check_group_overrides(argv)
    sys.argv = ["kdx run", *argv]
    try:
        _main()
    except ValueError as exc:  # Hydra's own command-line checks (e.g. -m together with --cfg)
        _fail(str(exc).splitlines()[0])


def _eval(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="kdx eval", description="Reload a run's checkpoints, recompute its "
                                     "test metrics and compare them with the recorded ones.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest accepted absolute difference")
    args = parser.parse_args(argv)
    from kdx.run.evaluate import evaluate_run, print_evaluation

    report = evaluate_run(args.run_dir)
    print_evaluation(Console(), report, args.tolerance)
    if report["max_abs_diff"] > args.tolerance:
        sys.exit(1)


def _report(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="kdx report", description="Write report.md (tables, statistics, J, "
                                     "Pareto set, study comparison, figures) for a run or a sweep directory.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    from kdx.analysis.report import write_report

    target, collection = write_report(args.path, figures=not args.no_figures)
    console = Console()
    complete = sum(r.complete for r in collection.runs)
    console.print(f"{complete} complete run(s) of {len(collection.runs)} found under {collection.root}")
    for line in collection.missing:
        console.print(f"[yellow]missing:[/] {line}", highlight=False)
    console.print(f"report: [bold]{target}[/bold]")


def _export(argv: list[str]) -> None:
    from kdx.deploy.export import EXPORTABLE

    parser = argparse.ArgumentParser(prog="kdx export", description="Export one model of a finished run as "
                                     "model.onnx (raw rows in, imputation/scaling/one-hot inside, probabilities and "
                                     "label out) with model_card.md/json, after checking that onnxruntime reproduces "
                                     "kdx's probabilities on the run's test rows.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seed", type=int, help="which seed's model (default: the run's first seed)")
    parser.add_argument("--model", default="student_kd", choices=EXPORTABLE)
    parser.add_argument("--out", type=Path, help="folder to write (default: RUN_DIR/export/seed_S/MODEL)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest accepted |Δ probability|")
    args = parser.parse_args(argv)
    from kdx.run.loading import load_run

    if not args.tolerance > 0:
        _fail(f"--tolerance must be > 0, got {args.tolerance:g}")
    run = load_run(args.run_dir)
    if args.seed is not None and args.seed not in run.seeds:
        _fail(f"--seed {args.seed}: {args.run_dir} has checkpoints for seeds {run.seeds}")
    done = run.export(args.seed, args.model, args.out, args.tolerance)
    parity = done.card["parity"]
    gap = "|Δ prediction| / sd" if "prediction" in done.card["outputs"] else "|Δp|"
    Console().print(f"exported {args.model} (seed {done.card['model']['seed']}): [bold]{done.onnx}[/bold] "
                    f"({done.card['onnx']['bytes']} bytes), model_card.md/json beside it; parity on "
                    f"{parity['rows']} test rows: largest {gap} {parity['max_abs_diff']:.1e}", highlight=False,
                    soft_wrap=True)


COMMANDS = {"run": _hydra_run, "eval": _eval, "report": _report, "export": _export}


def main(argv: list[str] | None = None) -> None:
    # `kdx run --help | head`: end quietly when the reader closes the pipe, as Unix tools do.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in ("-V", "--version"):
        print(f"kdx {__version__}")
        return
    command = COMMANDS.get(argv[0])
    if command is None:
        _fail(f"unknown command '{argv[0]}'; choose one of: {', '.join(COMMANDS)} (kdx --help)")
    logging.getLogger("kdx").setLevel(logging.INFO)
    try:
        command(argv[1:])
    except KdxError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; finished seeds are kept in the run's metrics.csv (no summary.json)", 130)


if __name__ == "__main__":
    main()
