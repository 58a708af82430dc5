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
        beta1, beta2 = self.betas
        step = [torch.tensor(float(self.steps), device=p.device) for p in self.params]
        torch._fused_adam_(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [], step,
                           lr=self.lr, beta1=beta1, beta2=beta2, weight_decay=self.weight_decay, eps=self.eps,
                           amsgrad=False, maximize=False)

    def keep(self, params: list[torch.Tensor], rows: torch.Tensor) -> Adam:
        """The optimizer of `params` (rows `rows` of this one's parameters), its moments and step carried over."""
        new = Adam(params, self.lr, self.weight_decay, self.betas, self.eps)
        new.exp_avg = [m[rows].clone() for m in self.exp_avg]
        new.exp_avg_sq = [v[rows].clone() for v in self.exp_avg_sq]
        new.steps = self.steps
        return new
