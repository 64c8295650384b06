"""Printing tensors the way torch prints them, so side-by-side output lines up."""

from __future__ import annotations

import math

import numpy as np

PRECISION = 4
LINEWIDTH = 80
THRESHOLD = 1000
EDGEITEMS = 3


class _Formatter:
    """Chooses one width and style for all elements, as torch's ``_Formatter`` does."""

    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        flat = values.reshape(-1)
        if not self.floating:
            self.width = max((len(str(v)) for v in flat.tolist()), default=1)
            return
        finite = flat[np.isfinite(flat)].astype(np.float64)
        nonzero = np.abs(finite[finite != 0])
        if nonzero.size == 0:
            self.width = max((len(self._fmt_plain(v)) for v in flat), default=1)
            return
        lo, hi = nonzero.min(), nonzero.max()
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        if self.int_mode:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8
        else:
            self.sci_mode = hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4
        self.width = max(len(self.format(v)) for v in flat)

    def _fmt_plain(self, v) -> str:
        if not math.isfinite(v):
            return str(float(v)).replace("inf", "inf").replace("nan", "nan")
        return f"{v:.0f}." if self.floating else str(v)

    def format(self, v) -> str:
        if not self.floating:
            return str(v)
        v = float(v)
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if self.sci_mode:
            return f"{v:.{PRECISION}e}"
        if self.int_mode:
            return f"{v:.0f}."
        return f"{v:.{PRECISION}f}"

    def cell(self, v) -> str:
        return self.format(v).rjust(self.width)


def _body(values: np.ndarray, fmt: _Formatter, indent: int, summarize: bool) -> str:
    if values.ndim == 0:
        return fmt.format(values.item())
    if values.ndim == 1:
        n = values.shape[0]
        if summarize and n > 2 * EDGEITEMS:
            cells = [fmt.cell(v) for v in values[:EDGEITEMS]] + ["..."]
            cells += [fmt.cell(v) for v in values[-EDGEITEMS:]]
        else:
            cells = [fmt.cell(v) for v in values]
        per_line = max(1, math.floor((LINEWIDTH - indent) / (fmt.width + 2)))
        lines = [", ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    n = values.shape[0]
    rows = range(n)
    if summarize and n > 2 * EDGEITEMS:
        rows = list(range(EDGEITEMS)) + [None] + list(range(n - EDGEITEMS, n))
    parts = [
        "..." if i is None else _body(values[i], fmt, indent + 1, summarize) for i in rows
    ]
    sep = "," + "\n" * (values.ndim - 1) + " " * (indent + 1)
    return "[" + sep.join(parts) + "]"


def tensor_repr(t) -> str:
    values = t.value
    summarize = values.size > THRESHOLD
    shown = values
    if summarize:
        shown = values
        for axis in range(values.ndim):
            if values.shape[axis] > 2 * EDGEITEMS:
                idx = list(range(EDGEITEMS)) + list(range(values.shape[axis] - EDGEITEMS,
                                                          values.shape[axis]))
                shown = np.take(shown, idx, axis=axis)
    prefix = "tensor("
    suffixes = []
    if values.size == 0:
        body = "[]" if values.ndim <= 1 else "[]"
        suffixes.append(f"size={tuple(values.shape)}")
    else:
        fmt = _Formatter(shown)
        body = _body(values, fmt, len(prefix), summarize)
    default = {"f": np.float32, "i": np.int64}.get(values.dtype.kind)
    if default is None or values.dtype != default:
        suffixes.append(f"dtype={t.dtype!r}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return prefix + ", ".join([body] + suffixes) + ")"
