"""Tables and situations real users bring, through the real command line: compressed tables, identifier /
free-text / date / constant columns, `kdx eval` after the data changed, a full disk under the cache and under
the run folder, the first screen of a run, and the exported score.py's usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdx.data import load_csv
from kdx.errors import DataError


def kdx(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "kdx", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env=None if env is None else {**os.environ, **env})


def _error_line(res) -> str:
    """The run failed with exactly one `kdx: error:` line and no traceback: that line."""
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr, res.stderr[-3000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kdx: error:"), res.stderr
    return lines[0]


def _users_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Like the raw Palmer Penguins table: a row number, an identifier, a date, free text, constant columns."""
    rng = np.random.default_rng(seed)
    mass = rng.normal(4200, 800, n)
    length = rng.normal(44, 5, n)
    species = np.where(mass / 800 + length / 5 + rng.normal(0, 0.7, n) > 14.1, "Gentoo penguin", "Adelie Penguin")
    return pd.DataFrame({
        "Sample Number": np.arange(1, n + 1), "Species": species, "Region": "Anvers",
        "Island": rng.choice(["Torgersen", "Biscoe", "Dream"], n), "Stage": "Adult, 1 Egg Stage",
        "Individual ID": [f"N{i}A{j}" for i, j in zip(rng.permutation(n), rng.integers(1, 3, n))],
        "Date Egg": (pd.Timestamp("2007-11-01") + pd.to_timedelta(rng.integers(0, 800, n), unit="D")
                     ).strftime("%m/%d/%y"),
        "Culmen Length (mm)": length, "Body Mass (g)": mass,
        "Comments": np.where(rng.random(n) < 0.2, "Nest never observed with full clutch of eggs.", None),
    })


@pytest.mark.parametrize("compression", ["gzip", "bz2", "xz", "zip"])
def test_compressed_tables_read_like_the_plain_one(tmp_path, compression):
    table = _users_table()
    table.to_csv(tmp_path / "plain.csv", index=False, sep=";")
    suffix = {"gzip": "gz", "bz2": "bz2", "xz": "xz", "zip": "zip"}[compression]
    table.to_csv(tmp_path / f"t.csv.{suffix}", index=False, sep=";", compression=compression)
    plain, packed = load_csv(tmp_path / "plain.csv", "Species"), load_csv(tmp_path / f"t.csv.{suffix}", "Species")
    pd.testing.assert_frame_equal(plain.X, packed.X)
    assert (plain.y == packed.y).all() and plain.numeric == packed.numeric
    # Recognised by content, not by name; a truncated one is one line
    shutil.copy(tmp_path / f"t.csv.{suffix}", tmp_path / "renamed.csv")
    pd.testing.assert_frame_equal(load_csv(tmp_path / "renamed.csv", "Species").X, plain.X)
    cut = tmp_path / f"cut.csv.{suffix}"
    cut.write_bytes((tmp_path / f"t.csv.{suffix}").read_bytes()[:400])
    with pytest.raises(DataError) as info:
        load_csv(cut, "Species")
    assert "\n" not in str(info.value) and "\\x" not in str(info.value)


def test_binary_bytes_never_reach_the_message(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"\x00\x01\x02garbage\x03\n\x05\x06\n")
    with pytest.raises(DataError, match="is not a text table .* nor a compressed one"):
        load_csv(tmp_path / "b.csv", "y")


def test_columns_a_user_table_brings_are_named_and_constant_ones_dropped(tmp_path):
    _users_table().to_csv(tmp_path / "p.csv", index=False)
    data = load_csv(tmp_path / "p.csv", "Species")
    notes = "\n".join(data.notes["columns"])
    assert data.notes["dropped_constant"] == ["Region", "Stage"] and "Region" not in data.X.columns
    assert "column 'Region' holds one value ('Anvers') in every row: constant, so dropped" in notes
    assert "column 'Individual ID' has a distinct value in" in notes and "dataset.drop=[Individual ID]" in notes
    assert "column 'Date Egg' holds dates" in notes and "dataset.parse_dates=[Date Egg]" in notes
    assert "column 'Comments' looks like free text" in notes
    assert "column 'Sample Number' numbers the rows" in notes
    assert len(data.notes["columns"]) == 6  # nothing about the ordinary columns
    parsed = load_csv(tmp_path / "p.csv", "Species", parse_dates=["Date Egg"], drop=["Individual ID", "Comments"])
    assert "Date Egg" in parsed.numeric and parsed.X["Date Egg"].between(13800, 14700).all()
    assert not any("Date Egg" in n or "Individual ID" in n for n in parsed.notes["columns"])
    with pytest.raises(DataError, match="none of its values is a date"):
        load_csv(tmp_path / "p.csv", "Species", parse_dates=["Island"])


@pytest.mark.slow
def test_a_compressed_user_table_end_to_end_then_eval_after_the_data_changed(tmp_path):
    """One run on a gzip table with columns to flag: it runs, the notes reach the log, summary.json and the
    report; the first screen fits 40 lines of 120 columns; no matplotlib noise on a first run (an empty
    matplotlib config folder); the export's score.py prints its usage; after the table lost rows, kdx eval
    says in one line that the data no longer matches."""
    table = _users_table()
    path = tmp_path / "penguins.csv.gz"
    table.to_csv(path, index=False)
    out = tmp_path / "run"
    res = kdx("run", "dataset=csv", f"dataset.path={path}", "dataset.target=Species", "dataset.drop=[Comments]",
              "+smoke=on", "explain.rows=20", "explain.background=10", "hydra.callbacks.report.figures=true",
              f"hydra.run.dir={out}", env={"MPLCONFIGDIR": str(tmp_path / "mpl")})
    assert res.returncode == 0, res.stderr[-3000:]
    screen = (res.stdout + res.stderr).splitlines()
    printed = [line for line in screen if not line.startswith("[") and str(tmp_path) not in line]  # not log, paths
    assert len(screen) <= 40 and max(len(line) for line in printed) <= 120, "\n".join(screen)
    assert "fontManager" not in res.stdout + res.stderr and (out / "report.md").is_file()
    assert "column 'Individual ID' has a distinct value" in res.stdout + res.stderr
    assert "The study's claims" in res.stdout and "report.md" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["dropped_constant"] == ["Region", "Stage"]
    assert any("Date Egg" in n for n in summary["dataset"]["column_notes"])
    assert "**Data: csv**" in (out / "report.md").read_text()
    exported = kdx("export", str(out), "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    score = tmp_path / "export" / "score.py"
    helped = subprocess.run([sys.executable, str(score), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python score.py") and not helped.stderr
    bare = subprocess.run([sys.executable, str(score)], capture_output=True, text=True)
    assert bare.returncode == 2 and bare.stderr.startswith("usage: python score.py") and "Traceback" not in bare.stderr
    table.iloc[:200].to_csv(path, index=False)
    line = _error_line(kdx("eval", str(out)))
    assert "the data no longer matches the run" in line and "300 rows then, 200 now" in line
    (out / "summary.json").unlink()  # an interrupted run has no fingerprint: the split's rows decide
    assert "the data changed since the run" in _error_line(kdx("eval", str(out)))


def _tmpfs(folder: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `folder`: None, or why not (then the test is skipped with that reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a small tmpfs needs root"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"kdx-{uuid.uuid4().hex[:8]}",
                           str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"


@pytest.mark.slow
def test_a_full_disk_under_the_cache_or_the_run_folder_is_one_line(tmp_path):
    disk = tmp_path / "disk"
    why = _tmpfs(disk, "300k")
    if why:
        pytest.skip(why)
    try:
        line = _error_line(kdx("run", "+smoke=on", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                               env={"KDX_CACHE": str(disk)}))
        assert f"no space left on the disk of {disk} writing the cache entry" in line and "cache.dir" in line
        # Nothing half-written: only lock files; with room, the next run computes what was lost
        assert not [p for p in disk.rglob("*") if p.is_file() and p.suffix != ".lock"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = kdx("run", "+smoke=on", f"hydra.run.dir={tmp_path / 'run2'}", cwd=tmp_path,
                    env={"KDX_CACHE": str(disk)})
        assert again.returncode == 0, again.stderr[-2000:]
        shutil.rmtree(disk / "models", ignore_errors=True)
        shutil.rmtree(disk / "measurements", ignore_errors=True)
        subprocess.run(["mount", "-o", "remount,size=300k", str(disk)], check=True)
        line = _error_line(kdx("run", "+smoke=on", "cache.enabled=false", f"hydra.run.dir={disk / 'run'}",
                               cwd=tmp_path))
        assert f"no space left on the disk of {disk / 'run'}" in line and "hydra.run.dir" in line
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
