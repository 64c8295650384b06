"""tinymf: a small, readable, torch-compatible autograd framework in NumPy.

``import tinymf as torch`` runs the lecture's matrix-factorization code unchanged and gives
the same numbers; every claim of agreement with torch is a test in ``tests/``.
"""

from __future__ import annotations

from . import arith, dtypes
from . import functional as _F
from . import random as _random
from .dtypes import Size, dtype
from .tensor import (
    Tensor,
    arange,
    as_tensor,
    empty,
    enable_grad,
    eye,
    from_numpy,
    full,
    is_grad_enabled,
    is_tensor,
    no_grad,
    ones,
    ones_like,
    set_grad_enabled,
    tensor,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

float32 = float = dtypes.float32  # noqa: A001 - torch's names
float64 = double = dtypes.float64
float16 = half = dtypes.float16
int64 = long = dtypes.int64
int32 = int = dtypes.int32  # noqa: A001
int16, int8, uint8 = dtypes.int16, dtypes.int8, dtypes.uint8
bool = dtypes.bool_  # noqa: A001

Generator = _random.Generator
manual_seed = _random.manual_seed
initial_seed = _random.initial_seed


def _size(size) -> tuple:
    from .tensor import _shape_arg

    return _shape_arg(size)


def rand(*size, dtype=None, generator=None, requires_grad: bool = False) -> Tensor:
    """Uniform on [0, 1): the same numbers as ``torch.rand`` after the same ``manual_seed``."""
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else dtypes.float32.np
    value = _random.rand(_size(size), np_dtype, generator)
    return Tensor(value, requires_grad=requires_grad)


def randn(*size, dtype=None, generator=None, requires_grad: bool = False) -> Tensor:
    """Standard normal: the same numbers as ``torch.randn`` after the same ``manual_seed``."""
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else dtypes.float32.np
    value = _random.randn(_size(size), np_dtype, generator)
    return Tensor(value, requires_grad=requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return Tensor(_random.randint(low, high, tuple(size), generator))


def randperm(n: int, *, generator=None) -> Tensor:
    return Tensor(_random.randperm(n, generator))


cat = concat = concatenate = _F.cat
stack = _F.stack
where = _F.where
unique = _F.unique
add, sub, mul, div = _F.add, _F.sub, _F.mul, _F.div
matmul = mm = _F.matmul
exp, log, sqrt, sigmoid, tanh, relu = _F.exp, _F.log, _F.sqrt, _F.sigmoid, _F.tanh, _F.relu
abs, clamp = _F.abs, _F.clamp  # noqa: A001
sum, mean = _F.sum, _F.mean  # noqa: A001
reshape, transpose, flatten, squeeze, unsqueeze = (
    _F.reshape, _F.transpose, _F.flatten, _F.squeeze, _F.unsqueeze,
)


def numel(t: Tensor) -> int:
    return t.numel()


def allclose(a, b, rtol: float = 1e-05, atol: float = 1e-08) -> bool:
    import numpy as np

    return _bool(np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol))


def equal(a, b) -> bool:
    import numpy as np

    return _bool(np.array_equal(np.asarray(a), np.asarray(b)))


get_num_threads = arith.get_num_threads
set_num_threads = arith.set_num_threads  # the chunking of sums follows torch's thread count


def get_default_dtype() -> dtype:
    return dtypes.float32


import builtins as _builtins  # noqa: E402

_bool = _builtins.bool

from . import autograd, nn, optim  # noqa: E402

__all__ = [
    "abs", "add", "allclose", "arange", "arith", "as_tensor", "autograd", "bool", "cat", "clamp",
    "concat", "concatenate", "div", "double", "dtype", "dtypes", "empty", "enable_grad", "equal",
    "exp", "eye", "flatten", "float", "float16", "float32", "float64", "from_numpy", "full",
    "Generator", "get_default_dtype", "get_num_threads", "half", "initial_seed", "int", "int16",
    "int32", "int64", "int8", "is_grad_enabled", "is_tensor", "log", "long", "manual_seed",
    "matmul", "mean", "mm", "mul", "nn", "no_grad", "numel", "ones", "ones_like", "optim", "rand",
    "randint", "randn", "randperm", "relu", "reshape", "set_grad_enabled", "set_num_threads",
    "sigmoid", "Size", "sqrt", "squeeze", "stack", "sub", "sum", "tanh", "Tensor", "tensor",
    "transpose", "uint8", "unique", "unsqueeze", "where", "zeros", "zeros_like",
]
