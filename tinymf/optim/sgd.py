"""Stochastic gradient descent, in torch's order of operations."""

from __future__ import annotations

import numpy as np

from .. import arith
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""SGD with momentum, dampening, Nesterov and weight decay, as torch computes it::

        g   <- -g                                   if maximize
        g   <- g + weight_decay * p                 if weight_decay != 0
        buf <- g (first step), else momentum * buf + (1 - dampening) * g
        g   <- g + momentum * buf if nesterov else buf      (when momentum != 0)
        p   <- p - lr * g

    Python scalars are rounded to the parameter's type where torch's kernels take them, and
    multiply-adds are fused where torch's AVX2 kernels fuse them, so float32 is bit-equal.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if fused:
            raise NotImplementedError("tinymf reproduces torch's default (unfused) SGD only")
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov, maximize=maximize,
        )
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p, group) -> None:
        param = p.value
        f = param.dtype.type
        g = p.grad.value
        momentum, dampening = group["momentum"], group["dampening"]
        before = param.copy() if self.step_observers else None

        if group["maximize"]:
            g = -g
        if group["weight_decay"] != 0:
            g = arith.mul_add(param, f(group["weight_decay"]), g)
        if momentum != 0:
            state = self.state.setdefault(p, {})
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf[...] = arith.mul_add(g, f(1 - dampening), buf * f(momentum))
            g = arith.mul_add(buf, f(momentum), g) if group["nesterov"] else buf
        new = arith.mul_add(g, f(-group["lr"]), param)
        update = new - param if self.step_observers else None
        param[...] = new

        if self.step_observers:
            self._observe(p, {"param_before": before, "grad": p.grad.value.copy(),
                              "update": update, "param_after": param.copy()})
