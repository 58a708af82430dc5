"""`kdx report PATH`: tables, statistics, J, the Pareto set, the study's figures beside ours, and figures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from kdx.analysis.claims import NOT_TESTED, Verdict, claims_for_run, tau_claim
from kdx.analysis.collect import Collection, RunRecord, collect
from kdx.analysis.figures import draw_all
from kdx.analysis.tables import (
    augmentation_tables,
    changed_verdicts,
    efficiency_table,
    j_table,
    md_table,
    methods_tables,
    ms,
    pareto_and_best,
    points_table,
    stats_table,
    table2,
    table3,
    test_train_ratio,
    tuned_on_validation,
    verdicts_table,
)
from kdx.config import TIMED_COSTS
from kdx.measure.metrics import headline
from kdx.store.persist import write_csv, write_text

log = logging.getLogger("kdx")
REPORT_FILE = "report.md"
REPORT_STATS = ("r2", "rmse", "mae", "teacher_rmse", "teacher_r2", "accuracy", "roc_auc", "brier", "ece", "nll",
                "teacher_kl", "cosine", "mad", "stability", "latency_ms",
                "latency_batch_ms")


def _rules_section(runs: list[RunRecord], max_lines: int = 60) -> list[str]:
    """Readable students (trees): their rules beside their fidelity to the teacher."""
    out = []
    for run in runs:
        seeds = sorted(run.path.glob("checkpoints/seed_*/student_kd_rules.txt"))
        if not seeds:
            continue
        rules = seeds[0].read_text().splitlines()
        shown = rules[:max_lines] + ([f"... ({len(rules) - max_lines} more lines in {seeds[0].name})"]
                                     if len(rules) > max_lines else [])
        fidelity = ("RMSE to the teacher's predictions on the test split (mean ± sd over seeds): KD student "
                    f"{ms(run, 'student_kd', 'teacher_rmse', '.4g')}, no-KD student "
                    f"{ms(run, 'student_nokd', 'teacher_rmse', '.4g')}; test R² KD {ms(run, 'student_kd', 'r2')}."
                    if run.metrics is not None and headline(run.metrics.columns) == "r2" else
                    "Agreement with the teacher's predictions on the test split (mean ± sd over seeds): KD student "
                    f"{ms(run, 'student_kd', 'teacher_agreement')}, no-KD student "
                    f"{ms(run, 'student_nokd', 'teacher_agreement')}; test accuracy KD "
                    f"{ms(run, 'student_kd', 'accuracy')}.")
        out += [f"### {run.label}: the distilled tree ({seeds[0].parent.name})", "", fidelity, "", "```", *shown,
                "```", ""]
    return (["## Readable students: rules and fidelity to the teacher", "", *out]) if out else []


def _warning_lines(runs) -> list[str]:
    """Flags a run raised about its own results (kdx.analysis.summary.sanity_warnings), first, where nobody
    misses them."""
    flagged = [(r.label, w) for r in runs for w in (r.summary or {}).get("warnings", [])]
    if not flagged:
        return []
    return ["", "**Warnings** (read these before any figure below):", "",
            *[f"- {label}: {line}" for label, line in flagged]]


def _data_lines(runs) -> list[str]:
    """The data section: what each dataset's columns became (identifiers, free text, dates, constant columns
    dropped), as the run said before training."""
    seen, out = set(), []
    for r in runs:
        data = (r.summary or {}).get("dataset", {})
        notes = data.get("column_notes", [])
        if not notes or data.get("name") in seen:
            continue
        seen.add(data.get("name"))
        out += ["", f"**Data: {data.get('name')}** ({data.get('rows')} rows, {len(data.get('features', []))} "
                "feature columns used). Notes on its columns, made before training:", "",
                *[f"- {n}" for n in notes]]
    return out


def _labels_lines(runs) -> list[str]:
    """Where KD students' rows and labels came from, where not the study's: generated rows the teacher labelled
    (so the KD student saw more rows than its no-KD twin: not like for like in rows, by design) and out-of-fold
    labels (their teachers' cost), and what a run could not do as asked."""
    lines = []
    for r in runs:
        s = r.summary or {}
        aug, kd = s.get("augment"), s.get("kd") or {}
        parts = []
        if aug:
            counts = [v.get("rows", 0) for v in (aug.get("rows_per_seed") or {}).values()]
            settings = ", ".join(f"{k}={v}" for k, v in aug.items() if k not in ("name", "rows_per_seed", "path"))
            parts.append(f"augment={aug['name']} ({settings}): the KD student also trained on "
                         f"{min(counts, default=0)}–{max(counts, default=0)} rows per seed that the teacher labelled "
                         "(its teacher term only); the no-KD student saw the training rows alone, so the comparison "
                         "credits distillation with the teacher's labels on those rows, as intended")
        if kd.get("soft_labels") == "oof":
            seconds = list((kd.get("oof_teacher_seconds") or {}).values())
            parts.append(f"soft labels out of fold ({kd.get('oof_folds')} cross-fitted teachers, "
                         f"{sum(seconds):.1f} s of training over the seeds, not in the teacher's train_seconds)")
        parts += s.get("notes") or []
        if parts:
            lines += ["", f"**Rows and labels of the KD student, {r.label}:** " + "; ".join(parts) + "."]
    return lines


def _teacher_and_game_lines(runs) -> list[str]:
    """Where a run's teacher came from (a pretrained file) and which game its attributions are from."""
    lines = _labels_lines(runs)
    files = [(r.label, r.summary["teacher"]) for r in runs if (r.summary or {}).get("teacher")]
    if files:
        lines += ["", "**Pretrained teacher** (used as it is, not trained by kdx): " + "; ".join(
            f"{label}: `{t['path']}` ({t['format']}, SHA-256 {t['sha256'][:12]}…)" for label, t in files)
            + ". It was trained outside kdx's splits: kdx cannot know whether its training rows include these "
              "seeds' test rows; if they do, its test metrics and the KD student's are optimistic."]
    games = {((r.summary or {}).get("explain") or {}).get("players_resolved", "columns") for r in runs}
    if "features" in games:
        lines += ["", "Alignment game: the players are the **original features** (explain.players=features): "
                  "every model is explained by kdx's model-agnostic Shapley estimator, a raw-column teacher on raw "
                  "rows and the students on encoded rows, one-hot blocks moving as one"
                  + (". Other runs here use the encoded columns as players: compare alignment only within one "
                     "game." if len(games) > 1 else ".")]
    return lines


def _together_lines(runs, root: Path) -> list[str]:
    """How many students were trained per stacked pass (kdx.distill.stacked): the sweep's grouped passes
    (trained_together.json, written by the launcher) and the runs' own (column trained_together)."""
    lines = []
    file = root / "trained_together.json"
    groups = json.loads(file.read_text()) if file.is_file() else []
    for g in groups:
        if "skipped" in g:
            lines.append(f"{g['jobs']} jobs differing only in kd.*: each trained its own students ({g['skipped']}).")
        elif any(g["students_per_pass"]):
            sizes = sorted({n for n in g["students_per_pass"] if n})
            who = ("their students" if g.get("jobs_stacked", g["jobs"]) == g["jobs"] else
                   f"the no-KD student and the KD students of {g['jobs_stacked']} of them (the others train their own: "
                   "out-of-fold labels, or an objective that does not apply)")
            lines.append(f"{g['jobs']} jobs differing only in kd.*: {who} were trained together before the "
                         f"jobs ran, {'/'.join(map(str, sizes))} students per stacked pass, one pass per seed "
                         f"({g['seconds']:.1f} s in all).")
    sizes = [r.metrics.loc[r.metrics.model != "teacher", "trained_together"] for r in runs
             if r.metrics is not None and "trained_together" in r.metrics]
    if sizes:
        together = pd.concat(sizes)
        if (together > 1).any():
            lines.append(f"Students trained in a stacked pass: {int((together > 1).sum())} of {len(together)} "
                         f"student rows, up to {int(together.max())} per pass (column `trained_together`; "
                         "`train_seconds` is then the student's share of the pass).")
    if not lines:
        return []
    return ["", " ".join(lines) + " Stacked training gives one-by-one results up to float rounding (README, "
            "\"Speed\")."]


def _optuna_lines(root: Path) -> list[str]:
    """What an Optuna search (+sweep=optuna, optuna.json in the sweep folder) tried and chose."""
    file = root / "optuna.json"
    if not file.is_file():
        return []
    study = json.loads(file.read_text())
    done = [t for t in study["trials"] if t["value"] is not None]
    best = study.get("best") or {}
    params = ", ".join(f"{k} = {float(v):.4g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                       for k, v in best.get("params", {}).items())
    return [f"This sweep is an Optuna search ({study['sampler']}, seed {study['seed']}): {len(done)} of "
            f"{len(study['trials'])} trials finished, each ranked by {study['objective']}; the test split took no "
            f"part. Best trial: job {best.get('job')} ({params}), value "
            f"{best.get('value', float('nan')):.4f}. Every trial is in `optuna.json`.", ""]


def _intro_lines(collection: Collection, runs: list, first: dict) -> list[str]:
    """What was found, reused, missing; the machine; warnings; the data; the teacher and the game."""
    out = collection.root
    lines = [f"# kdx report: {out}", ""]
    lines += [f"{len(runs)} complete run(s) of {len(collection.runs)} found."]
    reuse = [r.metrics.reused for r in runs if r.metrics is not None and "reused" in r.metrics]
    if reuse:
        flags = pd.concat(reuse)
        lines += ["", f"Models trained and measured: {int((~flags).sum())}; reused from the cache: "
                  f"{int(flags.sum())} (per run: column `reused` of metrics.csv)."]
    lines += _together_lines(runs, out)
    if collection.missing:
        lines += ["", "**Missing or incomplete** (the tables below use the complete runs only):", ""]
        lines += [f"- {m}" for m in collection.missing]
    if collection.not_applicable:
        lines += ["", "**Not applicable** (skipped by design):", ""]
        lines += [f"- {m}" for m in collection.not_applicable]
    if first:
        m = first.get("machine", {})
        lines += ["", f"Seeds {first.get('seeds')}; machine: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs; "
                  f"latency with {first.get('profile', {}) and first['profile'].get('threads')} thread(s); "
                  f"torch {first.get('versions', {}).get('torch')}, shap {first.get('versions', {}).get('shap')}."]
    lines += _warning_lines(runs)
    lines += _data_lines(runs)
    lines += _teacher_and_game_lines(runs)
    return lines


def _test_lines(first: dict) -> tuple[str, str]:
    """The test and the adjustment behind every p-value, in words."""
    stats_first = first.get("stats", {})
    test_line = ("the corrected resampled t-test (Nadeau & Bengio 2003: the variance of the mean difference is "
                 "s²·(1/n + n_test/n_train), because re-split seeds share most of their training rows; "
                 "Bouckaert & Frank 2004 for repeated CV)" if stats_first.get("test", "paired") == "corrected"
                 else "the plain paired t-test (stats.test=paired: seeds treated as independent)")
    adjust_line = ("Holm–Bonferroni over all tests of a run (difference tests; non-inferiority tests; inferiority "
                   "tests: three families)" if stats_first.get("correction", "none") == "holm"
                   else "no multiple-comparison adjustment (stats.correction=none)")
    return test_line, adjust_line


def _claims_and_tables_lines(tables: dict, verdicts: list, first: dict, alpha: float, confidence: float) -> list[str]:
    """The study's claims beside ours, Tables 2 and 3, efficiency and the statistics."""
    stats_first = first.get("stats", {})
    test_line, adjust_line = _test_lines(first)
    changed = changed_verdicts(verdicts)
    return ["", "## The study's claims beside ours", "",
              f"Each verdict comes from the test named in its row, on the seeds of that run: {test_line}, "
              f"{adjust_line}, α = {alpha:g}. *supported* / *contradicted*: significant in / against the claimed "
              "direction; *inconclusive*: not significant — with the seeds that would detect the observed "
              "difference at 80 % power at Holm's strictest level α/m, or why no number of re-split seeds would. "
              "“Keeps the teacher's accuracy” is a non-inferiority claim: a non-significant difference does not "
              f"show it, a one-sided test against the margin (stats.margins.accuracy = "
              f"{stats_first.get('margins', {}).get('accuracy', '—')}) does. The plain t-test's verdict, "
              "uncorrected and unadjusted as kdx 0.1 gave it, stands beside each; *effect of* says whether the "
              "no-KD student shows the same effect (then it belongs to the student architecture, not to KD). On a "
              "regression the accuracy claims are checked on R² (margin stats.margins.r2) and the calibration "
              "claim does not apply.", "",
              md_table(tables["claims"]),
              *(["What the corrections changed (plain t-test → now):", "", *changed, ""] if changed else
                ["The corrections changed no verdict.", ""]),
              "## Table 2 — teacher, student without KD, student with KD (test split, mean ± sd over seeds)", "",
              md_table(tables["table2"]),
              "## Table 3 — alignment of the KD student per dataset", "",
              f"✓/✗: whether the study's value lies inside our {confidence:.0%} confidence interval of the mean "
              "(corrected variance). Not like for like: the study does not define its cosine (per row, or of the "
              "global importances mean |φ|: both shown) nor its MAD. kdx 0.1's MAD, the mean over d features of "
              "|φ̂_T − φ̂_S| with φ̂ = φ/Σ|φ|, is bounded by 2/d (0.067 for Breast Cancer's 30 features), so the "
              "study's 0.065 at cosine 0.91 cannot be that; we hold the study's figure against ½Σ_j|φ̂_T,j − φ̂_S,j| "
              "∈ [0, 1] (= d/2 · kdx 0.1's MAD), the scale-free reading we infer. Stability: our perturbation "
              "(Gaussian noise on numeric features, categorical features resampled with probability "
              f"{first.get('explain', {}) and first['explain'].get('categorical_resample', 0)}) need not be the "
              "study's.", "",
              md_table(tables["table3"]),
              "## Efficiency (CPU)", "",
              "`latency`: kdx's `predict_proba` in torch eager / scikit-learn on already-encoded rows. `ONNX`: the "
              "model exported by `kdx export` in onnxruntime (one thread, sequential), fed raw rows, so its time "
              "includes imputation, scaling and one-hot encoding; `—` where onnxruntime was not used.", "",
              md_table(tables["efficiency"]),
              f"## Statistics (paired over seeds; * adjusted p < {alpha:g})", "",
              f"Test: {test_line}; {adjust_line}. `p plain`: the uncorrected paired t-test; `p Wilcoxon`: the "
              "signed-rank test (with 5 seeds its smallest two-sided p is 0.0625). MDE: the smallest difference "
              "these seeds detect at 80 % power. `vs margin`: non-inferiority of B against A within the margin. "
              "Key metrics; every metric is in `report_stats.csv` (and each run's `stats.csv`).", "",
              md_table(tables["stats"][tables["stats"].metric.isin(REPORT_STATS)] if len(tables["stats"])
                       else tables["stats"])]


def _selection_lines(tables: dict, points: pd.DataFrame, first: dict, alpha: float, out: Path) -> list[str]:
    """J, the objectives' and augmentation tables, tuned on validation, the best student per profile and the
    Pareto sets."""
    test_line, _ = _test_lines(first)
    confidence = first.get("stats", {}).get("confidence", 0.95)
    cost = first.get("objective", {}).get("cost_used", first.get("objective", {}).get("cost", []))
    i_used = first.get("objective", {}).get("I_used", True)
    timed = [c for c in cost if c in TIMED_COSTS]
    return ["## Composite objective J = a_P·P − b_C·C + g_I·I (test, mean ± sd over seeds)", "",
              "P = accuracy (R² for a regression), C = mean of model/teacher over "
              + (", ".join(cost) or "nothing measured (C left out of J)")
              + " (teacher = 1), I = SHAP cosine to the teacher (the teacher's I = 1 by definition: it is the "
              "reference, not a candidate, in the selections below)"
              + ("" if i_used else "; **explanations were off, so I is undefined and left out of J**")
              + ". Profiles: "
              + "; ".join(f"{k}: a_P={v['a_P']}, b_C={v['b_C']}, g_I={v['g_I']}"
                          for k, v in first.get("objective", {}).get("profiles", {}).items()) + ".", "",
              md_table(tables["objective"]),
              *(["## Distillation objectives (KD student per objective, test split, mean ± sd over seeds)", "",
                 "Each Δ is the objective's KD student minus the no-KD student, or minus `hinton` at the same τ "
                 f"and α, paired over seeds ({test_line}; Holm over the table's tests; * adjusted p < "
                 f"{alpha:g}). `label_smoothing` is the no-teacher control: an effect it shares is not "
                 "distillation. Every comparison is in `report_methods_stats.csv`.", "",
                 md_table(tables["methods"])] if len(tables["methods"]) else []),
              *(["## Augmentation and soft labels (KD student per setting, test split, mean ± sd over seeds)", "",
                 "Each setting of the KD student's rows (`augment`, `size` = generated rows per training row) and "
                 "labels (`soft labels`: in-sample, or out of fold from cross-fitted teachers) against the no-KD "
                 "student and against plain KD (no generated rows, in-sample labels, the same objective), paired "
                 f"over seeds ({test_line}; Holm over the table's tests; * adjusted p < {alpha:g}). `gap "
                 "recovered` = (acc_KD − acc_noKD)/(acc_T − acc_noKD) (R² for a regression) with its "
                 f"{confidence:.0%} interval (delta method, the same variance factor): 1 would close the gap, "
                 "below 0 is a loss. `chosen`: the best validation accuracy of its group. Every comparison is in "
                 "`report_augment_stats.csv`.", "",
                 md_table(tables["augment"])] if len(tables["augment"]) else []),
              "## Tuned on validation", "",
              "Per dataset and pair, the configuration (τ, α, student size) whose KD student has the best mean "
              "validation accuracy; its test figures are reported as they are. The test split takes no part in "
              "the choice. Sweep with `kdx run +sweep=tune` or `+sweep=tau_alpha`, or search with "
              "`+sweep=optuna`.", "", *_optuna_lines(out),
              md_table(tables["tuned"]),
              "## Best student per dataset, teacher and profile (chosen on validation, reported on test)", "",
              "Candidates: every distinct student (a no-KD student shared by a sweep's jobs counts once); the "
              "teacher's validation J is shown for reference. "
              + (f"**C includes timed costs ({', '.join(timed)})**: measured latency varies between runs, so "
                 "these picks can change when the sweep is rerun; the default cost (params, flops) is computed."
                 if timed else "C is computed (" + ", ".join(cost) + "), not timed: rerunning the same sweep "
                 "gives the same picks."), "",
              md_table(tables["best_per_profile"]),
              "## Pareto-efficient students over (P, −C, I), per dataset and teacher, on validation metrics", "",
              md_table(tables["pareto"][["run", "dataset", "pair", "tau", "alpha", "model", "val_P", "C", "val_I",
                                         headline(points.columns), "I"]].round(4) if not points.empty else points)]


def build_report(collection: Collection, figures: bool = True) -> str:
    """report.md for the complete runs of a collection, with its tables also written as report_*.csv."""
    runs = [r for r in collection.runs if r.complete]
    first = runs[0].summary if runs else {}
    alpha = first.get("stats", {}).get("alpha", 0.05)
    confidence = first.get("stats", {}).get("confidence", 0.95)
    profiles = list(first.get("objective", {}).get("profiles", {}))
    every_run = points_table(runs)  # one row per (run, model): each run's own teacher and baseline
    points, best = pareto_and_best(every_run, profiles)
    out = collection.root
    tables = {"table2": table2(runs), "table3": table3(runs, confidence), "efficiency": efficiency_table(runs),
              "stats": stats_table(runs), "objective": j_table(points, profiles), "best_per_profile": best,
              "pareto": points[points.pareto] if "pareto" in points else points,
              "tuned": tuned_on_validation(every_run)}
    verdicts = [(r.label, v) for r in runs for v in claims_for_run(r.metrics, r.stats, alpha, test_train_ratio(r))]
    verdicts.append(("all runs", tau_claim(points) if not points.empty else Verdict(
        "τ between 3 and 5 gives the best KD student", "τ ∈ [3, 5]", "no complete run", "", NOT_TESTED)))
    tables["claims"] = verdicts_table(verdicts)
    tables["methods"], tables["methods_stats"] = methods_tables(runs, alpha)
    tables["augment"], tables["augment_stats"] = augmentation_tables(runs, alpha, confidence)
    for name, table in tables.items():
        write_csv(out / f"report_{name}.csv", table)
    write_csv(out / "report_points.csv", points)

    lines = _intro_lines(collection, runs, first)
    lines += _claims_and_tables_lines(tables, verdicts, first, alpha, confidence)
    lines += _selection_lines(tables, points, first, alpha, out)
    lines += _rules_section(runs)
    if figures and runs:
        lines += ["## Figures", ""]
        for title, file in draw_all(runs, points, out):
            lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += ["", "Tables as CSV: `report_*.csv` beside this file."]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, figures: bool = True) -> tuple[Path, Collection]:
    collection = collect(path)
    text = build_report(collection, figures)
    target = collection.root / REPORT_FILE
    write_text(target, text)
    return target, collection


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class ReportCallback(Callback):
    """Writes the report at the end of `kdx run` (run directory) and of a multirun (sweep directory).
    When a job fails Hydra stops before this fires: run `kdx report SWEEP_DIR` on what completed."""

    def __init__(self, figures: bool = True):
        self.figures = figures

    def on_run_end(self, config, **kwargs) -> None:
        self._write(config.hydra.runtime.output_dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        self._write(config.hydra.sweep.dir)

    def _write(self, path) -> None:
        try:
            target, _ = write_report(path, self.figures)
            log.info("report: %s", target)
        except Exception as exc:  # the results are already safe on disk; a report failure must not hide them
            log.warning("report not written (%s); run kdx report %s", exc, path)
