"""Adam with L2 weight decay: the fused kernel behind torch.optim.Adam(fused=True), one op per step for all
parameters, bit for bit its update (tests/test_stacked.py).

kdx's own because torch.optim's first step imports torch._dynamo (measured 1.1–1.3 s here), more than the
whole training of a smoke run.
"""

from __future__ import annotations

import torch


class Adam:
    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        self._update(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq,
                     [self.steps] * len(self.params))

    def _update(self, params, grads, exp_avg, exp_avg_sq, steps: list[int]) -> None:
        """The fused update of `params` (each at its own step count) in place."""
        beta1, beta2 = self.betas
        device = params[0].device
        torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [],
                           [torch.tensor(float(n), device=device) for n in steps],
                           lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=self.weight_decay, eps=self.eps,
                           amsgrad=False, maximize=False)

    def keep(self, params: list[torch.Tensor], rows: torch.Tensor) -> Adam:
        """The optimizer of `params` (rows `rows` of this one's parameters), its moments and step carried over."""
        new = type(self)(params, self.lr, self.weight_decay, self.betas, self.eps)
        new.exp_avg = [m[rows].clone() for m in self.exp_avg]
        new.exp_avg_sq = [v[rows].clone() for v in self.exp_avg_sq]
        new.steps = self.steps
        return new


class RowAdam(Adam):
    """Adam over stacked parameters (K, ...) whose K rows are separate models, each with its own step count:
    a model that has no minibatch at some step (the stack's models train on row sets of different sizes)
    is left out of that step, as if it trained alone (`row_steps` counts each model's steps; Adam's `steps` is
    unused). Every element's update depends only on its own values and its model's step, so stepping a model's
    rows as views is its own Adam's update."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr, weight_decay, betas, eps)
        self.row_steps = [0] * len(self.params[0])

    @torch.no_grad()
    def step(self, rows: list[int] | None = None) -> None:
        """One step of the models in `rows` (every row when None)."""
        rows = list(range(len(self.row_steps))) if rows is None else rows
        for r in rows:
            self.row_steps[r] += 1
        if len(rows) == len(self.row_steps) and len(set(self.row_steps)) == 1:  # all in step: whole tensors
            return self._update(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq,
                                [self.row_steps[0]] * len(self.params))
        pick = [(j, r) for j in range(len(self.params)) for r in rows]
        self._update([self.params[j][r] for j, r in pick], [self.params[j].grad[r] for j, r in pick],
                     [self.exp_avg[j][r] for j, r in pick], [self.exp_avg_sq[j][r] for j, r in pick],
                     [self.row_steps[r] for _, r in pick])

    def keep(self, params: list[torch.Tensor], rows: torch.Tensor) -> RowAdam:
        new = super().keep(params, rows)
        new.row_steps = [self.row_steps[r] for r in rows.tolist()]
        return new
