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

    def parts(self) -> dict[str, np.ndarray]:
        """Each part's row indices, by name."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.parts().items()}


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




def cv_split(y: np.ndarray, repeat: int, fold: int, folds: int, val_share: float,
             class_names: tuple[str, ...] | None = None) -> Split:
    """Fold `fold` of a stratified `folds`-fold partition shuffled by `repeat`: that fold is the test split;
    from the other folds a stratified `val_share` of each class becomes the validation split (for early
    stopping and selection), the rest the training split."""
    rng = np.random.default_rng(repeat)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        if len(rows) < folds or len(rows) - -(-len(rows) // folds) < 2:  # every fold: ≥ 1 test, ≥ 2 to carve
            label = class_names[cls] if class_names else cls
            raise DataError(f"class {label!r} has only {len(rows)} row(s); split.scheme=repeated_cv with "
                            f"{folds} folds needs at least {max(folds, 3)} per class (one test row per fold, and "
                            "a training and a validation row besides). Lower split.folds or merge this class")
        test = rows[fold::folds]
        rest = np.setdiff1d(rows, test, assume_unique=True)
        rest = np.random.default_rng([repeat, fold, int(cls)]).permutation(rest)
        n_val = int(round(len(rest) * val_share))
        n_val = min(max(n_val, 1), len(rest) - 1)
        for part, chunk in zip(parts, (rest[n_val:], rest[:n_val], test)):
            part.append(chunk)
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    return Split(train, val, test)


def make_split(y: np.ndarray, unit: int, scheme: str = "holdout",
               fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), folds: int = 5,
               class_names: tuple[str, ...] | None = None) -> Split:
    """The split of one unit of a run: a seed (holdout: a fresh stratified train/val/test split) or, for
    repeated_cv, unit = repeat·folds + fold."""
    if scheme == "holdout":
        return stratified_split(y, unit, fractions, class_names)
    repeat, fold = divmod(unit, folds)
    return cv_split(y, repeat, fold, folds, fractions[1] / (fractions[0] + fractions[1]), class_names)
