"""Many MLP students trained as one: stacked weights, one minibatch pass for all, per-student early stopping.

Students that share data, seed and architecture (the no-KD and KD student of a seed, every KD student of a
τ/α grid or of a methods sweep) have the same initialization and the same minibatch order; only their losses
differ (any mix of kdx's objectives: kdx.models.losses.Loss). Training
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

import numpy as np
import torch
import torch.nn.functional as F

from kdx.distill.objectives.base import TeacherSignals
from kdx.models.adam import Adam
from kdx.models.losses import Loss, Step
from kdx.models.mlp import MLPClassifier, resolve_device
from kdx.models.stack import Selection, augment, backward, compact, forward, stacked

EPOCH_BLOCK_ROWS = 65_536  # rows of an epoch gathered into the training buffer at a time


def stackable(models: list) -> bool:
    """Whether these students can train as one: MLPs (no dropout: per-student masks could not match
    one-by-one training) with identical settings, seed included (MLPClassifier.alike)."""
    return MLPClassifier.alike(models) and models[0].dropout == 0


def _check_stack(models: list, losses: list[Loss], teacher_logits, signals) -> None:
    if not stackable(models) or len(losses) != len(models):
        raise ValueError("fit_stacked needs two or more MLP students with identical settings and one loss each")
    if any(loss.regression for loss in losses):
        raise ValueError("fit_stacked trains classifiers; regression students train one by one (MLPClassifier.fit)")
    if teacher_logits is None and any(loss.uses_teacher for loss in losses):
        raise ValueError("teacher_logits are required when a student has alpha < 1")
    if signals is None and any(loss.gradients for loss in losses):
        raise ValueError("signals (the teacher's input gradients) are required for jacobian/attribution students")


def fit_stacked(models: list[MLPClassifier], losses: list[Loss], X: np.ndarray, y: np.ndarray,
                X_val: np.ndarray, y_val: np.ndarray, n_classes: int, teacher_logits: np.ndarray | None = None,
                names: list[str] | None = None, signals: TeacherSignals | None = None) -> list[MLPClassifier]:
    """Fit every model in `models` (stackable) with its loss, as `MLPClassifier.fit` would one by one.

    `names`: how error messages call each student. `signals`: the teacher's per-row arrays and constants the
    input-gradient terms compare with (weights, teacher_grad, teacher_attr; mean, membership), as the
    gradient objectives' `signals` give them.
    Each model's history records `trained_together` (the stack size) and `fit_seconds`, its share of the
    pass (each epoch's time divided among the students that trained in it)."""
    _check_stack(models, losses, teacher_logits, signals)
    spec = models[0]
    device = resolve_device(spec.device)
    count = len(models)
    params = stacked(spec, X.shape[1], n_classes, count, device)  # every layer of all K students, as one by one
    Xt = torch.as_tensor(X, dtype=torch.float32, device=device)  # the caller's rows, not a copy (CPU, float32)
    # A block of the epoch's rows in its order, with the bias column of ones (augment): one buffer of
    # EPOCH_BLOCK_ROWS rows (a whole number of minibatches) filled for each block, so a minibatch is a slice,
    # not three gathers a step, and the training rows never exist twice.
    block = spec.batch_size * max(1, EPOCH_BLOCK_ROWS // spec.batch_size)
    Xe = torch.ones(min(block, len(Xt)), Xt.shape[1] + 1, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    Xv = augment(torch.as_tensor(X_val, dtype=torch.float32, device=device))
    yv = torch.as_tensor(y_val, dtype=torch.long, device=device)
    Tt = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32, device=device)
    rows = {} if signals is None else {k: torch.as_tensor(v, device=device) for k, v in signals.rows.items()}
    constants = {} if signals is None else {k: torch.as_tensor(v, device=device) for k, v in signals.constants.items()}
    # With non-finite teacher logits the KD students diverge (and are named); the others must not see them.
    terms = _Terms(losses, device, masked=Tt is not None and not bool(torch.isfinite(Tt).all()))
    active = list(range(count))  # model index of each stack row
    opt = _adam(params, spec)
    order = torch.Generator().manual_seed(spec.seed)

    selection = Selection(count, spec.epochs, spec.patience)

    def diverged(k: int, epoch: int) -> str:
        name = names[k] if names else f"student {k}"
        teacher = teacher_logits if losses[k].uses_teacher else None
        return (f"{name} ({losses[k].label}, trained in a stacked pass): "
                + models[k]._divergence(epoch, float("nan"), X, teacher, losses[k].tau))

    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(len(Xt), generator=order).to(device)
        for i in range(0, len(Xt), block):  # minibatches never straddle two blocks: the epoch's steps as one pass
            rows_b = perm[i : i + block]
            Xb = Xe[: len(rows_b)]
            Xb[:, :-1] = Xt[rows_b]
            _epoch(params, opt, terms, Xb, yt[rows_b], None if Tt is None else Tt[rows_b],
                   {k: v[rows_b] for k, v in rows.items()}, constants, spec.batch_size, epoch)
        keep = selection.epoch(epoch, params, Xv, yv, active, started, diverged)
        if not keep:
            break
        if len(keep) < len(active):
            params, opt = compact(params, opt, keep)
            terms = terms.keep(keep)
            active = [active[row] for row in keep]

    for k, model in enumerate(models):
        model.net_ = selection.network(k, X.shape[1], spec.hidden, n_classes)
        model.history_ = selection.history(k, str(device), count)
    return models


def _epoch(params: list[torch.Tensor], opt, terms: _Terms, Xe: torch.Tensor, ye: torch.Tensor,
           Te: torch.Tensor | None, rows_e: dict, constants: dict, batch_size: int, epoch: int) -> None:
    """One epoch's minibatch steps over the epoch's rows (already in its order) for every stacked student."""
    for i in range(0, len(Xe), batch_size):
        batch = slice(i, i + batch_size)
        x = Xe[batch]
        opt.zero_grad()
        if terms.plain:
            _plain_step(params, x, ye[batch], None if Te is None else Te[batch], terms)
        else:
            acts = [] if terms.gradients else None
            logits = forward(params, x, acts)
            loss = terms(logits, ye[batch], None if Te is None else Te[batch], epoch,
                         (params, x, acts, {k: v[batch] for k, v in rows_e.items()}, constants))
            loss.sum().backward()
        opt.step()


@torch.no_grad()
def _plain_step(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None,
                terms: _Terms) -> None:
    """One step's gradients of students whose losses are all CE and Hinton's term (no KD, τ/α grids), into
    each parameter's `.grad`: the logits' gradient as _CrossEntropyKL writes it, then the chain rule through
    the layers written out (backward). The same operations autograd runs for `forward`, bit for bit, without
    recording and walking a graph every step: an epoch of 31 students 0.465 → 0.360 s, of 2 students 1.2-1.5x
    faster (interleaved A/B, Adult, 64-32)."""
    acts: list[torch.Tensor] = []
    logits = forward(params, x, acts)
    _, grad = _cross_entropy_kl(logits, y, teacher if terms.hinton else None, terms.ce_weight, terms.tau,
                                terms.kl_weight, terms.masked, with_loss=False)
    for p, g in zip(params, backward(params, x, acts, grad)):
        p.grad = g


def _input_gradients(params: list[torch.Tensor], acts: list[torch.Tensor], rows: torch.Tensor,
                     w: torch.Tensor) -> torch.Tensor:
    """∂(z·w)/∂x (len(rows), batch, inputs) of the stack's students `rows`, differentiable in their weights.

    The chain rule written out, for those students only: w·W_Lᵀ, then at each hidden layer the ReLU's
    mask and that layer's Wᵀ. It is what double backpropagation computes (kdx.distill.objectives.gradients.
    student_pass, one student), without differentiating the whole stack twice; the masks are constants
    (ReLU's derivative is 0 almost everywhere)."""
    weights = [params[0]] + params[1::2]
    last = weights[-1][rows]  # class-major (K, classes, in), unless it is the first layer
    g = torch.matmul(w[None], last if len(weights) > 1 else last.transpose(1, 2))
    for layer in range(len(weights) - 2, -1, -1):
        g = torch.matmul(g * (acts[layer][rows] > 0), weights[layer][rows].transpose(1, 2))
    return g[..., :-1]  # the appended ones column (the first layer's bias) is not an input


def _cross_entropy_kl(logits, y, teacher, ce_weight, tau, kl_weight, masked=False, with_loss=True):
    """_CrossEntropyKL's losses (K,) (None without `with_loss`) and their gradient (K, classes, rows)."""
    rows = logits.shape[2]
    onehot = torch.zeros_like(logits[0]).scatter_(0, y[None], 1.0)
    log_p = F.log_softmax(logits, dim=1)
    loss = ce_weight * -(log_p * onehot).sum(1).mean(1) if with_loss else None
    grad = (log_p.exp_() - onehot) * (ce_weight / rows)[:, None, None]
    if teacher is not None:
        scale = tau[:, None, None]
        log_q = F.log_softmax(logits / scale, dim=1)
        log_t = F.log_softmax(teacher.T[None] / scale, dim=1)
        p_t = log_t.exp()
        kl = kl_weight * (p_t * (log_t - log_q)).sum((1, 2)) / rows if with_loss else None
        kl_grad = (log_q.exp_() - p_t) * (kl_weight / tau / rows)[:, None, None]  # log_q is q from here
        if masked:  # non-finite teacher logits: weight 0 would still pass NaN to the students without KL
            has = kl_weight > 0
            kl_grad = torch.where(has[:, None, None], kl_grad, 0.0)
            kl = torch.where(has, kl, 0.0) if with_loss else None
        loss = loss + kl if with_loss else None
        grad += kl_grad
    return loss, grad


class _CrossEntropyKL(torch.autograd.Function):
    """Per student k (K,): `c_k·CE + w_k·KL(softmax(z_T/τ_k) ‖ softmax(z_k/τ_k))` on logits (K, classes,
    rows), batch means (w_k = 0: no KL term; `teacher` None: no student has one). The gradient is written out,
    `(c_k·(p − onehot) + (w_k/τ_k)·(q − p_T)) / rows` with p = softmax(z), q = softmax(z/τ), and computed
    with the losses: autograd spent about 35 small ops a step on the same (at 31 students 0.45 ms of a ~3.4 ms
    step; this form 0.31 ms, measured). Tested against autograd (tests/test_stacked.py)."""

    @staticmethod
    def forward(ctx, logits, y, teacher, ce_weight, tau, kl_weight, masked=False):
        loss, grad = _cross_entropy_kl(logits, y, teacher, ce_weight, tau, kl_weight, masked)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss[:, None, None], None, None, None, None, None, None


class _Terms:
    """The stack's losses (kdx.models.losses.Loss) as tensors, one entry per stack row, so that every student's
    loss is one computation whatever the mix of objectives. CE (with its label smoothing) and Hinton's term
    are computed for every row and count only where a student has them (a no-KD student never sees the
    teacher, as when trained alone); each objective's own `term` once for the rows that have it, with its
    settings as (students,) columns."""

    def __init__(self, losses: list[Loss], device, masked: bool = False):
        def column(values, dtype=torch.float32):
            return torch.tensor(values, dtype=dtype, device=device)

        self.losses, self.masked = losses, masked
        self.tau, self.alpha = column([x.tau for x in losses]), column([x.alpha for x in losses])
        self.epsilon = column([x.epsilon for x in losses])
        # _CrossEntropyKL's weights: CE's α·(1 − ε) (label smoothing's ε·mean −log p is added apart) and
        # Hinton's (1 − α)·τ², 0 for the students without that term
        self.ce_weight = self.alpha * (1 - self.epsilon)
        hinton = column([x.hinton for x in losses])
        self.kl_weight = hinton * (1 - self.alpha) * self.tau**2
        self.hinton = bool(hinton.any())
        self.smoothed = column([i for i, x in enumerate(losses) if x.epsilon > 0], torch.long)
        # each distinct term with the rows that have it and their settings as columns
        self.groups = []
        for term in dict.fromkeys(x.term for x in losses if x.term is not None):
            rows = [i for i, x in enumerate(losses) if x.term is term]
            names = [k for k, _ in losses[rows[0]].settings]
            settings = {k: column([dict(losses[i].settings)[k] for i in rows]) for k in names}
            self.groups.append((term, column(rows, torch.long), settings, any(losses[i].gradients for i in rows)))
        self.gradients = any(g[3] for g in self.groups)
        # only CE and Hinton's term: the step's gradients need no autograd (_plain_step)
        self.plain = not (len(self.smoothed) or self.groups)

    def keep(self, rows: list[int]) -> _Terms:
        return _Terms([self.losses[r] for r in rows], self.tau.device, self.masked)

    def __call__(self, logits, y, teacher, epoch: int, inputs=None) -> torch.Tensor:
        """Each student's loss (K,) on the minibatch: logits (K, classes, rows) (forward), the teacher's
        (rows, classes); `inputs` = (the stack's parameters, the rows (augmented), the hidden activations,
        this minibatch's rows of the teacher's signals, their constants)."""
        # α·CE and Hinton's term (kdx.models.losses.kd_loss) for every student that has them, in one function
        loss = _CrossEntropyKL.apply(logits, y, teacher if self.hinton else None, self.ce_weight, self.tau,
                                     self.kl_weight, self.masked)
        if len(self.smoothed):  # torch's label_smoothing: (1 − ε)·CE + ε·mean over classes of −log p
            s = self.smoothed
            uniform = -F.log_softmax(logits[s], dim=1).mean((1, 2))
            loss = loss.index_add(0, s, self.alpha[s] * self.epsilon[s] * uniform)
        if self.groups:
            params, x, acts, batch, constants = inputs
        for term, rows, settings, gradients in self.groups:  # each objective's own term, for its students
            def input_gradients(w, rows=rows):
                return _input_gradients(params, acts, rows, w)

            step = Step(logits[rows], y, teacher, epoch, batch, constants, x[:, :-1],
                        input_gradients if gradients else None)
            loss = loss.index_add(0, rows, term(settings, step))
        return loss


def _adam(params, spec: MLPClassifier) -> Adam:
    return Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
