"""Adam, computed in the same order as torch's single-tensor CPU implementation."""

from __future__ import annotations

import numpy as np

from .. import arith
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), with torch's options and torch's order of operations.

    For each parameter ``p`` with gradient ``g``, at step ``t``::

        g   <- -g                             if maximize
        g   <- g + weight_decay * p           if weight_decay != 0
        m   <- m + (1 - beta1) * (g - m)      (a lerp, as torch writes it)
        v   <- beta2 * v + (1 - beta2) * g * g
        v^  <- max(v^, v) if amsgrad else v
        den <- sqrt(v^) / sqrt(1 - beta2**t) + eps
        p   <- p + (-lr / (1 - beta1**t)) * m / den

    The bias corrections and the step size are Python floats (doubles) as in torch; every
    array operation is float32 for float32 parameters, each Python scalar rounded to the
    parameter's type where torch's kernel receives it, with fused multiply-adds where
    torch's AVX2 kernels fuse them. That order is what makes float32 results bit-equal.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if fused:
            raise NotImplementedError(
                "fused Adam rounds differently from torch's default Adam; tinymf reproduces "
                "the default (single-tensor) one only"
            )
        # foreach computes the same bits as the single-tensor path on CPU: accepted, ignored
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            maximize=maximize,
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
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        param = p.value
        f = param.dtype.type  # each Python scalar enters its kernel as the parameter's type
        g = p.grad.value

        state = self.state.get(p)
        if state is None:
            state = self.state[p] = {
                "step": 0,
                "exp_avg": np.zeros_like(param),
                "exp_avg_sq": np.zeros_like(param),
            }
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        before = param.copy() if self.step_observers else None

        if group["maximize"]:
            g = -g
        if wd != 0:
            g = arith.mul_add(param, f(wd), g)
        state["step"] += 1
        t = state["step"]

        # m <- lerp(m, g, 1 - beta1), in the form torch picks for the weight's size
        w = f(1 - beta1)
        d = g - m
        if abs(w) < 0.5:
            m[...] = arith.mul_add(w, d, m)
        else:
            # torch's scalar loop computes g - d * (1 - w); its vector loop, over whole blocks
            # of 64 bytes, g + (w - 1) * d: the same number, but a zero result can take the
            # other sign (beta1 = 0 with a -0 gradient)
            m[...] = arith.mul_add(-d, f(1) - w, g)
            body = m.size - m.size % (64 // m.itemsize)
            m.reshape(-1)[:body] = arith.mul_add(
                w - f(1), d.reshape(-1)[:body], g.reshape(-1)[:body]
            )
        # v <- v * beta2 + (1 - beta2) * g * g: a mul kernel, then addcmul
        v[...] = arith.mul_add(f(1 - beta2) * g, g, v * f(beta2))

        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        # torch writes ``** 0.5``: C's pow, which differs from sqrt in the last bit of about
        # 1 in 1000 doubles, and float64 parameters see that bit
        bias_correction2_sqrt = bias_correction2**0.5
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = v
        denom = arith.kernels.sqrt(second) / f(bias_correction2_sqrt) + f(eps)
        # addcdiv: p + (value * m) / denom, rounded three times as torch's kernel does
        update = (f(-step_size) * m) / denom
        param[...] = param + update

        if self.step_observers:
            self._observe(p, {
                "step": t, "param_before": before, "grad": g.copy(), "exp_avg": m.copy(),
                "exp_avg_sq": v.copy(), "bias_correction1": bias_correction1,
                "bias_correction2": bias_correction2, "step_size": step_size,
                "denom": denom, "update": update, "param_after": param.copy(),
            })
