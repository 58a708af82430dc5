"""MLPs stacked: K models' layers as one tensor each, trained by one minibatch pass for all.

The layout, forward pass and written-out backward pass that kdx.distill.stacked trains students with (K students
on the same rows, each with its own loss), and `train_on_rows`: K models of the same settings, each trained with
hard labels on its own rows of one table, with dropout. That trains the out-of-fold teachers of a seed together
(kdx.distill.labels; one by one they would pass K times over nearly the same rows) and, K = 1, a teacher
(MLPClassifier.fit_teacher): a fold teacher is the same computation as a teacher trained alone
(tests/test_fold_teachers.py).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from kdx import progress
from kdx.errors import TrainingError
from kdx.models.adam import Adam, RowAdam
from kdx.models.nets import build_mlp, divergence, dropout_mask, mask_stream


def augment(x: torch.Tensor) -> torch.Tensor:
    """Rows with a column of ones appended: the first layer's bias is then part of its matmul."""
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)


def layout(linears: list[torch.nn.Linear]) -> list[torch.Tensor]:
    """One model's layers as the stack keeps them: the first layer (in + 1, out), its bias the last row
    (against the ones column of `augment`); hidden layers' weights (in, out) and biases (1, out), for
    `a @ W + b`; the output layer class-major, weight (classes, in) and bias (classes, 1), for
    `W @ aᵀ + b`, so that the logits come out (classes, rows) (see `forward`)."""
    params = []
    for j, lin in enumerate(linears):
        weight, bias = lin.weight.detach(), lin.bias.detach()
        if j == 0:
            params.append(torch.cat([weight.T, bias[None, :]]))
        elif j == len(linears) - 1:
            params += [weight.clone(), bias[:, None].clone()]
        else:
            params += [weight.T.contiguous(), bias[None, :].clone()]
    return params


@torch.no_grad()
def unlayout(params: list[torch.Tensor], linears: list[torch.nn.Linear]) -> None:
    """The inverse of `layout`: one model's tensors in the stack's layout copied into its layers."""
    for j, lin in enumerate(linears):
        if j == 0:
            weight, bias = params[0][:-1].T, params[0][-1]
        elif j == len(linears) - 1:
            weight, bias = params[2 * j - 1], params[2 * j][:, 0]
        else:
            weight, bias = params[2 * j - 1].T, params[2 * j][0]
        lin.weight.copy_(weight.cpu())
        lin.bias.copy_(bias.cpu())


def stacked(spec, n_in: int, n_out: int, count: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """`count` copies, (count, ...) each in the stack's layout, of the network an MLP of settings `spec` starts
    from (seeded by spec.seed: the initialization one-by-one training gives it)."""
    torch.manual_seed(spec.seed)
    template = build_mlp(n_in, spec.hidden, n_out).to(device)
    linears = [m for m in template if isinstance(m, torch.nn.Linear)]
    return [p.unsqueeze(0).repeat(count, *([1] * p.dim())).requires_grad_() for p in layout(linears)]


def forward(params: list[torch.Tensor], x: torch.Tensor, acts: list | None = None,
            masks: list | None = None, inputs: list | None = None) -> torch.Tensor:
    """Logits (K, classes, rows) of the K stacked models, in `layout`, on the rows `x` (augmented): shared
    (rows, in + 1) or each model's own (K, rows, in + 1). `acts`, when given, receives each hidden layer's
    activations (after its ReLU). `masks`: each hidden layer's dropout multiplier (broadcast against its
    activations; kdx.models.nets.dropout_mask), with `inputs` receiving the layers' inputs after dropout (the
    backward pass needs both)."""
    # Shared rows as a stride-0 batch (no copy). The first layer's bias rides in its matmul instead of
    # being broadcast into the widest activation first (3 % faster a step, 2 and 31 students, measured A/B);
    # later biases are added inside the matmul; ReLU in place (the matmul's backward does not need its
    # output). The logits come out class-major: every softmax over classes then runs across rows (torch's
    # kernel over a last dimension of 2 classes does one short row at a time: 10x slower), and the output
    # layer's matmul is 3x faster that way round (measured, 31 students, batch 256).
    h = torch.bmm(x if x.dim() == 3 else x.expand(params[0].shape[0], -1, -1), params[0])
    if len(params) == 1:  # no hidden layer
        return h.transpose(1, 2).contiguous()
    for j in range(1, len(params), 2):
        a = torch.relu_(h)
        if acts is not None:
            acts.append(a)
        if masks is not None:
            a = a * masks[j // 2]
            inputs.append(a)
        if j == len(params) - 2:
            return torch.baddbmm(params[j + 1], params[j], a.transpose(1, 2))
        h = torch.baddbmm(params[j + 1], a, params[j])


def backward(params: list[torch.Tensor], x: torch.Tensor, acts: list[torch.Tensor], grad: torch.Tensor,
             masks: list | None = None, inputs: list | None = None) -> list[torch.Tensor]:
    """The gradient of every stacked parameter (`layout`) from the logits' (K, classes, rows), given the
    rows `x` (augmented, shared or per model) and what `forward` recorded (`acts`; with dropout, its `masks`
    and `inputs`): what autograd computes for `forward`, op for op (tests/test_stacked.py compares them)."""
    xt = x.transpose(-1, -2) if x.dim() == 3 else x.T.expand(len(grad), -1, -1)
    if len(params) == 1:  # no hidden layer: logits = (x @ W)ᵀ
        return [torch.bmm(xt, grad.transpose(1, 2))]
    inputs = acts if masks is None else inputs
    grads: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
    grads[-1] = grad.sum(2, keepdim=True)
    grads[-2] = torch.bmm(grad, inputs[-1])
    # ∂/∂(last hidden activations), (K, rows, units): as autograd computes it for `W @ aᵀ`, (Wᵀ @ grad)ᵀ, not
    # gradᵀ @ W — the same numbers, summed in another order by some CPUs' kernels (AMD EPYC's here)
    d = torch.bmm(params[-2].transpose(1, 2), grad).transpose(1, 2)
    for j in range(len(params) - 4, 0, -2):  # hidden layers, last first: relu(a @ params[j] + params[j + 1])
        layer = (j + 1) // 2
        if masks is not None:
            d = d * masks[layer]
        d = torch.ops.aten.threshold_backward(d, acts[layer], 0)
        grads[j + 1] = d.sum(1, keepdim=True)
        grads[j] = torch.bmm(inputs[layer - 1].transpose(1, 2), d)
        d = torch.bmm(d, params[j].transpose(1, 2))
    if masks is not None:
        d = d * masks[0]
    d = torch.ops.aten.threshold_backward(d, acts[0], 0)
    grads[0] = torch.bmm(xt, d)
    return grads


def validation_loss(params: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each stacked model's mean validation loss (K,) on the rows `X` (augmented): cross-entropy, or for one
    output (a regression's standardized target) the squared error; `chunk` rows at a time: the whole set's
    activations at once (31 students × 10k rows × 64 units: 81 MB) go through memory, a chunk's stay in cache
    (2x faster a pass, measured)."""
    total = torch.zeros(params[0].shape[0], dtype=X.dtype, device=X.device)
    with torch.no_grad():
        for start in range(0, len(X), chunk):
            logits = forward(params, X[start : start + chunk])
            rows = y[start : start + chunk]
            if logits.shape[1] == 1:
                total += (logits[:, 0] - rows).square().sum(1)
            else:
                total += F.cross_entropy(logits, rows.expand(len(logits), -1), reduction="none").sum(1)
    return total / len(X)


def compact(params: list[torch.Tensor], opt: Adam, keep: list[int]):
    """The stack without the models that stopped: their rows of every parameter and of Adam's state."""
    rows = torch.tensor(keep, device=params[0].device)
    new = [p.detach()[rows].clone().requires_grad_() for p in params]
    return new, opt.keep(new, rows)


class Selection:
    """Checkpoint selection and early stopping of each model of a stack, as MLPClassifier.fit does for one:
    its validation curve, its best epoch and that epoch's weights (its rows of the stack's parameters), and
    which models train on. `seconds`: each model's share of the pass (an epoch's time divided among the models
    that trained in it)."""

    def __init__(self, count: int, epochs: int, patience: int):
        self.epochs, self.patience = epochs, patience
        self.best, self.best_epoch, self.stale = [float("inf")] * count, [0] * count, [0] * count
        self.state: list[list[torch.Tensor] | None] = [None] * count
        self.curves: list[list[float]] = [[] for _ in range(count)]
        self.seconds = [0.0] * count

    def epoch(self, epoch: int, params: list[torch.Tensor], X_val: torch.Tensor, y_val: torch.Tensor,
              active: list[int], started: float, diverged) -> list[int]:
        """Close epoch `epoch` (begun at perf_counter `started`) of the stack rows `params` (row `row` is model
        `active[row]`): their validation losses on (X_val augmented, y_val), the checkpoints, the progress
        display. Returns the stack rows that train on; a non-finite loss raises
        TrainingError(`diverged(k, epoch)`), one line naming model k."""
        val = validation_loss(params, X_val, y_val).tolist()
        seconds = time.perf_counter() - started
        keep = []
        for row, k in enumerate(active):
            self.seconds[k] += seconds / len(active)
            if not np.isfinite(val[row]):
                raise TrainingError(diverged(k, epoch))
            self.curves[k].append(val[row])
            if val[row] < self.best[k]:
                self.best[k], self.best_epoch[k], self.stale[k] = val[row], epoch, 0
                self.state[k] = [p[row].detach().clone() for p in params]
                keep.append(row)
            else:
                self.stale[k] += 1
                if self.stale[k] < self.patience:
                    keep.append(row)
        progress.epoch(epoch, self.epochs)
        return keep

    def network(self, k: int, n_in: int, hidden, n_out: int, dropout: float = 0.0) -> torch.nn.Sequential:
        """Model k's network (kdx.models.nets.build_mlp) with its best epoch's weights, in eval mode."""
        net = build_mlp(n_in, hidden, n_out, dropout)
        unlayout(self.state[k], [m for m in net if isinstance(m, torch.nn.Linear)])
        return net.eval()

    def history(self, k: int, device: str, together: int) -> dict:
        return {"best_epoch": self.best_epoch[k], "epochs_run": len(self.curves[k]), "best_val_ce": self.best[k],
                "val_ce": self.curves[k], "train_device": device, "fit_seconds": self.seconds[k],
                "trained_together": together}


class _MaskStreams:
    """Each stacked model's dropout mask stream, as its MLPClassifier.fit draws it (one numpy PCG64 stream
    seeded by the model's seed, each step's masks in layer order). Models with the same seed draw the same
    masks while their minibatches have the same number of rows, so they share one stream and one mask; when
    their minibatch sizes part (a fold's last, shorter batch), each size gets its own copy of the stream."""

    def __init__(self, count: int, seed: int, p: float, widths: list[int]):
        shared = mask_stream(seed)
        self.streams, self.p, self.widths = [shared] * count, p, widths  # widths: the hidden layers'

    def masks(self, sizes: list[int], rows: int) -> list[torch.Tensor]:
        """Each hidden layer's multiplier, (1 | K, rows, width), for the models' minibatches of `sizes` rows
        (0: no minibatch this step, nothing drawn), padded to `rows`."""
        groups: dict[int, dict[int, list[int]]] = {}  # stream → minibatch size → stack rows
        for k, size in enumerate(sizes):
            groups.setdefault(id(self.streams[k]), {}).setdefault(size, []).append(k)
        draws = []  # (stream, size, stack rows)
        for parts in groups.values():
            stream = self.streams[next(iter(parts.values()))[0]]
            for n, (size, members) in enumerate(parts.items()):
                if n:  # the models that part from the others continue from a copy of the stream's state
                    stream = np.random.Generator(np.random.PCG64())
                    stream.bit_generator.state = self.streams[members[0]].bit_generator.state
                    for k in members:
                        self.streams[k] = stream
                if size:
                    draws.append((stream, size, members))
        out = []
        for width in self.widths:
            if len(draws) == 1 and len(draws[0][2]) == len(sizes) and draws[0][1] == rows:
                out.append(dropout_mask(draws[0][0], (rows, width), self.p)[None])
                continue
            mask = torch.zeros(len(sizes), rows, width)
            for stream, size, members in draws:
                mask[members, :size] = dropout_mask(stream, (size, width), self.p)
            out.append(mask)
        return out

    def keep(self, rows: list[int]) -> None:
        self.streams = [self.streams[r] for r in rows]


def train_on_rows(spec, X: np.ndarray, y: np.ndarray, row_sets: list, X_val: np.ndarray, y_val: np.ndarray,
                  n_classes: int, names: list[str] | None = None) -> list[tuple[torch.nn.Sequential, dict]]:
    """Train len(row_sets) MLPs of the settings `spec` (an MLPClassifier's: hidden, dropout, lr, weight_decay,
    epochs, batch_size, patience, seed) on the CPU, model k on rows `row_sets[k]` of (X, y) (None: every row)
    with hard labels, early-stopped on the shared validation rows; each model's (network, history), as
    MLPClassifier.fit trains one (up to float rounding: tests/test_fold_teachers.py). n_classes = 1: a regression
    of the standardized target (squared error).

    Each step gathers every model's minibatch from X (no copy of a model's rows); a model whose row set is
    shorter has a shorter last minibatch (padded with rows of weight 0) or none (it skips the step, Adam
    included). Each history records `trained_together` and `fit_seconds`, its share of the pass. A model's
    numbers depend on the others in the stack only through rounding (the batched matmuls multiply each model's
    matrices alone, but a kernel may block a batch of K otherwise than a batch of one)."""
    count = len(row_sets)
    regression = n_classes == 1
    params = stacked(spec, X.shape[1], n_classes, count)  # each model's init, as one by one
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32 if regression else torch.long)
    Xv = augment(torch.as_tensor(X_val, dtype=torch.float32))
    yv = torch.as_tensor(y_val, dtype=torch.float32 if regression else torch.long)
    sets = [torch.arange(len(X)) if r is None else torch.as_tensor(np.asarray(r, dtype=np.int64)) for r in row_sets]
    if any(len(r) == 0 for r in sets):
        raise ValueError("train_on_rows: every model needs at least one training row")
    orders = [torch.Generator().manual_seed(spec.seed) for _ in sets]  # each model's minibatch order
    with_masks = spec.dropout > 0 and len(spec.hidden) > 0  # build_mlp puts dropout after hidden layers only
    streams = _MaskStreams(count, spec.seed, spec.dropout, list(spec.hidden)) if with_masks else None
    opt = RowAdam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    active = list(range(count))  # model index of each stack row
    selection = Selection(count, spec.epochs, spec.patience)

    def diverged(k: int, epoch: int) -> str:
        said = divergence(epoch, None, X, None, 1.0, spec.lr)
        return f"{names[k]} (trained in a stacked pass): {said}" if names else said

    batch = spec.batch_size
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        perms = [sets[k][torch.randperm(len(sets[k]), generator=orders[row])] for row, k in enumerate(active)]
        for start in range(0, max(len(p) for p in perms), batch):
            _fold_step(params, opt, streams, Xt, yt, [p[start : start + batch] for p in perms], batch, regression)
        keep = selection.epoch(epoch, params, Xv, yv, active, started, diverged)
        if not keep:
            break
        if len(keep) < len(active):
            params, opt = compact(params, opt, keep)
            orders = [orders[row] for row in keep]
            if streams is not None:
                streams.keep(keep)
            active = [active[row] for row in keep]

    return [(selection.network(k, X.shape[1], spec.hidden, n_classes, spec.dropout),
             selection.history(k, "cpu", count)) for k in range(count)]


def _fold_step(params, opt: RowAdam, streams: _MaskStreams | None, Xt: torch.Tensor, yt: torch.Tensor,
               batches: list[torch.Tensor], batch: int, regression: bool) -> None:
    """One minibatch step of every stacked model that has a minibatch (`batches[k]`, global row indices;
    empty: the model sits this step out)."""
    sizes = [len(b) for b in batches]
    rows = max(sizes)
    if min(sizes) == rows:
        idx, weight = torch.stack(batches), None
    else:  # pad with the first row, weighted 0: the gradient is the mean over each model's own rows
        idx = torch.stack([torch.cat([b, b.new_zeros(rows - len(b))]) for b in batches])
        weight = torch.zeros(len(batches), rows)
        for k, size in enumerate(sizes):
            weight[k, :size] = 1.0 / size if size else 0.0
    x = augment(Xt[idx])
    target = yt[idx]
    masks = None if streams is None else streams.masks(sizes, rows)
    acts: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    with torch.no_grad():
        logits = forward(params, x, acts, masks, inputs)
        if regression:  # ∂ mean (z − y)² = 2 (z − y) / rows
            grad = 2 * (logits - target[:, None, :])
        else:  # ∂ mean CE = (softmax − onehot) / rows
            grad = torch.softmax(logits, dim=1).sub_(torch.zeros_like(logits).scatter_(1, target[:, None], 1.0))
        grad = grad / rows if weight is None else grad * weight[:, None, :]
        for p, g in zip(params, backward(params, x, acts, grad, masks, inputs)):
            p.grad = g
    opt.step([k for k, size in enumerate(sizes) if size])
