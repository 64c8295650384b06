"""Module, Parameter and the layers built from them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .. import dtypes, random
from ..tensor import Tensor
from . import functional as F


class Parameter(Tensor):
    """A tensor that a :class:`Module` owns and an optimizer updates."""

    def __init__(self, data=None, requires_grad: bool = True) -> None:
        value = np.zeros((0,), np.float32) if data is None else np.asarray(data)
        super().__init__(value, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models: registers parameters and sub-modules by attribute."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- walking the tree -----------------------------------------------------------------

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters())

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.value[...] = 0

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, flag: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    # -- saving ---------------------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, Tensor]:
        """Every parameter by dotted name, detached and sharing memory, like torch's."""
        return OrderedDict((name, p.detach()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy values in by name; names, shapes and dtypes must match (all of them if strict)."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing {missing or 'none'}, unexpected {unexpected or 'none'}"
            )
        for name, value in state_dict.items():
            if name not in own:
                continue
            arr = np.asarray(value)
            p = own[name]
            if arr.shape != p.value.shape:
                raise ValueError(
                    f"size mismatch for {name}: checkpoint has {arr.shape}, model has "
                    f"{p.value.shape}"
                )
            if arr.dtype != p.value.dtype:
                raise ValueError(
                    f"dtype mismatch for {name}: checkpoint has {arr.dtype}, model has "
                    f"{p.value.dtype}"
                )
            np.copyto(p.value, arr)

    # -- printing -------------------------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [
            f"  ({name}): " + repr(child).replace("\n", "\n  ")
            for name, child in self._modules.items()
        ]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


def _param_dtype(dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype is None else dtypes.to_numpy_dtype(dtype)


class Linear(Module):
    """``y = x @ W.T + b``, initialised exactly as torch initialises it for the same seed."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        w, b = random.linear_init(in_features, out_features, bias, _param_dtype(dtype))
        self.weight = Parameter(w)
        self.bias = Parameter(b) if bias else None

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` for index ``i``; weights start as N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        w = random.embedding_init(num_embeddings, embedding_dim, _param_dtype(dtype))
        self.weight = Parameter(w)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.embedding(input, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.sigmoid(input)


class ReLU(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.relu(input)


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return input.tanh()


class Identity(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return input


class Sequential(Module):
    """Modules applied one after another."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        for m in self._modules.values():
            input = m(input)
        return input

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)


class MSELoss(Module):
    """Mean (or summed) squared error between an input and a target."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        F._reduction_check(reduction)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)
