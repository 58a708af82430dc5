"""Many MLP students trained as one: stacked weights, one minibatch pass for all, per-student early stopping.

Students that share data, seed and architecture (the no-KD and KD student of a seed, every KD student of a
τ/α grid) have the same initialization and the same minibatch order; only their losses differ. Training
them one by one repeats the same per-step framework work K times for matrices too small to keep the CPU
busy. Here layer l's weights of all K students are one (K, in, out) tensor: the first layer is one matmul
of the shared minibatch with every student's weights, the others are batched matmuls, the K losses are
summed (student k's parameters get exactly the gradient of its own loss) and one Adam steps all of them
(Adam is elementwise, so stacking changes nothing but rounding). A student whose validation loss stopped
improving leaves the stack; its best state is kept, as `MLPClassifier.fit` keeps it.

Results equal one-by-one training up to floating-point rounding (batched vs single matmuls): tested in
tests/test_stacked.py, with the tolerance stated there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kdx import progress
from kdx.errors import TrainingError
from kdx.models.adam import Adam
from kdx.models.mlp import MLPClassifier, build_mlp, resolve_device


@dataclass(frozen=True)
class StudentLoss:
    """The study's loss for one student: α·CE + (1−α)·τ²·KL; α = 1 is the no-KD student (CE only)."""

    tau: float = 1.0
    alpha: float = 1.0


def stackable(models: list) -> bool:
    """Whether these students can train as one: MLPs (no dropout: per-student masks could not match
    one-by-one training) with identical settings, seed included."""
    if len(models) < 2 or not all(type(m) is MLPClassifier for m in models):
        return False
    first = models[0].get_params()
    return models[0].dropout == 0 and all(m.get_params() == first for m in models[1:])


def fit_stacked(models: list[MLPClassifier], losses: list[StudentLoss], X: np.ndarray, y: np.ndarray,
                X_val: np.ndarray, y_val: np.ndarray, n_classes: int, teacher_logits: np.ndarray | None = None,
                names: list[str] | None = None) -> list[MLPClassifier]:
    """Fit every model in `models` (stackable) with its loss, as `MLPClassifier.fit` would one by one.

    `names`: how error messages call each student.
    Each model's history records `trained_together` (the stack size) and `fit_seconds`, its share of the
    pass (each epoch's time divided among the students that trained in it)."""
    if not stackable(models) or len(losses) != len(models):
        raise ValueError("fit_stacked needs two or more MLP students with identical settings and one loss each")
    if teacher_logits is None and any(loss.alpha < 1 for loss in losses):
        raise ValueError("teacher_logits are required when a student has alpha < 1")
    spec = models[0]
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    template = build_mlp(X.shape[1], spec.hidden, n_classes).to(device)  # the same init as one-by-one
    linears = [m for m in template if isinstance(m, torch.nn.Linear)]
    count = len(models)
    # Layer weights as (K, in, out) and biases as (K, 1, out): x @ W + b for every student at once. The first
    # layer's bias is its weights' last row, against a column of ones appended to the rows (_augment).
    params = [t for lin in linears for t in (lin.weight.detach().T.contiguous(), lin.bias.detach()[None, :])]
    params = [torch.cat(params[:2])] + params[2:]
    params = [p.unsqueeze(0).repeat(count, *([1] * p.dim())).requires_grad_() for p in params]
    Xt = _augment(torch.as_tensor(X, dtype=torch.float32, device=device))
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    Xv = _augment(torch.as_tensor(X_val, dtype=torch.float32, device=device))
    yv = torch.as_tensor(y_val, dtype=torch.long, device=device)
    Tt = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32, device=device)
    tau = torch.tensor([loss.tau for loss in losses], dtype=torch.float32, device=device)
    alpha = torch.tensor([loss.alpha for loss in losses], dtype=torch.float32, device=device)
    active = list(range(count))  # model index of each stack row
    opt = _adam(params, spec)
    order = torch.Generator().manual_seed(spec.seed)

    best = [float("inf")] * count
    best_state: list[list[torch.Tensor] | None] = [None] * count
    best_epoch, stale = [0] * count, [0] * count
    curves: list[list[float]] = [[] for _ in range(count)]
    seconds = [0.0] * count
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(len(Xt), generator=order).to(device)
        distilled = torch.nonzero(alpha < 1).flatten()
        for i in range(0, len(perm), spec.batch_size):
            idx = perm[i : i + spec.batch_size]
            logits = _forward(params, Xt[idx])
            loss = _losses(logits, yt[idx], None if Tt is None else Tt[idx], tau, alpha, distilled)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            logits_v = _forward(params, Xv)
            val = F.cross_entropy(logits_v.transpose(1, 2), yv.expand(len(active), -1), reduction="none").mean(1)
        val = val.tolist()
        share = (time.perf_counter() - started) / len(active)
        keep = []
        for row, k in enumerate(active):
            seconds[k] += share
            if not np.isfinite(val[row]):
                name = names[k] if names else f"student {k}"
                loss = "no KD" if losses[k].alpha == 1 else f"τ={losses[k].tau:g}, α={losses[k].alpha:g}"
                raise TrainingError(f"{name} ({loss}, trained in a stacked pass): "
                                    + models[k]._divergence(epoch, float("nan"), X, teacher_logits, losses[k].tau))
            curves[k].append(val[row])
            if val[row] < best[k]:
                best[k], best_epoch[k], stale[k] = val[row], epoch, 0
                best_state[k] = [p[row].detach().clone() for p in params]
                keep.append(row)
            else:
                stale[k] += 1
                if stale[k] < spec.patience:
                    keep.append(row)
        progress.epoch(epoch, spec.epochs)
        if not keep:
            break
        if len(keep) < len(active):
            params, opt = _compact(params, opt, keep, spec)
            tau, alpha = tau[keep], alpha[keep]
            active = [active[row] for row in keep]

    for k, model in enumerate(models):
        net = build_mlp(X.shape[1], spec.hidden, n_classes)
        state = best_state[k]
        with torch.no_grad():
            first = state[0]
            for j, lin in enumerate(m for m in net if isinstance(m, torch.nn.Linear)):
                weight, bias = (first[:-1], first[-1]) if j == 0 else (state[2 * j - 1], state[2 * j][0])
                lin.weight.copy_(weight.T.cpu())
                lin.bias.copy_(bias.cpu())
        model.net_ = net.eval()
        model.history_ = {
            "best_epoch": best_epoch[k], "epochs_run": len(curves[k]), "best_val_ce": best[k], "val_ce": curves[k],
            "train_device": str(device), "fit_seconds": seconds[k], "trained_together": count,
        }
    return models


def _augment(x: torch.Tensor) -> torch.Tensor:
    """Rows with a column of ones appended: the first layer's bias is then part of its matmul."""
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits (K, rows, classes) of the K stacked students on the shared rows `x` (augmented)."""
    # The shared rows as a stride-0 batch (no copy). The first layer's bias rides in its matmul instead of
    # being broadcast into the widest activation first (3 % faster a step, 2 and 31 students, measured A/B);
    # later biases are added inside the matmul; ReLU in place (the matmul's backward does not need its
    # output). Measured fastest on CPU of the variants tried (tests/benchmarks/bench_students.py).
    h = torch.bmm(x.expand(params[0].shape[0], -1, -1), params[0])
    for j in range(1, len(params), 2):
        h = torch.baddbmm(params[j + 1], torch.relu_(h), params[j])
    return h


def _losses(logits, y, teacher, tau, alpha, distilled) -> torch.Tensor:
    """Each student's α·CE + (1−α)·τ²·KL (batch means), as kdx.kd.kd_loss computes it for one. The KL term
    only for the `distilled` rows (α < 1): a no-KD student never sees the teacher, as when trained alone."""
    count, rows, _ = logits.shape
    ce = F.cross_entropy(logits.transpose(1, 2), y.expand(count, -1), reduction="none").mean(1)
    if teacher is None or len(distilled) == 0:
        return ce
    scale = tau[distilled, None, None]
    log_s = F.log_softmax(logits[distilled] / scale, dim=-1)
    log_t = F.log_softmax(teacher[None] / scale, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum((1, 2)) / rows
    return (alpha * ce).index_add(0, distilled, (1 - alpha[distilled]) * tau[distilled] ** 2 * kl)


def _adam(params, spec: MLPClassifier) -> Adam:
    """Adam with its fused kernel (one op per step instead of about ten per parameter; the same update up to
    rounding): at this size the optimizer's per-op overhead is a large share of a step."""
    return Adam(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=True)


def _compact(params, opt: Adam, keep: list[int], spec: MLPClassifier):
    """The stack without the students that stopped: their rows of every parameter and of Adam's state."""
    rows = torch.tensor(keep, device=params[0].device)
    new = [p.detach()[rows].clone().requires_grad_() for p in params]
    return new, opt.keep(new, rows)
