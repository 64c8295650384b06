"""Step tracer: what every Adam step of the lecture's model computed, beside torch's.

``trace(steps)`` trains the lecture's recommender for a few steps and keeps, per parameter
and step, the numbers tinymf's Adam really used (read from ``Optimizer.step_observers``, not
recomputed): the value before the step, the gradient, the moments ``m`` and ``v``, the two
bias corrections, the step size, the denominator, the update and the value after it.

When torch is installed, the torch reference model (``reference.fit``) is trained with the
same seed and settings and its side is read from its parameters and optimizer state through
torch's optimizer step hooks. torch's Adam keeps only some of these numbers, so the others
are derived, the way torch's single-tensor Adam computes them (see :data:`TORCH_DERIVED`).

Where the two sides are bit-equal the difference is exactly 0. In the lecture's first step
the only differences come from two vendor kernels torch takes from MKL: ``sqrt`` (inside
Adam's denominator) and the dense matrix product behind the one-hot ``Linear`` gradient.
``torch_kernels=True`` lends tinymf torch's two kernels, and every difference becomes 0.

This module sits at the edge: it imports torch and ``reference`` inside functions only, and
nothing in the core imports it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import arith

__all__ = [
    "ARRAYS",
    "QUANTITIES",
    "SCALARS",
    "TORCH_DERIVED",
    "StepRecord",
    "Trace",
    "torch_available",
    "trace",
    "ulp_distance",
]

# per parameter and step, in the order Adam produces them
QUANTITIES = (
    "value",
    "grad",
    "exp_avg",
    "exp_avg_sq",
    "bias_correction1",
    "bias_correction2",
    "step_size",
    "denom",
    "update",
    "after",
)
SCALARS = ("bias_correction1", "bias_correction2", "step_size")
ARRAYS = tuple(q for q in QUANTITIES if q not in SCALARS)

# the key of each quantity in the record tinymf's Adam hands its step observers
_RECORD_KEY = {
    "value": "param_before",
    "grad": "grad",
    "exp_avg": "exp_avg",
    "exp_avg_sq": "exp_avg_sq",
    "bias_correction1": "bias_correction1",
    "bias_correction2": "bias_correction2",
    "step_size": "step_size",
    "denom": "denom",
    "update": "update",
    "after": "param_after",
}

# torch's Adam keeps the parameter, its gradient, exp_avg, exp_avg_sq and the step count;
# these are recomputed from them, as torch's single-tensor Adam computes them in its step
TORCH_DERIVED = {
    "bias_correction1": "1 - beta1 ** step, in Python floats, from state['step']",
    "bias_correction2": "1 - beta2 ** step, in Python floats, from state['step']",
    "step_size": "lr / bias_correction1, in Python floats",
    "denom": "exp_avg_sq.sqrt() / bias_correction2 ** 0.5 + eps, with torch's kernels",
    "update": "(-step_size * exp_avg) / denom with torch's kernels: the term addcdiv_ adds, "
    "so value + update == after",
}


def torch_available() -> bool:
    """Whether torch and the ``reference`` package can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "reference"))


def ulp_distance(a, b) -> np.ndarray:
    """How many float32 values lie between ``a`` and ``b`` (0 when bit-equal, NaN-free input)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)

    def ordered(x: np.ndarray) -> np.ndarray:
        # map the float32 bit patterns onto a line where neighbours differ by one
        i = x.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordered(a) - ordered(b))


@dataclass
class StepRecord:
    """One parameter at one step: tinymf's numbers, torch's (or ``None``) and the loss.

    ``tinymf[q]`` and ``torch[q]`` hold float32 arrays of the parameter's shape for the
    quantities in :data:`ARRAYS` and Python floats for those in :data:`SCALARS`. The loss is
    the one computed before this step, from the values in ``value``.
    """

    step: int
    param: str
    shape: tuple[int, ...]
    loss: float
    tinymf: dict[str, Any]
    torch: dict[str, Any] | None = None
    torch_loss: float | None = None

    def diff(self, quantity: str) -> np.ndarray:
        """``tinymf - torch`` in float64 (exact for neighbouring float32 values)."""
        if self.torch is None:
            raise ValueError("this trace ran without torch; there is nothing to compare")
        return np.asarray(self.tinymf[quantity], np.float64) - np.asarray(
            self.torch[quantity], np.float64
        )

    def ulps(self, quantity: str) -> np.ndarray:
        """The difference in float32 units in the last place (0 where bit-equal)."""
        if self.torch is None:
            raise ValueError("this trace ran without torch; there is nothing to compare")
        if quantity in SCALARS:
            # Python floats: count float64 steps instead
            a, b = float(self.tinymf[quantity]), float(self.torch[quantity])
            return np.asarray(0 if a == b else _ulps64(a, b))
        return ulp_distance(self.tinymf[quantity], self.torch[quantity])

    def differing(self, quantity: str) -> int:
        """How many elements of ``quantity`` are not bit-equal to torch's."""
        return int(np.count_nonzero(self.ulps(quantity)))


def _ulps64(a: float, b: float) -> int:
    def ordered(x: float) -> int:
        i = int(np.float64(x).view(np.int64))
        return -(i & 0x7FFFFFFFFFFFFFFF) if i < 0 else i

    return abs(ordered(a) - ordered(b))


class Trace(list):
    """The records of a trace, step by step and parameter by parameter (a list of
    :class:`StepRecord`), with the settings it ran with and ways to show or export it."""

    def __init__(self, records: Iterable[StepRecord] = (), settings: dict | None = None):
        super().__init__(records)
        self.settings: dict[str, Any] = dict(settings or {})

    @property
    def compared(self) -> bool:
        """Whether torch's side was recorded."""
        return bool(self) and self[0].torch is not None

    def params(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self:
            seen.setdefault(r.param)
        return list(seen)

    def select(self, params: Sequence[str] | None = None, steps: Sequence[int] | None = None):
        """A trace with only the named parameters and/or steps (1-based)."""
        if params is not None:
            unknown = [p for p in params if p not in self.params()]
            if unknown:
                raise ValueError(
                    f"unknown parameter {unknown[0]!r}; the traced ones are "
                    + ", ".join(self.params())
                )
        return Trace(
            (
                r
                for r in self
                if (params is None or r.param in params) and (steps is None or r.step in steps)
            ),
            self.settings,
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per step, parameter, element and quantity (a tidy table).

        Columns: ``step, param, index, quantity, tinymf, torch, diff, ulps`` (the last three
        are ``None`` without torch). The loss has one row per step with ``param`` ``"loss"``.
        Values are the exact float32 (or Python float) numbers, as Python floats.
        """
        out: list[dict[str, Any]] = []
        last_step = None
        for r in self:
            if r.step != last_step:
                last_step = r.step
                diff = None if r.torch_loss is None else r.loss - r.torch_loss
                ulps = None
                if r.torch_loss is not None:
                    ulps = int(ulp_distance(r.loss, r.torch_loss))
                out.append(_row(r.step, "loss", "", "loss", r.loss, r.torch_loss, diff, ulps))
            for q in QUANTITIES:
                ours = np.asarray(r.tinymf[q])
                theirs = None if r.torch is None else np.asarray(r.torch[q])
                d = None if r.torch is None else r.diff(q)
                u = None if r.torch is None else r.ulps(q)
                if q in SCALARS:
                    out.append(
                        _row(
                            r.step,
                            r.param,
                            "",
                            q,
                            float(ours),
                            None if theirs is None else float(theirs),
                            None if d is None else float(d),
                            None if u is None else int(u),
                        )
                    )
                    continue
                for idx in np.ndindex(ours.shape):
                    out.append(
                        _row(
                            r.step,
                            r.param,
                            _index_text(idx),
                            q,
                            float(ours[idx]),
                            None if theirs is None else float(theirs[idx]),
                            None if d is None else float(d[idx]),
                            None if u is None else int(u[idx]),
                        )
                    )
        return out

    def to_frame(self):
        """:meth:`rows` as a pandas DataFrame (pandas is imported here)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=list(_ROW_COLUMNS))

    def to_csv(self) -> str:
        """:meth:`rows` as CSV text, every value written exactly (shortest round-trip form)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(_ROW_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return buf.getvalue()

    def to_json(self, indent: int | None = 1) -> str:
        """The settings, what torch's derived columns mean, and :meth:`rows`, as JSON."""
        doc = {
            "settings": self.settings,
            "torch_derived": TORCH_DERIVED if self.compared else {},
            "rows": self.rows(),
        }
        return json.dumps(doc, indent=indent, ensure_ascii=False)

    def table(self, differences_only: bool = False, max_elements: int | None = 40) -> str:
        """A readable terminal table: per step and parameter, one block of elements.

        A parameter shows at most ``max_elements`` elements (``None``: all); its summary line
        still counts every element. ``differences_only`` skips bit-equal elements.
        """
        return format_table(self, differences_only, max_elements)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        steps = len({r.step for r in self})
        return f"<Trace: {steps} step(s), {len(self.params())} parameter(s), torch={self.compared}>"


_ROW_COLUMNS = ("step", "param", "index", "quantity", "tinymf", "torch", "diff", "ulps")


def _row(step, param, index, quantity, ours, theirs, diff, ulps) -> dict[str, Any]:
    return dict(
        zip(_ROW_COLUMNS, (step, param, index, quantity, ours, theirs, diff, ulps), strict=True)
    )


def _index_text(idx: tuple[int, ...]) -> str:
    return "[" + ",".join(str(i) for i in idx) + "]"


# -- running it ----------------------------------------------------------------------------


def trace(
    steps: int = 1,
    *,
    data=None,
    dim: int = 2,
    lr: float = 0.1,
    seed: int = 21345,
    form: str = "onehot",
    compare_torch: bool | None = None,
    torch_kernels: bool = False,
) -> Trace:
    """Train the lecture's model for ``steps`` Adam steps and record every step's numbers.

    ``data`` is a :class:`tinymf.data.Ratings` (default: the lecture's bundled ratings).
    ``compare_torch``: ``None`` compares with the torch reference when it is installed,
    ``True`` insists (ImportError without torch), ``False`` skips it. ``torch_kernels=True``
    runs tinymf with torch's ``sqrt`` and ``matmul`` substituted (needs torch).

    If torch has not been imported yet and ``ATEN_CPU_CAPABILITY`` is unset, it is set to
    tinymf's arithmetic profile first, so torch runs the kernel level tinymf reproduces.
    """
    from .data import load_lecture

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if data is None:
        data = load_lecture()
    if compare_torch is None:
        compare_torch = torch_available()
    if compare_torch or torch_kernels:
        pin_torch_level()
    settings = {
        "steps": steps,
        "source": data.source,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "ratings": len(data),
        "dim": dim,
        "lr": lr,
        "seed": seed,
        "form": form,
        "profile": arith.get_profile(),
        "torch_kernels": torch_kernels,
        "sqrt_kernel": "torch.sqrt" if torch_kernels else _kernel_name(arith.kernels.sqrt),
        "matmul_kernel": "torch.matmul" if torch_kernels else _kernel_name(arith.kernels.matmul),
    }

    if torch_kernels:
        with arith.use_kernels(**torch_kernel_functions()):
            ours, losses = _run_tinymf(data, steps, dim, lr, seed, form)
    else:
        ours, losses = _run_tinymf(data, steps, dim, lr, seed, form)

    theirs: dict[tuple[int, str], dict[str, Any]] | None = None
    torch_losses: list[float] | None = None
    if compare_torch:
        import torch

        theirs, torch_losses = _run_torch(data, steps, dim, lr, seed, form)
        settings["torch"] = torch.__version__
        settings["torch_level"] = torch.backends.cpu.get_cpu_capability()

    records = []
    for (step, name), values in ours.items():
        records.append(
            StepRecord(
                step=step,
                param=name,
                shape=tuple(np.shape(values["value"])),
                loss=losses[step - 1],
                tinymf=values,
                torch=None if theirs is None else theirs[step, name],
                torch_loss=None if torch_losses is None else torch_losses[step - 1],
            )
        )
    return Trace(records, settings)


def _kernel_name(f) -> str:
    if isinstance(f, np.ufunc) or f is np.matmul:
        return f"numpy.{f.__name__}"
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def pin_torch_level() -> None:
    """Have torch pick the kernel level tinymf reproduces, if it is not imported yet.

    torch reads ``ATEN_CPU_CAPABILITY`` once, at import, and otherwise takes the best level
    the CPU offers (AVX-512 where there is one), whose bits tinymf does not reproduce. A value
    the user set is kept.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("ATEN_CPU_CAPABILITY", arith.get_profile())


def level_note(torch_level: str, profile: str | None = None) -> str | None:
    """A one-line warning when torch's kernel level is not the profile tinymf reproduces."""
    profile = profile or arith.get_profile()
    if torch_level.lower() == profile:
        return None
    return (
        f"note: torch runs {torch_level} kernels but tinymf reproduces {profile}; set "
        f"ATEN_CPU_CAPABILITY={profile} before torch is imported to compare like with like"
    )


def torch_kernel_functions() -> dict[str, Callable[..., np.ndarray]]:
    """torch's ``sqrt``, ``matmul`` and ``addmm`` as NumPy-in, NumPy-out functions for
    ``use_kernels``. Arrays reach torch as they are, strides and all, since those decide
    which kernel runs."""
    import warnings

    import torch

    def tensor(x):
        # torch only reads these, so its warning about read-only arrays (tinymf's broadcast
        # views) does not apply
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(np.asarray(x))

    def sqrt(x):
        return torch.sqrt(tensor(x)).numpy()

    def matmul(a, b):
        a, b = tensor(a), tensor(b)
        if a.dim() == 3 and b.dim() == 3 and a.shape[0] == b.shape[0]:
            # tinymf hands over batched products already folded as torch folds them; matmul
            # would fold them again, restriding size-1 dimensions, where torch calls bmm
            return torch.bmm(a, b).numpy()
        return (a @ b).numpy()

    def addmm(bias, a, b):
        return torch.addmm(tensor(bias), tensor(a), tensor(b)).numpy()

    return {"sqrt": sqrt, "matmul": matmul, "addmm": addmm}


def _run_tinymf(data, steps, dim, lr, seed, form):
    from . import optim
    from .models import PARAMETER_NAMES, MatrixFactorization, train
    from .random import manual_seed

    manual_seed(seed)
    model = MatrixFactorization(data.n_users, data.n_items, dim=dim, form=form)
    params = model.lecture_parameters()
    names = {id(p): n for n, p in zip(PARAMETER_NAMES, params, strict=True)}
    optimizer = optim.Adam(params, lr=lr)
    seen: dict[tuple[int, str], dict[str, Any]] = {}

    def observe(param, record: dict) -> None:
        seen[record["step"], names[id(param)]] = {
            q: _keep(record[_RECORD_KEY[q]]) for q in QUANTITIES
        }

    optimizer.step_observers.append(observe)
    losses = train(
        model,
        data.user_idx,
        data.item_idx,
        data.rating,
        epochs=steps,
        lr=lr,
        optimizer=optimizer,
    )
    return seen, losses


def _keep(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    return float(value)


def _run_torch(data, steps, dim, lr, seed, form):
    """Train ``reference.fit`` and read each Adam step through torch's global step hooks."""
    import torch
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    import reference

    seen: dict[tuple[int, str], dict[str, Any]] = {}
    before: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def numpy(t) -> np.ndarray:
        return t.detach().numpy().copy()

    def pre(optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                before[id(p)] = (numpy(p), numpy(p.grad))

    def post(optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            beta1, beta2 = group["betas"]
            for name, p in zip(reference.model.PARAMETER_NAMES, group["params"], strict=True):
                state = optimizer.state[p]
                step = int(state["step"].item())
                # what torch's _single_tensor_adam computes from these, in the same way
                bc1 = 1 - beta1 ** float(step)
                bc2 = 1 - beta2 ** float(step)
                step_size = group["lr"] / bc1
                with torch.no_grad():
                    denom = (state["exp_avg_sq"].sqrt() / bc2**0.5).add_(group["eps"])
                    update = torch.mul(state["exp_avg"], -step_size) / denom
                value, grad = before[id(p)]
                seen[step, name] = {
                    "value": value,
                    "grad": grad,
                    "exp_avg": numpy(state["exp_avg"]),
                    "exp_avg_sq": numpy(state["exp_avg_sq"]),
                    "bias_correction1": bc1,
                    "bias_correction2": bc2,
                    "step_size": step_size,
                    "denom": numpy(denom),
                    "update": numpy(update),
                    "after": numpy(p),
                }

    handles = [register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post)]
    try:
        _, losses = reference.fit(
            data.user_idx,
            data.item_idx,
            data.rating,
            data.n_users,
            data.n_items,
            dim=dim,
            epochs=steps,
            lr=lr,
            seed=seed,
            form=form,
        )
    finally:
        for h in handles:
            h.remove()
    return seen, losses


# -- showing it ----------------------------------------------------------------------------

_SHOWN = ("value", "grad", "exp_avg", "exp_avg_sq", "denom", "update", "after")
_HEADINGS = {
    "value": "value",
    "grad": "grad",
    "exp_avg": "m (exp_avg)",
    "exp_avg_sq": "v (exp_avg_sq)",
    "denom": "denom",
    "update": "update",
    "after": "after",
}
_WIDTH = 15


def num(x: float) -> str:
    """A float32 value in its shortest unambiguous form: two different floats never print alike."""
    x32 = np.float32(x)
    if x32 == 0:
        return "-0" if np.signbit(x32) else "0"
    if not np.isfinite(x32):
        return str(float(x32))
    if 1e-4 <= abs(float(x32)) < 1e5:
        return np.format_float_positional(x32, unique=True, trim="-")
    return np.format_float_scientific(x32, unique=True, trim="-", exp_digits=2)


def _num64(x: float) -> str:
    return repr(float(x))


def _ulp_text(ours, theirs) -> str:
    u = int(ulp_distance(ours, theirs))
    if u == 0:
        return "0"
    sign = "+" if float(ours) > float(theirs) else "-"
    return f"{sign}{u} ulp"


def format_table(tr: Trace, differences_only: bool = False, max_elements: int | None = 40) -> str:
    """The terminal view of a trace (see :meth:`Trace.table`)."""
    s = tr.settings
    lines = [
        f"tinymf trace: {s.get('steps')} Adam step(s), lr {s.get('lr'):g}, on {s.get('source')} "
        f"({s.get('n_users')} users x {s.get('n_items')} items, {s.get('ratings')} ratings), "
        f"dim {s.get('dim')}, seed {s.get('seed')}, {s.get('form')} form",
        f"tinymf: arithmetic profile {s.get('profile')}, sqrt {s.get('sqrt_kernel')}, "
        f"matmul {s.get('matmul_kernel')}"
        + (" (--torch-kernels)" if s.get("torch_kernels") else ""),
    ]
    if tr.compared:
        lines.append(f"torch {s.get('torch')}, {s.get('torch_level')} kernels")
        note = level_note(str(s.get("torch_level", "")), str(s.get("profile")))
        if note:
            lines.append(note)
        lines += [
            "rows: tinymf = what tinymf's Adam used",
            "      torch  = read from torch's parameters and optimizer state; columns marked ~",
            "               are derived from them the way torch's Adam computes them",
            "      diff   = tinymf - torch in float32 steps (ulp); 0 means bit-equal",
        ]
    else:
        lines.append("torch not compared (not installed, or turned off): tinymf's numbers only")

    last_step = None
    for r in tr:
        if r.step != last_step:
            last_step = r.step
            lines.append("")
            loss = f"step {r.step}: loss before the step {num(r.loss)}"
            if r.torch_loss is not None:
                loss += f"  (torch {num(r.torch_loss)}, diff {_ulp_text(r.loss, r.torch_loss)})"
            lines.append(loss)
        lines += _param_block(r, differences_only, max_elements)
    return "\n".join(lines)


def _param_block(r: StepRecord, differences_only: bool, max_elements: int | None) -> list[str]:
    scal = "  ".join(f"{q} {_num64(r.tinymf[q])}" for q in SCALARS)
    out = ["", f"{r.param} {r.shape}", f"  {scal}"]
    if r.torch is not None:
        if all(r.tinymf[q] == r.torch[q] for q in SCALARS):
            out[-1] += "  (torch~: the same)"
        else:
            out.append("  torch~: " + "  ".join(f"{q} {_num64(r.torch[q])}" for q in SCALARS))

    derived = {"denom", "update"} if r.torch is not None else set()
    titles = [_HEADINGS[q] + ("~" if q in derived else "") for q in _SHOWN]
    side = "" if r.torch is None else f"{'':7s}"
    out.append(f"  {'element':9s}{side}" + "".join(t.rjust(_WIDTH) for t in titles))

    shown = hidden = 0
    for idx in np.ndindex(r.shape):
        ours = [r.tinymf[q][idx] for q in _SHOWN]
        theirs = None if r.torch is None else [r.torch[q][idx] for q in _SHOWN]
        if (
            differences_only
            and theirs is not None
            and all(
                np.float32(a).tobytes() == np.float32(b).tobytes()
                for a, b in zip(ours, theirs, strict=True)
            )
        ):
            continue
        if max_elements is not None and shown >= max_elements:
            hidden += 1
            continue
        shown += 1
        if theirs is None:
            out.append(f"  {_index_text(idx):9s}" + "".join(num(v).rjust(_WIDTH) for v in ours))
            continue
        out.append(
            f"  {_index_text(idx):9s}{'tinymf':7s}" + "".join(num(v).rjust(_WIDTH) for v in ours)
        )
        out.append(f"  {'':9s}{'torch':7s}" + "".join(num(v).rjust(_WIDTH) for v in theirs))
        out.append(
            f"  {'':9s}{'diff':7s}"
            + "".join(_ulp_text(a, b).rjust(_WIDTH) for a, b in zip(ours, theirs, strict=True))
        )

    if hidden:
        out.append(f"  ... {hidden} more elements not shown (--format csv lists them all)")
    if r.torch is not None:
        if differences_only and shown == 0:
            out.append("  (every element bit-equal)")
        out.append("  " + _summary(r))
    return out


def _summary(r: StepRecord) -> str:
    n = int(np.prod(r.shape))
    parts = []
    for q in _SHOWN:
        k = r.differing(q)
        if k:
            worst = int(r.ulps(q).max())
            biggest = float(np.abs(r.diff(q)).max())
            parts.append(f"{q} {k} (up to {worst} ulp, {biggest:.2g})")
    if not parts:
        return f"bit-equal: all {n} elements of every column"
    return f"not bit-equal, of {n} elements: " + ", ".join(parts)


def differences(tr: Trace) -> dict[str, int]:
    """For each array quantity, how many elements differ from torch over the whole trace."""
    out = dict.fromkeys(ARRAYS, 0)
    for r in tr:
        for q in ARRAYS:
            out[q] += r.differing(q)
    return out
