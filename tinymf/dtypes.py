"""Data types and shapes, named and printed as torch names them."""

from __future__ import annotations

import numpy as np


class dtype:  # noqa: N801 - lower case like torch.dtype
    """A tensor element type: a thin, named wrapper around a NumPy dtype."""

    def __init__(self, name: str, np_dtype: np.dtype) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)

    @property
    def is_floating_point(self) -> bool:
        return self.np.kind == "f"

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    def __repr__(self) -> str:
        return f"tinymf.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


float32 = dtype("float32", np.float32)
float64 = dtype("float64", np.float64)
float16 = dtype("float16", np.float16)
int64 = dtype("int64", np.int64)
int32 = dtype("int32", np.int32)
int16 = dtype("int16", np.int16)
int8 = dtype("int8", np.int8)
uint8 = dtype("uint8", np.uint8)
bool_ = dtype("bool", np.bool_)

_ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)
_FROM_NP = {d.np: d for d in _ALL}


def _by_name(name: str) -> dtype:
    return {d.name: d for d in _ALL}[name]


def from_numpy_dtype(np_dtype) -> dtype:
    """The tinymf dtype of a NumPy dtype; unsupported ones raise ``TypeError``."""
    try:
        return _FROM_NP[np.dtype(np_dtype)]
    except KeyError:
        raise TypeError(f"tinymf has no dtype for NumPy {np.dtype(np_dtype)}") from None


def to_numpy_dtype(d) -> np.dtype:
    """Accept a tinymf dtype, a NumPy dtype or a Python type; return the NumPy dtype."""
    if isinstance(d, dtype):
        return d.np
    if d is float:
        return np.dtype(np.float32)
    if d is int:
        return np.dtype(np.int64)
    if d is bool:
        return np.dtype(np.bool_)
    return from_numpy_dtype(d).np


def category(np_dtype: np.dtype) -> int:
    """0 for bool, 1 for integers, 2 for floating point: torch's promotion categories."""
    return {"b": 0, "i": 1, "u": 1, "f": 2}[np.dtype(np_dtype).kind]


class Size(tuple):
    """A tensor shape: a tuple that prints like ``torch.Size``."""

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"tinymf.Size({list(self)})"
