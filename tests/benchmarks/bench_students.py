"""Student training throughput on Adult (64-32 MLP, batch 256), in student-rows per second:

- kdx 0.1's loop (torch.optim.Adam, nn.Sequential, one student at a time; reproduced here as it was),
- today's one-by-one loop (MLPClassifier.fit),
- the two students of a run (no KD, KD) in one stacked pass,
- a τ/α grid's 30 KD students plus the no-KD student in one stacked pass (kdx.models.stacked).

Fixed epochs (no early stopping) so every variant does the same work; the first fit of each kind is a
warm-up outside the timing (kdx 0.1's first Adam step also imported torch._dynamo, ~1.2 s, not counted).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from kdx.datasets import load_adult
from kdx.kd import kd_loss
from kdx.models.mlp import MLPClassifier, build_mlp
from kdx.models.stacked import StudentLoss, fit_stacked
from kdx.preprocess import Preprocessor
from kdx.split import stratified_split

EPOCHS = 3
HIDDEN = [64, 32]


def _adult():
    data = load_adult()
    split = stratified_split(data.y, 0)
    pre = Preprocessor(data.numeric, data.categorical).fit(data.X.iloc[split.train])
    X, Xv = (pre.transform(data.X.iloc[idx]) for idx in (split.train, split.val))
    y, yv = data.y[split.train], data.y[split.val]
    teacher = np.random.default_rng(0).normal(size=(len(X), 2)).astype(np.float32)
    return X, y, Xv, yv, teacher


def fit_v01(X, y, Xv, yv, T, tau, alpha, epochs=EPOCHS, seed=0):
    """kdx 0.1's MLPClassifier.fit loop, unchanged apart from the removed early stop."""
    torch.manual_seed(seed)
    net = build_mlp(X.shape[1], HIDDEN, 2)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    Xvt, yvt, Tt = torch.as_tensor(Xv), torch.as_tensor(yv, dtype=torch.long), torch.as_tensor(T)
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.002)
    best, state = float("inf"), None
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(Xt), generator=order)
        for i in range(0, len(perm), 256):
            idx = perm[i : i + 256]
            loss = kd_loss(net(Xt[idx]), Tt[idx], yt[idx], tau, alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float(nn.functional.cross_entropy(net(Xvt), yvt))
        if val < best:
            best, state = val, copy.deepcopy(net.state_dict())
    return state


def _student(epochs=EPOCHS):
    return MLPClassifier(hidden=HIDDEN, lr=0.002, epochs=epochs, patience=10**6, seed=0)


def grid() -> list[StudentLoss]:
    """The study's τ/α grid (+sweep=tau_alpha) and the no-KD student: 31 students."""
    return [StudentLoss()] + [StudentLoss(t, a) for t in (1, 2, 3, 4, 5, 8) for a in (0.1, 0.3, 0.5, 0.7, 0.9)]


def main() -> dict:
    X, y, Xv, yv, T = _adult()
    fit_v01(X, y, Xv, yv, T, 4.0, 0.5, epochs=1)  # warm-ups
    _student(1).fit(X, y, Xv, yv, 2, T, 4.0, 0.5)
    fit_stacked([_student(1), _student(1)], [StudentLoss(), StudentLoss(4.0, 0.5)], X, y, Xv, yv, 2, T)

    variants = {
        "kdx 0.1 loop, one student": (1, lambda: fit_v01(X, y, Xv, yv, T, 4.0, 0.5)),
        "one by one now (MLPClassifier.fit)": (1, lambda: _student().fit(X, y, Xv, yv, 2, T, 4.0, 0.5)),
        "2 students stacked (no KD + KD)": (2, lambda: fit_stacked(
            [_student(), _student()], [StudentLoss(), StudentLoss(4.0, 0.5)], X, y, Xv, yv, 2, T)),
        "31 students stacked (τ/α grid + no KD)": (31, lambda: fit_stacked(
            [_student() for _ in grid()], grid(), X, y, Xv, yv, 2, T)),
    }
    results = {}
    base = None
    for label, (students, fn) in variants.items():
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        rate = students * len(X) * EPOCHS / seconds
        base = base or rate
        results[label] = {"students": students, "seconds": seconds, "student_rows_per_s": rate, "vs_v01": rate / base}
        print(f"  {label:42s} {seconds:6.2f} s for {EPOCHS} epochs | {rate / 1e6:6.2f} M student-rows/s | "
              f"x{rate / base:5.2f} vs kdx 0.1")
    print(f"  ({torch.get_num_threads()} torch threads, {len(X):,} training rows)")
    results["progress_display"] = _progress_cost(X, y, Xv, yv, T)
    return results


def _progress_cost(X, y, Xv, yv, T, rounds: int = 3) -> dict:
    """The live progress display's cost: the same 2-student training (9 epochs) with the display on and off,
    alternated `rounds` times (best of each), display output sent to a throwaway terminal-like console."""
    import io
    import os

    from rich.console import Console

    from kdx import progress
    from kdx.timing import Stages

    def train():
        start = time.perf_counter()
        fit_stacked([_student(3 * EPOCHS), _student(3 * EPOCHS)], [StudentLoss(), StudentLoss(4.0, 0.5)],
                    X, y, Xv, yv, 2, T)
        return time.perf_counter() - start

    times = {"off": [], "on": []}
    before = os.environ.get("KDX_PROGRESS")
    try:
        for _ in range(rounds):
            os.environ["KDX_PROGRESS"] = "0"
            times["off"].append(train())
            os.environ["KDX_PROGRESS"] = "1"
            stages = Stages()
            sink = Console(file=io.StringIO(), force_terminal=True, width=120)
            with progress.display(1, "bench", stages, console=sink):
                with stages("student training"):
                    times["on"].append(train())
    finally:
        if before is None:
            os.environ.pop("KDX_PROGRESS", None)
        else:
            os.environ["KDX_PROGRESS"] = before
    off, on = min(times["off"]), min(times["on"])
    print(f"  progress display on vs off (2 students stacked, best of {rounds}): {on:.3f} s vs {off:.3f} s, "
          f"{100 * (on / off - 1):+.1f} % (goal <= 1 %)")
    return {"off_s": off, "on_s": on, "overhead": on / off - 1}


if __name__ == "__main__":
    main()
