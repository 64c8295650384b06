"""Checking gradients against finite differences, as ``torch.autograd.gradcheck`` does.

A hand-written gradient rule can be wrong in ways no single number reveals: a missing
transpose, a sum over the wrong axis, a sign. ``gradcheck`` compares the whole Jacobian that
``backward()`` produces with one measured by nudging every input element up and down.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .tensor import Tensor, no_grad

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(RuntimeError):
    """The analytical and numerical Jacobians disagree (or backward misbehaves)."""


def _as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else tuple(x) if isinstance(x, list) else (x,)


def _outputs(func: Callable, inputs: Sequence) -> tuple[Tensor, ...]:
    out = _as_tuple(func(*inputs))
    for o in out:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck expects the function to return tensors, got {type(o)}")
    return out


def _is_differentiable(t: Tensor) -> bool:
    return t.is_floating_point()


def gradcheck(
    func: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Tensor | Sequence,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    r"""Compare the gradients ``backward()`` computes with central finite differences.

    For every input tensor with ``requires_grad=True`` and every floating-point output, the
    numerical Jacobian, column by column ``(f(x + eps e_k) - f(x - eps e_k)) / (2 eps)``, must
    match the analytical one, row by row the gradient that ``backward()`` sends from the
    one-hot output gradient ``e_j``: ``|analytical - numerical| <= atol + rtol * |numerical|``
    everywhere, as ``torch.allclose`` tests. Backward must also give the same bits when run
    twice. Outputs that do not require a gradient must not change with the inputs.

    Use float64 inputs: in float32 the finite differences themselves are too coarse for the
    default tolerances (a warning says so, as torch's does). Returns ``True`` when all checks
    pass; otherwise raises :class:`GradcheckError`, or returns ``False`` if
    ``raise_exception`` is false.
    """
    inputs = _as_tuple(inputs)
    # differentiate with respect to fresh leaves sharing the inputs' memory, so the inputs'
    # own .grad (and the graph they may hang from) are left as they were
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError(
            "gradcheck expects at least one input tensor to require gradient, "
            "but none of them have requires_grad=True."
        )
    leaves = list(inputs)
    for i in wrt:
        if inputs[i].value.dtype != np.float64:
            warnings.warn(
                f"Input #{i} requires gradient and is not a double precision floating point. "
                "The precision of eps may be insufficient to compute the numerical gradient; "
                "convert it with .double().",
                UserWarning,
                stacklevel=2,
            )
        leaves[i] = inputs[i].detach().requires_grad_(True)

    try:
        numerical = _numerical_jacobians(func, leaves, wrt, eps)
        outputs = _outputs(func, leaves)
        analytical = _analytical_jacobians(outputs, leaves, wrt)
        again = _analytical_jacobians(outputs, leaves, wrt)
        for o, out in enumerate(outputs):
            for k, i in enumerate(wrt):
                num = numerical[o][k]
                if not (out.requires_grad and _is_differentiable(out)):
                    if np.any(num != 0):
                        raise GradcheckError(
                            f"Numerical gradient for function expected to be zero: output {o} "
                            f"does not require grad but changes with input {i}"
                        )
                    continue
                ana = analytical[o][k]
                if not np.allclose(ana, num, rtol=rtol, atol=atol, equal_nan=False):
                    raise GradcheckError(
                        f"Jacobian mismatch for output {o} with respect to input {i},\n"
                        f"numerical:{num}\nanalytical:{ana}\n"
                    )
                if not np.array_equal(ana, again[o][k], equal_nan=True):
                    raise GradcheckError(
                        "Backward is not reentrant, i.e., running backward with same input "
                        "and grad_output multiple times gives different values, although "
                        "analytical gradient matches numerical gradient."
                    )
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _numerical_jacobians(
    func: Callable, leaves: list, wrt: list[int], eps: float
) -> list[list[np.ndarray]]:
    """``J[o][k]``: d(output o) / d(input wrt[k]) as an (input size, output size) array."""
    with no_grad():
        outputs = _outputs(func, leaves)
    jac = [[np.zeros((leaves[i].numel(), o.numel())) for i in wrt] for o in outputs]
    for k, i in enumerate(wrt):
        x = leaves[i].value
        for e in range(x.size):
            orig = x.flat[e]
            with no_grad():
                x.flat[e] = orig - eps
                below = [o.value.astype(np.float64) for o in _outputs(func, leaves)]
                x.flat[e] = orig + eps
                above = [o.value.astype(np.float64) for o in _outputs(func, leaves)]
                x.flat[e] = orig
            for o, (lo, hi) in enumerate(zip(below, above, strict=True)):
                jac[o][k][e] = ((hi - lo) / (2 * eps)).reshape(-1)
    return jac


def _reachable_leaves(outputs: Sequence[Tensor]) -> list[Tensor]:
    leaves, seen, stack = [], set(), [o for o in outputs if o.requires_grad]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.grad_fn is None:
            leaves.append(t)
        else:
            stack.extend(x for x in t.grad_fn.inputs if x.requires_grad)
    return leaves


def _analytical_jacobians(
    outputs: Sequence[Tensor], leaves: list, wrt: list[int]
) -> list[list[np.ndarray]]:
    """``J[o][k]`` from backward(), one output element (one row of the Jacobian) at a time."""
    jac = [[np.zeros((leaves[i].numel(), o.numel())) for i in wrt] for o in outputs]
    # backward() adds into .grad of every leaf it reaches: keep and restore those of others
    touched = _reachable_leaves(outputs)
    saved = [t.grad for t in touched]
    try:
        for o, out in enumerate(outputs):
            if not (out.requires_grad and _is_differentiable(out)):
                continue
            for j in range(out.numel()):
                seed = np.zeros(out.shape, dtype=out.value.dtype)
                seed.flat[j] = 1
                for t in touched:
                    t.grad = None
                out.backward(Tensor(seed), retain_graph=True)
                for k, i in enumerate(wrt):
                    grad = leaves[i].grad
                    if grad is None:
                        continue  # not reached: a zero gradient, as torch's allow_unused gives
                    if grad.shape != leaves[i].shape:
                        raise GradcheckError(
                            f"Gradient for input {i} has shape {tuple(grad.shape)}, "
                            f"expected {tuple(leaves[i].shape)}"
                        )
                    jac[o][k][:, j] = grad.value.astype(np.float64).reshape(-1)
    finally:
        for t, g in zip(touched, saved, strict=True):
            t.grad = g
    return jac
