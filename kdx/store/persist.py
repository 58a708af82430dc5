"""Run-directory files: written atomically, so an interrupted run never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from kdx.errors import DataError, NoSpace

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
STATS_FILE = "stats.csv"
OBJECTIVE_FILE = "objective.csv"
NOT_APPLICABLE_FILE = "not_applicable.txt"  # a job whose objective does not apply (methods sweeps)
MODELS = ("teacher", "student_nokd", "student_kd")  # the models of every run, in this order
CLASSES_FILE = "classes.json"  # under checkpoints/: class names in logit order
RUN_FOLDER_ADVICE = ("free space or choose another hydra.run.dir; the seeds already finished are in metrics.csv "
                     "if it could be written")


NEARLY_FULL = 1 << 20  # bytes: a failed write on a filesystem with less room than this ran out of space


def out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of disk space: an OSError ENOSPC/EDQUOT anywhere in its chain, or a
    library's own error (torch's zip writer: "unexpected pos ...") while `folder`'s filesystem is full."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        return False
    try:
        stat = os.statvfs(next(p for p in (Path(folder), *Path(folder).parents) if p.exists()))
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < NEARLY_FULL


def no_space(folder: Path, what: str, advice: str) -> NoSpace:
    """The one-line error for a write that ran out of disk space under `folder`."""
    return NoSpace(f"no space left on the disk of {folder} writing {what}: nothing half-written was kept; {advice}")


@contextlib.contextmanager
def cleaned_on_failure(tmp: Path, folder: Path, what: str, advice: str) -> Iterator[None]:
    """Around a write to the temporary file or folder `tmp`: when it fails, `tmp` is removed, and a failure for
    want of disk space becomes one NoSpace line naming `folder` (judged before removing, while the disk is full)."""
    try:
        yield
    except BaseException as exc:
        full = out_of_space(exc, folder)
        if Path(tmp).is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            Path(tmp).unlink(missing_ok=True)
        if full:
            raise no_space(folder, what, advice) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with cleaned_on_failure(Path(tmp), path.parent, path.name, RUN_FOLDER_ADVICE):
        # mkstemp creates 0600; results are meant to be shared like any file the user writes (umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) for a library's writer; renamed to `path` when the block
    succeeds, removed when it fails: a killed or failed write never leaves a file that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    with cleaned_on_failure(tmp, path.parent, path.name, RUN_FOLDER_ADVICE):
        yield tmp
        os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    _atomic_write(Path(path), lambda fh: json.dump(obj, fh, indent=2, default=_jsonable))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(Path(path), lambda fh: frame.to_csv(fh, index=False))


def write_text(path: Path, text: str) -> None:
    _atomic_write(Path(path), lambda fh: fh.write(text))


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def read_run_file(file: Path, read, required: bool = True):
    """`read(file)` for a file of a run directory; a missing (when `required`) or damaged file is one
    DataError naming it. A file that is not required and absent gives None."""
    if not file.is_file():
        if not required:
            return None
        raise DataError(f"{file} is missing; rerun the run to rewrite it")
    try:
        return read(file)
    except Exception as exc:  # truncated CSV/JSON/YAML/pickle/zip/torch files: each library raises its own type
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{file} is damaged or truncated ({first}); rerun the run to rewrite it") from None
