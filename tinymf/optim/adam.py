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
            params = [p for p in group["params"] if p.grad is not None]
            if self._can_update_together(params, group):
                self._update_together(params, group)
            else:
                for p in params:
                    self._update(p, group)
        return loss

    def _can_update_together(self, params, group) -> bool:
        """Whether one pass over the group's parameters laid end to end gives the same bits.

        Every operation of a step is elementwise, with the same scalars for the whole group,
        so it can run once over all of them: for parameters of one dtype, at the same step,
        whose lerp takes the form that no vector block changes (``1 - beta1 < 0.5``). The
        ``sqrt`` kernel still sees each parameter on its own, as torch's does.
        """
        if len(params) < 2 or self.step_observers:
            return False
        dtype = params[0].value.dtype
        if abs(dtype.type(1 - group["betas"][0])) >= 0.5:  # the weight as the kernel sees it
            return False
        steps = {self.state[p]["step"] if p in self.state else 0 for p in params}
        return len(steps) == 1 and all(
            p.value.dtype == dtype and p.grad.value.dtype == dtype
            and p.grad.value.shape == p.value.shape for p in params
        )

    def _update_together(self, params, group) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        amsgrad = group["amsgrad"]
        f = params[0].value.dtype.type
        for p in params:
            if p not in self.state:
                self.state[p] = self._fresh_state(p.value, amsgrad)
        states = [self.state[p] for p in params]
        ends = np.cumsum([p.value.size for p in params])
        pieces = [slice(e - p.value.size, e) for p, e in zip(params, ends, strict=True)]

        def flat(arrays):
            return np.concatenate([a.reshape(-1) for a in arrays])

        param = flat([p.value for p in params])
        g = flat([p.grad.value for p in params])
        m = flat([s["exp_avg"] for s in states])
        v = flat([s["exp_avg_sq"] for s in states])

        if group["maximize"]:
            g = -g
        if wd != 0:
            g = arith.mul_add(param, f(wd), g)
        for s in states:
            s["step"] += 1
        t = states[0]["step"]

        m = arith.mul_add(f(1 - beta1), g - m, m)
        v = arith.mul_add(f(1 - beta2) * g, g, v * f(beta2))
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        step_size = lr / bias_correction1
        if amsgrad:
            second = np.maximum(flat([s["max_exp_avg_sq"] for s in states]), v)
        else:
            second = v
        root = np.empty_like(second)
        for piece, p in zip(pieces, params, strict=True):
            root[piece] = arith.kernels.sqrt(second[piece].reshape(p.value.shape)).reshape(-1)
        denom = root / f(bias_correction2_sqrt) + f(eps)
        param = param + (f(-step_size) * m) / denom

        for piece, p, s in zip(pieces, params, states, strict=True):
            shape = p.value.shape
            p.value[...] = param[piece].reshape(shape)
            s["exp_avg"][...] = m[piece].reshape(shape)
            s["exp_avg_sq"][...] = v[piece].reshape(shape)
            if amsgrad:
                s["max_exp_avg_sq"][...] = second[piece].reshape(shape)

    @staticmethod
    def _fresh_state(param, amsgrad: bool) -> dict:
        state = {"step": 0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
        if amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param)
        return state

    def _update(self, p, group) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        param = p.value
        f = param.dtype.type  # each Python scalar enters its kernel as the parameter's type
        g = p.grad.value

        state = self.state.get(p)
        if state is None:
            state = self.state[p] = self._fresh_state(param, group["amsgrad"])
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
            # of 64 bytes of each thread's range, g + (w - 1) * d: the same number, but a
            # zero result can take the other sign (beta1 = 0 with a -0 gradient)
            m[...] = arith.mul_add(-d, f(1) - w, g)
            block = 64 // m.itemsize
            flat_m, flat_d, flat_g = m.reshape(-1), d.reshape(-1), g.reshape(-1)
            for begin, end in arith.thread_ranges(m.size):
                body = slice(begin, end - (end - begin) % block)
                flat_m[body] = arith.mul_add(w - f(1), flat_d[body], flat_g[body])
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
