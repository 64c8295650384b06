"""Primitive operations, each forward value beside the rule for its gradient.

Every rule is written the way torch writes it (``derivatives.yaml``), in the same operation
order, so float32 gradients come out with the same bits. ``arith`` supplies the few kernels
whose bits depend on how torch's CPU code computes (sums, exp, sigmoid, matmul, sqrt).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import arith, dtypes
from . import tensor as _t
from .tensor import Node, Tensor


def record(value: np.ndarray, inputs: tuple[Tensor, ...], name: str, backward_fn) -> Tensor:
    """Wrap ``value`` in a tensor and, if any input needs a gradient, remember how it was made."""
    out = Tensor(value)
    if _t._grad_enabled and any(i.requires_grad for i in inputs):
        node = Node(name, inputs, backward_fn)
        node.shape = value.shape
        out._node = node
        out._requires_grad = True
    return out


# -- promotion and broadcasting ------------------------------------------------------------


def _result_dtype(a, b) -> np.dtype:
    """torch's type promotion: dimensioned tensors outrank 0-d tensors, which outrank numbers."""

    def rank(x):
        if isinstance(x, Tensor):
            return (2 if x.ndim > 0 else 1), x.value.dtype
        kind = np.bool_ if isinstance(x, bool) else np.int64 if isinstance(x, int) else np.float32
        return 0, np.dtype(kind)

    (ra, da), (rb, db) = rank(a), rank(b)
    ca, cb = dtypes.category(da), dtypes.category(db)
    if ca == cb:
        if ra == rb:
            return np.promote_types(da, db)
        return da if ra > rb else db
    hi_rank, hi_dtype = (ra, da) if ca > cb else (rb, db)
    if hi_rank == 0:  # a Python number of a higher category: torch's default dtype for it
        return np.dtype(np.float32 if max(ca, cb) == 2 else np.int64)
    return hi_dtype


def _operand(x, np_dtype: np.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x if x.value.dtype == np_dtype else cast(x, np_dtype)
    if isinstance(x, (numbers.Number, np.generic)):
        return Tensor(np.asarray(x, dtype=np_dtype))
    return Tensor(np.asarray(x, dtype=np_dtype))


def _binary_operands(a, b) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("at least one operand must be a tensor")
    common = _result_dtype(a, b)
    return _operand(a, common), _operand(b, common)


def sum_to(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reduce a broadcast gradient back to ``shape`` in one sum, as torch's ``sum_to`` does."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = arith.reduce_sum(grad, axis=axes, keepdims=True)
    return grad.reshape(shape)


# -- arithmetic ------------------------------------------------------------------------------


def add(a, b) -> Tensor:
    a, b = _binary_operands(a, b)
    out = a.value + b.value

    def backward(g):
        return sum_to(g, a.shape), sum_to(g, b.shape)

    return record(out, (a, b), "AddBackward0", backward)


def sub(a, b) -> Tensor:
    a, b = _binary_operands(a, b)
    out = a.value - b.value

    def backward(g):
        return sum_to(g, a.shape), sum_to(-g, b.shape)

    return record(out, (a, b), "SubBackward0", backward)


def mul(a, b) -> Tensor:
    a, b = _binary_operands(a, b)
    out = a.value * b.value

    def backward(g):
        ga = sum_to(g * b.value, a.shape) if a.requires_grad else None
        gb = sum_to(g * a.value, b.shape) if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), "MulBackward0", backward)


def div(a, b) -> Tensor:
    a, b = _binary_operands(a, b)
    if a.value.dtype.kind != "f":  # true division, like torch's `/`
        a, b = cast(a, np.float32), cast(b, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a.value / b.value

    def backward(g):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ga = sum_to(g / b.value, a.shape) if a.requires_grad else None
            # d(a/b)/db = -a / b**2, computed as torch does: -g * ((a / b) / b)
            gb = sum_to(-g * ((a.value / b.value) / b.value), b.shape) if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), "DivBackward0", backward)


def reciprocal(a: Tensor) -> Tensor:
    """``1 / a``; torch computes ``number / tensor`` as ``tensor.reciprocal() * number``."""
    a = _need_float(a, "reciprocal")
    one = a.value.dtype.type(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = one / a.value

    def backward(g):
        with np.errstate(invalid="ignore", over="ignore"):
            return (-g * (out * out),)  # torch: -grad * (result * result)

    return record(out, (a,), "ReciprocalBackward0", backward)


def neg(a: Tensor) -> Tensor:
    return record(-a.value, (a,), "NegBackward0", lambda g: (-g,))


def _pow_value(x: np.ndarray, exponent) -> np.ndarray:
    """``x ** exponent`` by the kernel torch picks for that exponent.

    torch copies for 1, fills ones for 0, and has exact short forms for 2, 3, -1, -2, 0.5
    (its sqrt) and -0.5 (one over a correctly rounded sqrt); only other exponents reach a
    general power function (SLEEF's, within 1 ulp, on whole vector blocks; C's ``pow`` in
    double on the rest, which is what is computed here).
    """
    one = x.dtype.type(1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if exponent == 0:
            return np.ones_like(x)
        if exponent == 1:
            return x.copy()
        if exponent == 2:
            return x * x
        if exponent == 3:
            return x * x * x
        if exponent == -1:
            return one / x
        if exponent == -2:
            return one / (x * x)
        if exponent == 0.5:
            return np.asarray(arith.kernels.sqrt(x))
        if exponent == -0.5:
            return one / np.sqrt(x)
        return np.power(x.astype(np.float64), float(exponent)).astype(x.dtype)


def pow(a: Tensor, exponent) -> Tensor:  # noqa: A001 - torch's name
    if isinstance(exponent, Tensor):
        raise NotImplementedError("tinymf's pow takes a number as the exponent, not a tensor")
    if not a.is_floating_point():
        return Tensor(np.power(a.value, exponent))
    out = _pow_value(a.value, exponent)

    def backward(g):
        if exponent == 0:
            return (np.zeros_like(g),)
        # torch: grad * (exponent * self.pow(exponent - 1)), the exponents in double
        with np.errstate(invalid="ignore", over="ignore"):
            return (g * (_pow_value(a.value, exponent - 1) * g.dtype.type(exponent)),)

    return record(out, (a,), "PowBackward0", backward)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``, split into dot, mv, mm or a batched product the way torch's matmul splits it.

    Which BLAS routine runs, on which memory layout, decides the order of the sums inside
    it; following torch's choice (folding batch dimensions into one mm where torch folds)
    lets its kernel, substituted in the tests, give the same bits here.
    """
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError("matmul takes two tensors")
    if a.value.dtype != b.value.dtype:
        raise RuntimeError(
            f"expected both matmul operands to have the same dtype, got {a.dtype} and {b.dtype}"
        )
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError("both arguments to matmul need to be at least 1-D")
    if a.ndim == 1 and b.ndim == 1:
        return _dot(a, b)
    if a.ndim == 2 and b.ndim == 1:
        return _mv(a, b)
    if a.ndim == 1 and b.ndim == 2:
        return squeeze(_mm(unsqueeze(a, 0), b), 0)
    if a.ndim == 2 and b.ndim == 2:
        return _mm(a, b)
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        # torch drops a batch of one that needs a gradient, so that the product folds (see
        # _should_fold) and the gradient is one mm rather than a sum over a broadcast batch
        if a.shape[0] == 1 and a.requires_grad:
            return matmul(squeeze(a, 0), b)
        if b.shape[0] == 1 and b.requires_grad:
            return matmul(a, squeeze(b, 0))
    if _should_fold(a, b):
        # the larger operand becomes one tall matrix: (..., n, k) -> (N, k)
        flip = b.ndim > a.ndim
        t1 = transpose(b, -1, -2) if flip else a
        t2 = (t(a) if a.ndim == 2 else a) if flip else b
        batch = tuple(t1.shape[:-1])
        folded = reshape(t1, int(np.prod(batch)), t1.shape[-1])
        if t2.ndim == 1:
            return reshape(_mv(folded, t2), *batch)
        out = reshape(_mm(folded, t2), *batch, t2.shape[1])
        if flip:
            out = transpose(out, -1, -2)
            out = record(np.ascontiguousarray(out.value), (out,), "CloneBackward0", lambda g: (g,))
        return out
    return _batched(a, b)


def _should_fold(a: Tensor, b: Tensor) -> bool:
    """torch's rule for computing a batched product as one mm (or mv) without copies."""
    a_larger = a.ndim >= b.ndim
    t1 = a.value if a_larger else np.swapaxes(b.value, -1, -2)
    small = b if a_larger else a
    if not (t1.ndim >= 3 and small.ndim <= 2):
        return False
    if small.requires_grad:
        return True  # saves a large expanded copy of the small operand in backward
    if a.ndim == 2:
        return False
    if t1.size == 0:
        return True
    strides = [s // t1.itemsize for s in t1.strides]
    return all(strides[i] == strides[i + 1] * t1.shape[i + 1] for i in range(t1.ndim - 2))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    out = np.asarray(arith.kernels.matmul(a.value, b.value))

    def backward(g):
        # torch: grad * other, one product per element
        ga = g * b.value if a.requires_grad else None
        gb = g * a.value if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), "DotBackward0", backward)


def _mv(a: Tensor, b: Tensor) -> Tensor:
    out = np.asarray(arith.kernels.matmul(a.value, b.value))

    def backward(g):
        # torch: grad.ger(vec) (single products) and self.t().mv(grad)
        ga = g[:, None] * b.value[None, :] if a.requires_grad else None
        gb = np.asarray(arith.kernels.matmul(a.value.T, g)) if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), "MvBackward0", backward)


def _mm(a: Tensor, b: Tensor) -> Tensor:
    out = np.asarray(arith.kernels.matmul(a.value, b.value))
    return record(out, (a, b), "MmBackward0", lambda g: _mm_backward(g, a, b))


def _batched(a: Tensor, b: Tensor) -> Tensor:
    """A broadcast batched product, built as torch builds it: each operand expanded to the
    common batch shape and folded to 3-d (a copy where no view can express that), one bmm,
    then the batch shape restored. The gradients then run through the same steps backwards,
    so a substituted kernel sees each product in the memory layout torch's sees."""
    n = a.shape[-2] if a.ndim > 1 else 1
    m1 = a.shape[-1]
    m2 = b.shape[-2] if b.ndim > 1 else b.shape[0]
    p = b.shape[-1] if b.ndim > 1 else 1
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    count = int(np.prod(batch, dtype=np.int64))
    a3 = reshape(expand(a, *batch, n, m1), count, n, m1)
    if b.ndim == 1:
        b3 = unsqueeze(reshape(expand(b, *batch, m2), count, m2), 2)
    else:
        b3 = reshape(expand(b, *batch, m2, p), count, m2, p)
    out = _bmm(a3, b3)
    if b.ndim == 1:
        out = squeeze(out, -1)
    shape = batch + ((n,) if a.ndim > 1 else ()) + ((p,) if b.ndim > 1 else ())
    return reshape(out, *shape)


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    mm = arith.kernels.matmul
    out = np.asarray(mm(a.value, b.value))

    def backward(g):
        # torch: grad.bmm(mat2.transpose(1, 2)) and self.transpose(1, 2).bmm(grad)
        ga = np.asarray(mm(g, np.swapaxes(b.value, 1, 2))) if a.requires_grad else None
        gb = np.asarray(mm(np.swapaxes(a.value, 1, 2), g)) if b.requires_grad else None
        return ga, gb

    return record(out, (a, b), "BmmBackward0", backward)


def _column_major(x: np.ndarray) -> bool:
    # torch's test in mm_mat1_backward / mm_mat2_backward, on the strides in elements
    return x.ndim == 2 and x.strides[0] == x.itemsize and x.strides[1] == x.itemsize * x.shape[0]


def _mm_backward(g: np.ndarray, a: Tensor, b: Tensor):
    """Gradients of ``a @ b``, each computed in the memory layout of the input it is for.

    torch does the same (``mm_mat1_backward`` / ``mm_mat2_backward``): for a transposed
    input such as ``weight.T`` in ``Linear``, the product is taken the other way round and
    transposed, which changes which BLAS call runs and so the order of its sums.
    """
    mm = arith.kernels.matmul
    ga = gb = None
    if a.requires_grad:
        if _column_major(a.value):
            ga = np.asarray(mm(b.value, g.T)).T
        else:
            ga = np.asarray(mm(g, b.value.T))
    if b.requires_grad:
        if _column_major(b.value):
            gb = np.asarray(mm(g.T, a.value)).T
        else:
            gb = np.asarray(mm(a.value.T, g))
    return ga, gb


# -- elementwise functions -------------------------------------------------------------------


def _need_float(a: Tensor, what: str) -> Tensor:
    if not a.is_floating_point():
        return cast(a, np.float32)
    return a


def exp(a: Tensor) -> Tensor:
    a = _need_float(a, "exp")
    out = arith.exp(a.value)
    return record(out, (a,), "ExpBackward0", lambda g: (g * out,))


def log(a: Tensor) -> Tensor:
    a = _need_float(a, "log")
    out = arith.log(a.value)  # MKL's vector log in torch: a vendor kernel

    def backward(g):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return (g / a.value,)

    return record(out, (a,), "LogBackward0", backward)


def sqrt(a: Tensor) -> Tensor:
    a = _need_float(a, "sqrt")
    with np.errstate(invalid="ignore"):
        out = arith.kernels.sqrt(a.value)

    def backward(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            # torch: grad / (2 * result)
            return (g / (2 * out),)

    return record(out, (a,), "SqrtBackward0", backward)


def sigmoid(a: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``; its gradient is ``g * (1 - s) * s`` from the saved output ``s``."""
    a = _need_float(a, "sigmoid")
    out = arith.sigmoid(a.value)
    return record(out, (a,), "SigmoidBackward0", lambda g: (arith.sigmoid_backward(g, out),))


def tanh(a: Tensor) -> Tensor:
    a = _need_float(a, "tanh")
    out = arith.tanh(a.value)  # MKL's vector tanh in torch: a vendor kernel
    one = np.asarray(1, dtype=out.dtype)
    # torch's tanh_backward, g * (1 - y * y): its AVX2 build fuses 1 - y * y into one FMA
    return record(out, (a,), "TanhBackward0", lambda g: (g * arith.mul_add(-out, out, one),))


def relu(a: Tensor) -> Tensor:
    # torch's clamp_min(x, 0) keeps x where x is not below 0: -0 stays -0, NaN stays NaN
    out = np.where(a.value < 0, np.zeros((), a.value.dtype), a.value)
    # torch's threshold_backward: the gradient passes where the output is positive
    zero = np.zeros((), dtype=a.value.dtype)
    return record(out, (a,), "ReluBackward0", lambda g: (np.where(out <= 0, zero, g),))


def abs(a: Tensor) -> Tensor:  # noqa: A001 - torch's name
    out = np.abs(a.value)
    return record(out, (a,), "AbsBackward0", lambda g: (g * np.sign(a.value),))


def clamp(a: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - torch's names
    # bounds in the tensor's type; like torch's std::max/std::min, an element equal to a bound
    # (+0 against -0) is kept as it is, and NaN stays NaN
    x = a.value
    lo = None if min is None else x.dtype.type(min)
    hi = None if max is None else x.dtype.type(max)
    out = x if lo is None else np.where(x < lo, lo, x)
    out = out if hi is None else np.where(hi < out, hi, out)

    def backward(g):
        keep = np.ones(a.shape, dtype=bool)
        if lo is not None:
            keep &= x >= lo
        if hi is not None:
            keep &= x <= hi
        return (np.where(keep, g, np.zeros((), g.dtype)),)

    return record(out, (a,), "ClampBackward1", backward)


# -- reductions --------------------------------------------------------------------------------


def _axes(a: Tensor, dim) -> tuple[int, ...] | None:
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    nd = max(a.ndim, 1)
    out = []
    for d in dims:
        if not -nd <= d < nd:
            raise IndexError(
                f"dimension out of range (expected to be in range of [{-nd}, {nd - 1}], got {d})"
            )
        out.append(d % nd)
    return tuple(out)


def _expand_back(g: np.ndarray, a: Tensor, axes, keepdim: bool) -> np.ndarray:
    """A sum's gradient as torch makes it: unsqueezed where the sum dropped dimensions, then
    expanded, a broadcast view that kernels read with its (zero) strides."""
    if a.ndim and axes is not None and not keepdim:
        for d in sorted(axes):
            g = _unsqueeze_array(g, d)
    return _expand_array(g, a.shape)


def sum(a: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:  # noqa: A001
    axes = _axes(a, axis if dim is None else dim)
    value = a.value if a.ndim else a.value.reshape(())
    if value.dtype.kind in "bui":
        out = np.sum(value.astype(np.int64), axis=axes if a.ndim else None, keepdims=keepdim)
    else:
        out = arith.reduce_sum(value, axis=axes if a.ndim else None, keepdims=keepdim)

    def backward(g):
        return (_expand_back(g, a, axes, keepdim),)

    return record(np.asarray(out), (a,), "SumBackward1" if axes else "SumBackward0", backward)


def mean(a: Tensor, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
    if not a.is_floating_point():
        raise RuntimeError(
            f"mean(): could not infer output dtype. Input dtype must be floating point, "
            f"got {a.dtype}; call .float() first"
        )
    axes = _axes(a, axis if dim is None else dim)
    out = arith.mean(a.value, axis=axes if a.ndim else None, keepdims=keepdim)
    n = a.value.size if axes is None or a.ndim == 0 else int(np.prod([a.shape[i] for i in axes]))

    def backward(g):
        # torch: sum's gradient, divided by the number of elements averaged
        return (np.asarray(_expand_back(g, a, axes, keepdim), order="C") / g.dtype.type(n),)

    return record(np.asarray(out), (a,), "MeanBackward1" if axes else "MeanBackward0", backward)


def amax(a: Tensor, dim=None, keepdim: bool = False, *, largest: bool = True):
    if _t._grad_enabled and a.requires_grad:
        raise NotImplementedError(
            "tinymf's max/min have no gradient; call them on tensor.detach() or under no_grad()"
        )
    f, arg = (np.max, np.argmax) if largest else (np.min, np.argmin)
    if dim is None:
        return Tensor(np.asarray(f(a.value)))
    values = f(a.value, axis=dim, keepdims=keepdim)
    idx = arg(a.value, axis=dim)
    if keepdim:
        idx = np.expand_dims(idx, dim)
    from collections import namedtuple

    return namedtuple("max" if largest else "min", "values indices")(
        Tensor(np.asarray(values)), Tensor(np.asarray(idx, dtype=np.int64))
    )


# -- shapes and indexing -----------------------------------------------------------------------


def reshape(a: Tensor, *shape) -> Tensor:
    shape = _t._shape_arg(shape) if shape and not isinstance(shape[0], int) else shape
    out = _torch_reshape(a.value, tuple(int(s) for s in shape))
    return record(out, (a,), "ViewBackward0", lambda g: (_torch_reshape(g, a.shape),))


def _torch_reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x.reshape(shape)`` with the strides torch gives the result.

    NumPy and torch agree on when a reshape can be a view, but not on the strides of its
    size-1 dimensions, and a matrix kernel reads those strides to choose its memory order.
    """
    if x.size == 0 or x.ndim == 0:
        return x.reshape(shape)
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    strides = _view_strides(x.shape, x.strides, shape)
    if strides is None:  # no view can express it: torch copies into a contiguous tensor
        return np.ascontiguousarray(x).reshape(shape)
    return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=x.flags.writeable)


def _view_strides(old_shape, old_strides, new_shape) -> tuple[int, ...] | None:
    """The strides of ``new_shape`` as a view of memory laid out as ``old_shape`` with
    ``old_strides`` (at least 1-d), or None where no view fits: torch's ``computeStride``.

    Runs of dimensions that are contiguous with each other (size-1 dimensions never break
    a run) can be re-cut at will; each new dimension takes the stride of its place in a run.
    """
    new = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    base = old_strides[-1]
    tensor_numel = view_numel = 1
    for d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[d]
        if d == 0 or (old_shape[d - 1] != 1 and old_strides[d - 1] != tensor_numel * base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new[view_d] = view_numel * base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base = old_strides[d - 1]
                tensor_numel = view_numel = 1
    return None if view_d != -1 else tuple(new)


def permute(a: Tensor, *dims) -> Tensor:
    dims = _t._shape_arg(dims) if dims and not isinstance(dims[0], int) else dims
    out = np.transpose(a.value, dims)
    inverse = np.argsort(dims)
    return record(out, (a,), "PermuteBackward0", lambda g: (np.transpose(g, inverse),))


def transpose(a: Tensor, dim0: int, dim1: int) -> Tensor:
    out = np.swapaxes(a.value, dim0, dim1)
    return record(out, (a,), "TransposeBackward0", lambda g: (np.swapaxes(g, dim0, dim1),))


def t(a: Tensor) -> Tensor:
    if a.ndim > 2:
        raise RuntimeError("t() expects a tensor with <= 2 dimensions")
    return record(a.value.T, (a,), "TBackward0", lambda g: (g.T,))


def numpy_T(a: Tensor) -> Tensor:  # noqa: N802 - torch's name for .T
    return permute(a, *reversed(range(a.ndim))) if a.ndim > 1 else a


def squeeze(a: Tensor, dim=None) -> Tensor:
    if dim is not None and a.ndim and a.shape[dim] != 1:
        return a
    out = np.squeeze(a.value, axis=dim)
    ones = [d for d in range(a.ndim) if a.shape[d] == 1 and (dim is None or d == dim % a.ndim)]

    def backward(g):
        # torch puts the dimensions back one unsqueeze at a time
        for d in ones:
            g = _unsqueeze_array(g, d)
        return (g,)

    return record(out, (a,), "SqueezeBackward0", backward)


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    dim = dim % (a.ndim + 1)
    out = _unsqueeze_array(a.value, dim)
    return record(out, (a,), "UnsqueezeBackward0", lambda g: (np.squeeze(g, axis=dim),))


def _unsqueeze_array(x: np.ndarray, dim: int) -> np.ndarray:
    """``x`` with a new size-1 axis at ``dim``, strided as torch strides it (kernels read
    strides, even those of size-1 dimensions)."""
    stride = x.itemsize if dim == x.ndim else x.shape[dim] * x.strides[dim]
    return np.lib.stride_tricks.as_strided(
        x, x.shape[:dim] + (1,) + x.shape[dim:], x.strides[:dim] + (stride,) + x.strides[dim:],
        writeable=x.flags.writeable,
    )


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if a.ndim == 0:
        return reshape(a, 1)
    s, e = start_dim % a.ndim, end_dim % a.ndim
    shape = a.shape[:s] + (int(np.prod(a.shape[s : e + 1])),) + a.shape[e + 1 :]
    return reshape(a, *shape)


def expand(a: Tensor, *shape) -> Tensor:
    shape = _t._shape_arg(shape) if shape and not isinstance(shape[0], int) else shape
    lead = len(shape) - a.ndim
    target = tuple(a.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    out = _expand_array(a.value, target)
    return record(out, (a,), "ExpandBackward0", lambda g: (sum_to(g, a.shape),))


def _expand_array(x: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    """A read-only broadcast view of ``x`` as ``target``, strided as torch's ``expand``."""
    view = np.broadcast_to(x, target)  # checks the shapes; its size-1 strides become 0
    lead = len(target) - x.ndim
    # torch keeps the stride of every dimension that keeps its size, even a size of 1
    strides = tuple(
        x.strides[i - lead] if i >= lead and x.shape[i - lead] == n else view.strides[i]
        for i, n in enumerate(target)
    )
    return np.lib.stride_tricks.as_strided(view, target, strides, writeable=False)


def _index_key(key):
    if isinstance(key, tuple):
        return tuple(_index_key(k) for k in key)
    if isinstance(key, Tensor):
        return key.value
    if isinstance(key, list):
        return np.asarray(key)
    return key


def _is_advanced(key) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) for k in parts)


def getitem(a: Tensor, key) -> Tensor:
    key = _index_key(key)
    out = a.value[key]
    advanced = _is_advanced(key)

    def backward(g):
        grad = np.zeros(a.shape, dtype=g.dtype)
        if advanced:
            np.add.at(grad, key, g)  # repeated indices add up, in order
        else:
            grad[key] = g
        return (grad,)

    if advanced:
        name = "IndexBackward0"
    elif isinstance(key, (int, np.integer)):
        name = "SelectBackward0"
    else:
        name = "SliceBackward0"
    return record(np.asarray(out), (a,), name, backward)


def setitem(a: Tensor, key, value) -> None:
    if a.requires_grad and _t._grad_enabled:
        raise NotImplementedError(
            "tinymf does not record in-place assignment into a tensor that requires grad; "
            "assign under tinymf.no_grad() or build a new tensor"
        )
    a.value[_index_key(key)] = value.value if isinstance(value, Tensor) else value


def cat(tensors, dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along an existing dimension (``torch.cat`` / ``torch.concat``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat expects a non-empty sequence of tensors")
    dim = axis if axis is not None else dim
    common = tensors[0].value.dtype
    for x in tensors[1:]:
        common = np.promote_types(common, x.value.dtype)
    tensors = [cast(x, common) if x.value.dtype != common else x for x in tensors]
    out = np.concatenate([x.value for x in tensors], axis=dim)
    bounds = np.cumsum([x.shape[dim] for x in tensors])[:-1]

    def backward(g):
        return tuple(np.ascontiguousarray(p) for p in np.split(g, bounds, axis=dim))

    return record(out, tuple(tensors), "CatBackward0", backward)


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    out = np.stack([x.value for x in tensors], axis=dim)

    def backward(g):
        return tuple(np.asarray(np.take(g, i, axis=dim), order="C") for i in range(len(tensors)))

    return record(out, tuple(tensors), "StackBackward0", backward)


def cast(a: Tensor, np_dtype) -> Tensor:
    np_dtype = np.dtype(np_dtype)
    if a.value.dtype == np_dtype:
        return a
    out = a.value.astype(np_dtype)
    source = a.value.dtype
    if np_dtype.kind != "f":
        return Tensor(out)
    return record(out, (a,), "ToCopyBackward0", lambda g: (g.astype(source),))


def where(condition: Tensor, a, b) -> Tensor:
    a, b = _binary_operands(a, b)
    cond = condition.value.astype(bool)
    out = np.where(cond, a.value, b.value)
    zero = np.zeros((), dtype=out.dtype)

    def backward(g):
        return sum_to(np.where(cond, g, zero), a.shape), sum_to(np.where(cond, zero, g), b.shape)

    return record(out, (a, b), "WhereBackward0", backward)


def unique(a: Tensor, sorted: bool = True, return_inverse: bool = False,  # noqa: A002
           return_counts: bool = False, dim=None):
    values, inverse, counts = np.unique(a.value, return_inverse=True, return_counts=True)
    out = [Tensor(values)]
    if return_inverse:
        out.append(Tensor(inverse.reshape(a.shape).astype(np.int64)))
    if return_counts:
        out.append(Tensor(counts.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def _compare(op):
    def compare(a, b) -> Tensor:
        a, b = _binary_operands(a, b)
        return Tensor(op(a.value, b.value))

    return compare


eq, ne = _compare(np.equal), _compare(np.not_equal)
lt, le = _compare(np.less), _compare(np.less_equal)
gt, ge = _compare(np.greater), _compare(np.greater_equal)


# -- in place, outside the graph ---------------------------------------------------------------


def _inplace(a: Tensor, new: np.ndarray) -> Tensor:
    if a.requires_grad and a.is_leaf and _t._grad_enabled:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation; "
            "wrap it in tinymf.no_grad()"
        )
    np.copyto(a.value, new, casting="unsafe")
    return a


def install(cls: type) -> None:
    """Attach the operations above to ``Tensor`` as methods and operators."""

    def scalar_first(fn):
        return lambda self, other: fn(other, self)

    cls.__add__ = cls.add = add
    cls.__radd__ = add
    cls.__sub__ = cls.sub = sub
    cls.__rsub__ = scalar_first(sub)
    cls.__mul__ = cls.mul = mul
    cls.__rmul__ = mul
    cls.__truediv__ = cls.div = cls.divide = div
    cls.__rtruediv__ = lambda self, other: mul(reciprocal(self), other)  # as torch does
    cls.reciprocal = reciprocal
    cls.__neg__ = cls.neg = neg
    cls.__pow__ = cls.pow = pow
    cls.__matmul__ = cls.matmul = cls.mm = matmul
    cls.__rmatmul__ = scalar_first(matmul)
    cls.__eq__, cls.__ne__ = eq, ne
    cls.__lt__, cls.__le__, cls.__gt__, cls.__ge__ = lt, le, gt, ge
    cls.__getitem__ = getitem
    cls.__setitem__ = setitem
    cls.__abs__ = cls.abs = abs
    cls.exp, cls.log, cls.sqrt = exp, log, sqrt
    cls.sigmoid, cls.tanh, cls.relu, cls.clamp = sigmoid, tanh, relu, clamp
    cls.sum, cls.mean = sum, mean
    cls.max = lambda self, dim=None, keepdim=False: amax(self, dim, keepdim)
    cls.min = lambda self, dim=None, keepdim=False: amax(self, dim, keepdim, largest=False)
    cls.argmax = lambda self, dim=None: Tensor(np.asarray(np.argmax(self.value, axis=dim)))
    cls.argmin = lambda self, dim=None: Tensor(np.asarray(np.argmin(self.value, axis=dim)))
    cls.reshape = cls.view = reshape
    cls.permute, cls.transpose, cls.t = permute, transpose, t
    cls.T = property(numpy_T)
    cls.squeeze, cls.unsqueeze, cls.flatten, cls.expand = squeeze, unsqueeze, flatten, expand
    cls.unique = unique
    cls.float = lambda self: cast(self, np.float32)
    cls.double = lambda self: cast(self, np.float64)
    cls.long = lambda self: cast(self, np.int64)
    cls.int = lambda self: cast(self, np.int32)
    cls.bool = lambda self: cast(self, np.bool_)
    cls.to = _to
    cls.type = lambda self, dtype=None: self.dtype if dtype is None else _to(self, dtype)
    cls.clone = lambda self: record(self.value.copy(), (self,), "CloneBackward0", lambda g: (g,))
    cls.contiguous = lambda self: self
    cls.allclose = lambda self, other, rtol=1e-5, atol=1e-8: bool(
        np.allclose(self.value, np.asarray(other), rtol=rtol, atol=atol)
    )
    cls.equal = lambda self, other: bool(np.array_equal(self.value, np.asarray(other)))
    cls.zero_ = lambda self: _inplace(self, 0)
    cls.fill_ = lambda self, v: _inplace(self, v)
    cls.copy_ = lambda self, src: _inplace(self, np.asarray(src))
    cls.add_ = lambda self, o, alpha=1: _inplace(self, (self + o * alpha).value)
    cls.sub_ = lambda self, o, alpha=1: _inplace(self, (self - o * alpha).value)
    cls.mul_ = lambda self, o: _inplace(self, (self * o).value)
    cls.div_ = lambda self, o: _inplace(self, (self / o).value)
    cls.uniform_ = _uniform_
    cls.normal_ = _normal_


def _to(self: Tensor, *args, **kwargs) -> Tensor:
    target = kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, (dtypes.dtype, type, np.dtype)):
            target = arg
    if target is None:
        return self  # a device: tinymf lives on the CPU only
    return cast(self, dtypes.to_numpy_dtype(target))


def _uniform_(self: Tensor, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
    from . import random

    return _inplace(self, random.uniform(self.shape, a, b, self.value.dtype, generator))


def _normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    from . import random

    return _inplace(self, random.normal(self.shape, mean, std, self.value.dtype, generator))


install(Tensor)
