"""Content-addressed cache of trained models and their measurements, shared by jobs and later runs.

An entry's key is the SHA-256 of everything that determines it (data fingerprint, split, seed, model
config, caps, device, library versions, kdx's own source code, measurement settings...). Entries are
written to a temporary directory and renamed into place, so a killed job never leaves one that looks
complete; an exclusive file lock per key makes parallel jobs that need the same entry compute it once
(the others wait, then read it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
DONE = "COMPLETE"


def content_key(*parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ArtifactCache:
    """`root=None` disables caching: every `get_or_compute` computes."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)
        self.hits: list[str] = []
        self.misses: list[str] = []

    @contextlib.contextmanager
    def _locked(self, kind: str, key: str) -> Iterator[Path]:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder / key
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], T], save: Callable[[T, Path], None],
                       load: Callable[[Path], T], label: str = "") -> tuple[T, bool]:
        """The cached value for (kind, key), computing and storing it on a miss. Returns (value, reused)."""
        if self.root is None:
            self.misses.append(label or kind)
            return compute(), False
        with self._locked(kind, key) as entry:
            if (entry / DONE).is_file():
                self.hits.append(label or kind)
                return load(entry), True
            value = compute()
            tmp = entry.with_name(f".{key}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                save(value, tmp)
                (tmp / DONE).write_text("ok\n")
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self.misses.append(label or kind)
            return value, False
