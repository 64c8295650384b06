"""In-place initialisers, drawing from the same generator as torch's for the same seed."""

from __future__ import annotations

import math

import numpy as np

from .. import random
from ..tensor import Tensor, no_grad


def _fill(t: Tensor, values: np.ndarray) -> Tensor:
    with no_grad():
        np.copyto(t.value, values)
    return t


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    return _fill(tensor, random.uniform(tensor.shape, a, b, tensor.value.dtype, generator))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    return _fill(tensor, random.normal(tensor.shape, mean, std, tensor.value.dtype, generator))


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, np.full(tensor.shape, val, dtype=tensor.value.dtype))


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, generator=None) -> Tensor:
    """Uniform in ``±gain * sqrt(3 / fan_in)`` with the leaky-ReLU gain for slope ``a``."""
    if tensor.ndim < 2:
        raise ValueError("kaiming_uniform_ needs a tensor with at least 2 dimensions")
    fan_in = tensor.shape[1] * int(np.prod(tensor.shape[2:], dtype=np.int64))
    bound = random.kaiming_uniform_bound(fan_in, a)
    return uniform_(tensor, -bound, bound, generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    receptive = int(np.prod(tensor.shape[2:], dtype=np.int64))
    fan_in, fan_out = tensor.shape[1] * receptive, tensor.shape[0] * receptive
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)
