"""The layer and loss operations: one-hot, linear, embedding, sigmoid, relu, MSE.

``one_hot`` keeps the class indices and only builds the dense matrix if something asks for
its values, and ``linear`` applied to a one-hot tensor is a row gather forward and an
index-accumulate backward: the lecture's code then runs on catalogues where the dense
one-hot matrix would not fit in memory, with the same numbers.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import arith
from ..functional import cast, matmul, record, relu, reshape, sigmoid, sum_to
from ..tensor import Tensor

__all__ = ["one_hot", "linear", "embedding", "mse_loss", "sigmoid", "relu"]


class OneHot(Tensor):
    """A one-hot matrix stored as its indices; its values appear only when read."""

    def __init__(self, indices: np.ndarray, num_classes: int, np_dtype=np.int64) -> None:
        self.indices = indices
        self.num_classes = num_classes
        self._dtype = np.dtype(np_dtype)
        self._dense: np.ndarray | None = None
        super().__init__(np.empty((0,), dtype=self._dtype))

    @property
    def value(self) -> np.ndarray:
        if self._dense is None:
            dense = np.zeros(self.indices.shape + (self.num_classes,), dtype=self._dtype)
            np.put_along_axis(dense, self.indices[..., None], 1, axis=-1)
            self._dense = dense
        return self._dense

    @property
    def shape(self):
        from ..dtypes import Size

        return Size(self.indices.shape + (self.num_classes,))

    @property
    def dtype(self):
        from ..dtypes import from_numpy_dtype

        return from_numpy_dtype(self._dtype)

    @property
    def ndim(self) -> int:
        return self.indices.ndim + 1

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.indices.size * self.num_classes)

    def __len__(self) -> int:
        return self.indices.shape[0]

    def is_floating_point(self) -> bool:
        return self._dtype.kind == "f"

    def _retyped(self, np_dtype) -> OneHot:
        return OneHot(self.indices, self.num_classes, np_dtype)

    def float(self) -> OneHot:
        return self._retyped(np.float32)

    def double(self) -> OneHot:
        return self._retyped(np.float64)

    def long(self) -> OneHot:
        return self._retyped(np.int64)

    def to(self, *args, **kwargs):
        target = kwargs.get("dtype", next((a for a in args if not isinstance(a, str)), None))
        if target is None:
            return self
        from ..dtypes import to_numpy_dtype

        return self._retyped(to_numpy_dtype(target))


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """Class indices ``(n,)`` to a one-hot ``(n, num_classes)`` int64 tensor, like torch's."""
    idx = tensor.value if isinstance(tensor, Tensor) else np.asarray(tensor)
    if idx.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensors (int64)")
    if idx.size and idx.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    if num_classes == -1:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    elif idx.size and idx.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return OneHot(np.asarray(idx, dtype=np.int64, order="C"), int(num_classes))


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias``."""
    if isinstance(input, OneHot) and input.ndim == 2 and input.is_floating_point():
        out = _onehot_linear(input, weight)
    else:
        if input.value.dtype != weight.value.dtype:
            raise RuntimeError(
                f"mat1 and mat2 must have the same dtype, but got {input.dtype} and {weight.dtype}"
            )
        x = input.value
        if bias is not None and x.ndim not in (0, 2) and x.size and x.flags.c_contiguous:
            # torch runs a contiguous input as rows through one addmm, then views the result
            rows = reshape(input, -1, input.shape[-1])
            out = linear(rows, weight, bias)
            return reshape(out, *input.shape[:-1], weight.shape[0])
        out = matmul(input, weight.T)
    if bias is not None:
        out = out + bias
        x = input.value
        if weight.shape[-1] == 0:
            # an empty product: torch's addmm returns the bias itself, so a -0 stays -0
            out.value[...] = np.broadcast_to(bias.value, out.shape)
        elif arith.kernels.addmm is not None and x.ndim == 2:
            # torch's addmm starts its sums from the bias: only the sign of a zero tells it
            # from product + bias
            out.value[...] = arith.kernels.addmm(bias.value, x, weight.value.T)
    return out


def _onehot_linear(x: OneHot, weight: Tensor) -> Tensor:
    if x.num_classes != weight.shape[1]:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied "
            f"({x.shape[0]}x{x.num_classes} and {weight.shape[1]}x{weight.shape[0]})"
        )
    if x._dtype != weight.value.dtype:
        raise RuntimeError(
            f"mat1 and mat2 must have the same dtype, but got {x.dtype} and {weight.dtype}"
        )
    idx = x.indices
    if arith.kernels.matmul is not np.matmul and arith.kernels.onehot_weight_grad is None:
        # a substituted kernel (torch's sgemm in the tests) sees the dense product, as torch
        # does; the gather below differs from it only in the sign of a zero and where the
        # weight holds inf or NaN (0 * inf makes the dense product's other rows NaN)
        out = np.asarray(arith.kernels.matmul(x.value, weight.value.T))
    else:
        # one 1 per row: the product is the selected column of the weight
        out = np.ascontiguousarray(weight.value.T[idx])

    def backward(g):
        if arith.kernels.onehot_weight_grad is not None:
            return None, arith.kernels.onehot_weight_grad(g, idx, x.num_classes)
        if arith.kernels.matmul is not np.matmul:
            # a substituted matmul (torch's sgemm in the tests) sees the dense product, taken
            # as torch takes it for a transposed weight: (g.T @ x), already (out, in)
            return None, np.asarray(arith.kernels.matmul(g.T, x.value))
        # rows added in input order; repeated indices accumulate
        grad_t = _scatter_rows(g, idx, weight.shape[1])
        return None, np.ascontiguousarray(grad_t.T)

    return record(out, (x, weight), "MmBackward0", backward)


def embedding(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """Rows of ``weight`` picked by integer ``input``; the gradient adds back in input order."""
    idx = input.value
    if idx.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have an integer type")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise IndexError(f"index out of range in self (size {weight.shape[0]})")
    out = np.take(weight.value, idx, axis=0)

    def backward(g):
        return None, _scatter_rows(g.reshape(-1, weight.shape[1]), idx.reshape(-1), weight.shape[0])

    return record(out, (input, weight), "EmbeddingBackward0", backward)


def _scatter_rows(g: np.ndarray, idx: np.ndarray, n_rows: int) -> np.ndarray:
    """``out[idx[n]] += g[n]`` for n in order, into a zero ``(n_rows, width)`` array.

    One ``np.add.at`` over the flat view with element indices: the same additions in the same
    order as adding whole rows, several times faster for wide rows.
    """
    width = g.shape[1]
    out = np.zeros(n_rows * width, dtype=g.dtype)
    flat = (idx.astype(np.int64)[:, None] * width + np.arange(width)).reshape(-1)
    np.add.at(out, flat, g.reshape(-1))
    return out.reshape(n_rows, width)


def _reduction_check(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction!r} is not a valid value for reduction")


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error; warns and broadcasts like torch when the sizes differ."""
    _reduction_check(reduction)
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target, dtype=input.value.dtype))
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=3,
        )
        shape = np.broadcast_shapes(input.shape, target.shape)
        input, target = _expand(input, shape), _expand(target, shape)
    if target.value.dtype != input.value.dtype:
        target = cast(target, input.value.dtype)

    a, b = input.value, target.value
    diff = a - b
    sq = diff * diff
    if reduction == "mean":
        out, norm = arith.mean(sq), 2.0 / sq.size if sq.size else float("nan")
    elif reduction == "sum":
        out, norm = arith.reduce_sum(sq), 2.0
    else:
        out, norm = sq, 2.0
    norm = a.dtype.type(norm)  # torch hands 2/N to the kernel as a scalar of the input's type

    def backward(g):
        ga = (diff * norm) * g if input.requires_grad else None
        gb = ((b - a) * norm) * g if target.requires_grad else None
        return ga, gb

    return record(np.asarray(out), (input, target), "MseLossBackward0", backward)


def _expand(t: Tensor, shape) -> Tensor:
    if t.shape == tuple(shape):
        return t
    out = np.broadcast_to(t.value, shape)
    return record(out, (t,), "ExpandBackward0", lambda g: (sum_to(g, t.shape),))
