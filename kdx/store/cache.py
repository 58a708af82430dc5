"""Content-addressed cache of trained models and their measurements, shared by jobs and later runs.

An entry's key is the SHA-256 of everything that determines it (data fingerprint, split, seed, model
config, caps, device, library versions, kdx's own source code, measurement settings...). Entries are
written to a temporary directory and renamed into place, so a killed job never leaves one that looks
complete, and their completion marker records each file's SHA-256, so a damaged entry is recomputed (with a
warning) instead of trusted; an exclusive file lock per key makes parallel jobs that need the same entry compute it once
(the others wait, then read it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kdx.errors import ConfigError
from kdx.store.persist import cleaned_on_failure

T = TypeVar("T")
DONE = "COMPLETE"


log = logging.getLogger("kdx")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != DONE}


def _verify(entry: Path) -> str | None:
    """None when every file the completion marker lists is present with its recorded SHA-256."""
    try:
        expected = json.loads((entry / DONE).read_text())
    except (OSError, ValueError):
        return "its completion marker is unreadable"
    if not isinstance(expected, dict) or not expected:
        return "its completion marker lists no files"
    for name, digest in expected.items():
        file = entry / name
        if not file.is_file():
            return f"{name} is missing"
        if file_sha256(file) != digest:
            return f"{name} does not match its checksum (truncated or altered)"
    return None


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
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f"{key}.lock", "w")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise ConfigError(f"cache.dir {self.root}: cannot write {exc.filename or folder} ({exc.strerror}); point "
                              "cache.dir (or KDX_CACHE) at a writable directory, or set cache.enabled=false") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield folder / key
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has(self, kind: str, key: str) -> bool:
        """Whether a complete entry exists (not verified; get_or_compute verifies it when it is read)."""
        return self.root is not None and (self.root / kind / key / DONE).is_file()

    def entry(self, kind: str, key: str) -> Path | None:
        """The folder of a complete entry (not verified), or None."""
        return self.root / kind / key if self.has(kind, key) else None

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], T], save: Callable[[T, Path], None],
                       load: Callable[[Path], T], label: str = "") -> tuple[T, bool]:
        """The cached value for (kind, key), computing and storing it on a miss. Returns (value, reused)."""
        if self.root is None:
            self.misses.append(label or kind)
            return compute(), False
        with self._locked(kind, key) as entry:
            if (entry / DONE).is_file():
                problem = _verify(entry)
                if problem is None:
                    try:
                        value = load(entry)
                        self.hits.append(label or kind)
                        return value, True
                    except Exception as exc:  # a damaged entry must not sink every later run
                        problem = f"cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
                log.warning("cache entry %s (%s) is damaged: %s; recomputing it", entry, label or kind, problem)
                shutil.rmtree(entry, ignore_errors=True)
            value = compute()
            tmp = entry.with_name(f".{key}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with cleaned_on_failure(tmp, self.root, f"the cache entry of {label or kind}", "the next run with "
                                    "space computes it again; free space, point cache.dir (or KDX_CACHE) elsewhere, "
                                    "or set cache.enabled=false"):
                save(value, tmp)
                # The marker lists every file's SHA-256: a truncated or altered file is detected on read.
                (tmp / DONE).write_text(json.dumps(_checksums(tmp), indent=1))
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(tmp, entry)
            self.misses.append(label or kind)
            return value, False
