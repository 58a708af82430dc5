"""Rich tables for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from kdx.summary import format_mean_sd

MAIN_COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("nll", "NLL"), ("macro_f1", "macro-F1"),
                ("train_seconds", "train s"))


def results_table(summary: dict, columns=MAIN_COLUMNS) -> Table:
    seeds = summary.get("seeds", [])
    title = (f"{summary['dataset']['name']}: {summary['config']['teacher']['name']} → "
             f"{summary['config']['student']['name']}, τ={summary['kd']['tau']:g} α={summary['kd']['alpha']:g}, "
             f"test split, mean ± sd over {len(seeds)} seed(s)")
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    present = [(key, label) for key, label in columns if any(key in m for m in summary["metrics"].values())]
    for _, label in present:
        table.add_column(label, justify="right")
    for model, stats in summary["metrics"].items():
        digits = lambda key: 2 if key.endswith("seconds") else 4  # noqa: E731
        table.add_row(model, *(format_mean_sd(stats.get(key), digits(key)) for key, _ in present))
    return table


def print_run(console: Console, summary: dict, out_dir) -> None:
    console.print(results_table(summary))
    for student, stat in summary.get("accuracy_retention", {}).items():
        console.print(f"accuracy retention {student}/teacher: {format_mean_sd(stat, 4)}")
    console.print(f"wall time {summary['wall_seconds']:.1f} s on {summary['device']}; outputs in [bold]{out_dir}[/bold]")
