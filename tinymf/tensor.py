"""The tensor, the recorded graph, and reverse-mode differentiation.

A :class:`Tensor` holds a NumPy array. When an operation sees an input that requires a
gradient, it records a :class:`Node` on its output: which inputs it read and how to turn the
gradient of its output into gradients for those inputs. ``backward()`` walks the nodes from
the last one made to the first, which is the order torch's engine uses, so gradients that meet
at one tensor are added in the same order and give the same bits.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from . import dtypes
from .dtypes import Size, dtype

_grad_enabled = True
_sequence = itertools.count()

# functions called as observer(node, grad_of_output, grads_of_inputs) during backward;
# the learner's tools use this to show what backward does, step by step
backward_observers: list[Callable] = []


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


def no_grad() -> _GradMode:
    """Context manager (or decorator) inside which no graph is recorded."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


def set_grad_enabled(mode: bool) -> _GradMode:
    return _GradMode(mode)


class Node:
    """One recorded operation: its inputs and the rule that sends a gradient back to them.

    ``backward_fn(grad)`` returns one gradient (a NumPy array, or ``None``) per input.
    """

    __slots__ = ("_name", "inputs", "backward_fn", "seq", "shape", "freed")

    def __init__(self, name: str, inputs: Sequence[Tensor], backward_fn: Callable) -> None:
        self._name = name
        self.inputs = tuple(inputs)
        self.backward_fn = backward_fn
        self.seq = next(_sequence)
        self.shape: tuple[int, ...] = ()
        self.freed = False

    def name(self) -> str:
        return self._name

    @property
    def next_functions(self) -> tuple:
        return tuple(
            (t.grad_fn if t.grad_fn is not None else ("AccumulateGrad", t), 0)
            if t.requires_grad
            else (None, 0)
            for t in self.inputs
        )

    def __repr__(self) -> str:
        return f"<{self._name} object>"


class Tensor:
    """An n-dimensional array that can remember how it was computed."""

    __array_priority__ = 1000  # make ndarray + Tensor defer to Tensor.__radd__

    def __init__(self, value, *, requires_grad: bool = False) -> None:
        self._value = value if isinstance(value, np.ndarray) else np.asarray(value)
        dtypes.from_numpy_dtype(self._value.dtype)  # reject dtypes tinymf does not know
        self._node: Node | None = None
        self._requires_grad = False
        self.grad: Tensor | None = None
        self._retains_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -- what a tensor is ------------------------------------------------------------------

    @property
    def value(self) -> np.ndarray:
        """The NumPy array behind this tensor (shared, not copied)."""
        return self._value

    @property
    def shape(self) -> Size:
        return Size(self.value.shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.value.shape[dim]

    @property
    def dtype(self) -> dtype:
        return dtypes.from_numpy_dtype(self.value.dtype)

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def dim(self) -> int:
        return self.value.ndim

    def numel(self) -> int:
        return int(self.value.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.value.shape[0]

    @property
    def device(self) -> str:
        return "cpu"

    def is_floating_point(self) -> bool:
        return self.value.dtype.kind == "f"

    # -- the graph -------------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if self._node is not None and not flag:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables; use .detach()"
            )
        if flag and not self.is_floating_point():
            raise RuntimeError(
                f"only tensors of floating point dtype can require gradients, not {self.dtype}"
            )
        self._requires_grad = bool(flag)
        return self

    @property
    def grad_fn(self) -> Node | None:
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after ``backward()``, as torch does."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that has requires_grad=False")
        self._retains_grad = True

    @property
    def data(self) -> Tensor:
        """The same values, detached from the graph (shares memory, like torch)."""
        return Tensor(self.value)

    @data.setter
    def data(self, other: Tensor) -> None:
        self._value = other.value if isinstance(other, Tensor) else np.asarray(other)

    def detach(self) -> Tensor:
        return Tensor(self.value)

    def detach_(self) -> Tensor:
        self._node = None
        self._requires_grad = False
        return self

    def backward(
        self, gradient: Tensor | None = None, retain_graph: bool = False
    ) -> None:
        """Add d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient."""
        backward(self, gradient, retain_graph=retain_graph)

    # -- leaving tinymf --------------------------------------------------------------------

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise RuntimeError(
                "can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()"
            )
        return self.value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        # lets pandas, matplotlib and NumPy read tensors directly, graph or not
        out = self.value
        if dtype is not None:
            out = out.astype(dtype, copy=False)
        return out.copy() if copy else out

    def item(self):
        if self.value.size != 1:
            raise RuntimeError(
                f"a tensor with {self.value.size} elements cannot be converted to a Python scalar"
            )
        return self.value.reshape(()).item()

    def tolist(self):
        return self.value.tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.value.dtype.kind not in "iu" or self.value.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __bool__(self) -> bool:
        if self.value.size != 1:
            raise RuntimeError("the truth value of a tensor with more than one value is ambiguous")
        return bool(self.item())

    def __format__(self, spec: str) -> str:
        if self.value.ndim == 0 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __repr__(self) -> str:
        from ._format import tensor_repr

        return tensor_repr(self)

    def __hash__(self) -> int:
        return id(self)

    def __iter__(self) -> Iterator[Tensor]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self)))

    def __deepcopy__(self, memo) -> Tensor:
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._value = self.value.copy()
        out._node = None
        out.grad = None if self.grad is None else Tensor(self.grad.value.copy())
        return out


def _as_grad_array(t: Tensor, gradient) -> np.ndarray:
    if gradient is None:
        if t.value.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        return np.ones_like(t.value)
    g = gradient.value if isinstance(gradient, Tensor) else np.asarray(gradient)
    if g.shape != t.value.shape:
        raise RuntimeError(f"gradient has shape {g.shape} but the output has {t.value.shape}")
    return g.astype(t.value.dtype, copy=False)


def backward(tensor: Tensor, gradient=None, retain_graph: bool = False) -> None:
    """Reverse-mode differentiation from ``tensor`` through its recorded graph."""
    if not tensor.requires_grad:
        raise RuntimeError(
            "element 0 of tensors does not require grad and does not have a grad_fn"
        )
    seed = _as_grad_array(tensor, gradient)
    if tensor.grad_fn is None:
        _accumulate(tensor, seed)
        return

    # every node reachable from the output; torch runs the most recently made first
    nodes: dict[int, Node] = {}
    retained: dict[int, Tensor] = {}
    stack = [tensor]
    while stack:
        t = stack.pop()
        node = t.grad_fn
        if t._retains_grad and node is not None:
            retained[id(node)] = t
        if node is None or id(node) in nodes:
            continue
        nodes[id(node)] = node
        stack.extend(i for i in node.inputs if i.requires_grad)

    pending: dict[int, np.ndarray] = {id(tensor.grad_fn): seed}
    for node in sorted(nodes.values(), key=lambda n: n.seq, reverse=True):
        grad = pending.pop(id(node), None)
        if grad is None:
            continue
        if node.freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time; "
                "pass retain_graph=True to the first backward() if you need to"
            )
        if id(node) in retained:
            _accumulate(retained[id(node)], grad)
        input_grads = node.backward_fn(grad)
        for obs in backward_observers:
            obs(node, grad, input_grads)
        for inp, g in zip(node.inputs, input_grads, strict=True):
            if g is None or not inp.requires_grad:
                continue
            if inp.grad_fn is None:
                _accumulate(inp, g)
            else:
                key = id(inp.grad_fn)
                pending[key] = g if key not in pending else pending[key] + g
        if not retain_graph:
            node.freed = True


def _accumulate(leaf: Tensor, g: np.ndarray) -> None:
    if g.dtype != leaf.value.dtype:
        raise AssertionError(f"gradient dtype {g.dtype} differs from the tensor's")
    if leaf.grad is None:
        leaf.grad = Tensor(np.array(g, copy=True))
    else:
        leaf.grad = Tensor(leaf.grad.value + g)


# -- making tensors ------------------------------------------------------------------------


def _infer_array(data, np_dtype) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data.value.copy()
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, copy=True)  # a NumPy scalar keeps its dtype too, as in torch
    elif hasattr(data, "to_numpy") and not isinstance(data, (list, tuple)):
        arr = np.array(data.to_numpy(), copy=True)  # pandas Series / DataFrame
    else:
        arr = np.array(data)
        if np_dtype is None:
            # Python numbers take torch's defaults: float32 for floats, int64 for ints
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
    if arr.dtype == object:
        raise TypeError(f"can't make a tensor from {type(data).__name__} holding mixed objects")
    if np_dtype is not None:
        arr = arr.astype(np_dtype)
    if arr.dtype.kind in "US":
        raise TypeError("can't make a tensor from strings")
    return np.asarray(arr, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d


def tensor(data, dtype=None, *, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor copied from a list, a scalar, a NumPy array, a pandas Series or a tensor."""
    np_dtype = None if dtype is None else dtypes.to_numpy_dtype(dtype)
    return Tensor(_infer_array(data, np_dtype), requires_grad=requires_grad)


def as_tensor(data, dtype=None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtype):
        return data
    return tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array``."""
    return Tensor(array)


def _shape_arg(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _filled(fill, size, dtype, requires_grad) -> Tensor:
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else np.float32
    return Tensor(np.full(_shape_arg(size), fill, dtype=np_dtype), requires_grad=requires_grad)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    return _filled(0, size, dtype, requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    return _filled(1, size, dtype, requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    return _filled(0, size, dtype, requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    if dtype is None and isinstance(fill_value, (bool, int)):
        dtype = dtypes.bool_ if isinstance(fill_value, bool) else dtypes.int64
    return _filled(fill_value, (size,), dtype, requires_grad)


def zeros_like(t: Tensor, dtype=None) -> Tensor:
    return zeros(*t.shape, dtype=dtype or t.dtype)


def ones_like(t: Tensor, dtype=None) -> Tensor:
    return ones(*t.shape, dtype=dtype or t.dtype)


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, int) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.float32
    return Tensor(np.arange(start, end, step).astype(dtypes.to_numpy_dtype(dtype)))


def eye(n: int, m: int | None = None, dtype=None) -> Tensor:
    np_dtype = dtypes.to_numpy_dtype(dtype) if dtype is not None else np.float32
    return Tensor(np.eye(n, m, dtype=np_dtype))


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)
