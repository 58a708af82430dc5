"""Seeded stratified train/validation/test split that also handles very rare classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdx.errors import DataError


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split n rows of one class into parts by largest remainder, giving every part at least one row."""
    exact = n * fractions
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    # Rounding can leave a part of a rare class empty; take a row from the largest part.
    for i in np.flatnonzero(counts == 0):
        counts[np.argmax(counts)] -= 1
        counts[i] += 1
    return counts


def stratified_split(
    y: np.ndarray, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    class_names: tuple[str, ...] | None = None,
) -> Split:
    """Split row indices so that every class is present in train, validation and test.

    Per class, rows are shuffled with `seed` and divided by largest-remainder rounding of the fractions;
    a class with fewer rows than parts cannot be stratified and is rejected with a clear message.
    """
    frac = np.asarray(fractions, dtype=float)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        if len(rows) < 3:
            label = class_names[cls] if class_names else cls
            raise DataError(
                f"class {label!r} has only {len(rows)} row(s); at least 3 are needed to put one in each of "
                "train/validation/test. Merge or drop this class and rerun"
            )
        rows = rng.permutation(rows)
        bounds = np.cumsum(_allocate(len(rows), frac))[:-1]
        for part, chunk in zip(parts, np.split(rows, bounds)):
            part.append(chunk)
    # Shuffle across classes so that row order carries no label information.
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return Split(train, val, test)
