"""The default teacher's training epoch against its matmul floor, side by side in one run: the forward and
backward matmuls alone (the same layer shapes, batch 256, as many steps as an epoch), a plain torch loop
(nn.Dropout, torch.optim.Adam's single-tensor update, no validation pass: the textbook loop, not kdx's trainer
before this change, which batched Adam's ops across parameters), the same plain loop under bf16 autocast, and
kdx's trainer (MLPClassifier.fit_teacher: the stacked trainer with one model, seeded PCG64 dropout masks, fused
Adam, the validation pass of each epoch included). On Adult's training rows and on a synthetic table of
KDX_TEACHER_ROWS rows (default 1,000,000; 30 encoded columns). Goal (issue #30): an epoch ≤ 1.5× its matmul
time, ≤ 2× at the least."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from kdx.data import load_adult
from kdx.data.rows import prepare_seed
from kdx.models.mlp import MLPClassifier, build_mlp

SPLIT = {"scheme": "holdout", "folds": 5, "fractions": (0.7, 0.15, 0.15)}


def _teacher_config(name: str = "dnn") -> dict:
    """The settings of `teacher=name` (the default run's teacher: dnn), on the CPU."""
    with initialize_config_module(config_module="kdx.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["device=cpu", f"teacher={name}"])
    return {k: v for k, v in cfg.teacher.items() if k not in ("_target_", "name")}


def _matmul_epoch(n_rows: int, n_in: int, hidden, batch: int) -> float:
    """Seconds of the epoch's matmuls alone: per step x@W for every layer, then a@g (weight gradient) and
    g@Wᵀ (input gradient) backwards."""
    widths = [n_in, *hidden, 2]
    weights = [torch.randn(a, b) for a, b in zip(widths[:-1], widths[1:])]
    x, grad = torch.randn(batch, n_in), torch.randn(batch, 2)

    def step():
        acts = [x]
        for w in weights:
            acts.append(acts[-1] @ w)
        g = grad
        for layer in range(len(weights) - 1, -1, -1):
            acts[layer].T @ g
            if layer:
                g = g @ weights[layer].T

    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(-(-n_rows // batch)):
        step()
    return time.perf_counter() - start


def _plain_epoch(X, y, params: dict, bf16: bool = False) -> float:
    torch.manual_seed(0)
    net = build_mlp(X.shape[1], params["hidden"], 2)
    for i, module in enumerate(net):  # torch's own dropout, as kdx trained before
        if isinstance(module, torch.nn.ReLU) and params["dropout"] > 0:
            net[i] = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Dropout(params["dropout"]))
    opt = torch.optim.Adam(net.parameters(), lr=params["lr"], weight_decay=params["weight_decay"], foreach=False)
    Xt, yt, batch = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long), params["batch_size"]
    start = time.perf_counter()
    perm = torch.randperm(len(Xt))
    for i in range(0, len(Xt), batch):
        idx = perm[i : i + batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(Xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def _kdx_epoch(X, y, X_val, y_val, params: dict, epochs: int) -> float:
    model = MLPClassifier(**{**params, "epochs": epochs, "patience": epochs + 1, "device": "cpu"})
    model.fit_teacher(X, y, X_val, y_val, 2)
    return model.history_["fit_seconds"] / model.history_["epochs_run"]


def _table(label: str, X, y, X_val, y_val, params: dict, repeats: int, epochs: int) -> dict:
    rows: dict[str, list[float]] = {"matmuls": [], "plain torch loop": [], "plain loop, bf16 autocast": [],
                                    "kdx trainer": []}
    for _ in range(repeats):  # interleaved, so a slow spell of the machine touches every column alike
        rows["matmuls"].append(_matmul_epoch(len(X), X.shape[1], params["hidden"], params["batch_size"]))
        rows["plain torch loop"].append(_plain_epoch(X, y, params))
        rows["plain loop, bf16 autocast"].append(_plain_epoch(X, y, params, bf16=True))
        rows["kdx trainer"].append(_kdx_epoch(X, y, X_val, y_val, params, epochs))
    median = {k: statistics.median(v) for k, v in rows.items()}
    floor = median["matmuls"]
    print(f"  {label}: {len(X):,} training rows x {X.shape[1]} columns, median of {repeats} "
          f"(kdx: {epochs} epochs each)")
    for name, seconds in median.items():
        print(f"    {name:28s} {seconds:8.3f} s/epoch   {seconds / floor:5.2f}x the matmuls")
    return median


def main() -> dict:
    params = _teacher_config()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    print(f"  teacher: MLP {'-'.join(map(str, params['hidden']))}, dropout {params['dropout']}, batch "
          f"{params['batch_size']}, {torch.get_num_threads()} threads")
    sd = prepare_seed(load_adult(), 0, SPLIT)
    results = {"adult": _table("Adult", sd.X["train"], sd.y["train"], sd.X["val"], sd.y["val"], params, repeats=3,
                               epochs=3)}
    n = int(os.environ.get("KDX_TEACHER_ROWS", 1_000_000))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 30)).astype(np.float32)
    y = (X[:, :5].sum(axis=1) + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    val = max(1, n // 10)
    results["synthetic"] = _table("synthetic", X[val:], y[val:], X[:val], y[:val], params, repeats=3, epochs=1)
    return results


if __name__ == "__main__":
    main()
