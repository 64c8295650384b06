"""Torch-compatible floating-point arithmetic.

torch's CPU kernels are chosen by CPU capability, and the level changes the bits: the AVX2
kernels fuse ``a * b + c`` into one rounding (FMA), the DEFAULT kernels round twice. tinymf
reproduces one level at a time, named by the *arithmetic profile*:

- ``"avx2"`` (the default): fused multiply-adds where torch's AVX2 kernels use them.
- ``"default"``: every product and sum rounded on its own, as torch's scalar kernels do.

Two kernels come from a vendor library in torch (MKL) and are not reproduced bit for bit:
float ``sqrt`` and the reduction order of a dense matrix product. They sit behind a small
seam, :data:`kernels`, so tests can substitute torch's own and prove everything else is
bit-equal, while tinymf itself stays NumPy only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

PROFILES = ("avx2", "default")
_profile = "avx2"


def get_profile() -> str:
    """The arithmetic profile in force: ``"avx2"`` or ``"default"``."""
    return _profile


def set_profile(name: str) -> None:
    """Choose which torch CPU kernel level tinymf reproduces."""
    global _profile
    if name not in PROFILES:
        raise ValueError(f"unknown arithmetic profile {name!r}; choose one of {PROFILES}")
    _profile = name


@contextlib.contextmanager
def profile(name: str) -> Iterator[None]:
    """Run a block under another arithmetic profile, restoring the old one after."""
    old = get_profile()
    set_profile(name)
    try:
        yield
    finally:
        set_profile(old)


def fma(a, b, c) -> np.ndarray:
    """``a * b + c`` with a single rounding, for float32 or float64 operands.

    float32: the product of two float32 values is exact in float64, so only the sum needs
    care. Rounding the float64 sum to odd (an error-free sum, then forcing the last bit) and
    then to float32 gives the correctly rounded result, free of double rounding.
    """
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    dtype = np.result_type(a, b, c)
    if dtype == np.float64:
        return _fma64(a, b, c)
    if dtype != np.float32:
        raise TypeError(f"fma needs float32 or float64 operands, got {dtype}")

    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)
    s = np.array(s, dtype=np.float64, copy=True)
    # round to odd: an inexact sum whose last bit is even moves one ulp towards the exact value
    bits = s.view(np.uint64)
    fix = np.isfinite(s) & (err != 0) & ((bits & 1) == 0)
    if np.any(fix):
        s[fix] = np.nextafter(s[fix], np.where(err[fix] > 0, np.inf, -np.inf))
    return s.astype(np.float32)


def _fma64(a, b, c) -> np.ndarray:
    """Correctly rounded float64 ``a * b + c`` via error-free transformations."""
    a, b, c = np.broadcast_arrays(
        np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(c, np.float64)
    )
    with np.errstate(invalid="ignore", over="ignore"):
        # Dekker's product split: a*b = ph + pl exactly
        ph = a * b
        split = 134217729.0  # 2**27 + 1
        ta = split * a
        ah = ta - (ta - a)
        al = a - ah
        tb = split * b
        bh = tb - (tb - b)
        bl = b - bh
        pl = ((ah * bh - ph) + ah * bl + al * bh) + al * bl
        # ph + c = s + e exactly, then add the small parts once
        s = ph + c
        bb = s - ph
        e = (ph - (s - bb)) + (c - bb)
        out = s + (e + pl)
    special = ~np.isfinite(ph) | ~np.isfinite(c) | ~np.isfinite(out)
    if np.any(special):
        out = np.where(special, a * b + c, out)
    return out


def mul_add(a, b, c) -> np.ndarray:
    """``a * b + c`` as torch's kernels at the current profile compute it."""
    if _profile == "avx2":
        return fma(a, b, c)
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    return a * b + c


@dataclass
class Kernels:
    """The two vendor kernels torch takes from MKL; swap them to compare bit for bit."""

    sqrt: Callable[[np.ndarray], np.ndarray] = np.sqrt
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul


kernels = Kernels()


@contextlib.contextmanager
def use_kernels(
    sqrt: Callable[[np.ndarray], np.ndarray] | None = None,
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Iterator[Kernels]:
    """Substitute ``sqrt`` and/or ``matmul`` for the duration of a block."""
    old = (kernels.sqrt, kernels.matmul)
    if sqrt is not None:
        kernels.sqrt = sqrt
    if matmul is not None:
        kernels.matmul = matmul
    try:
        yield kernels
    finally:
        kernels.sqrt, kernels.matmul = old
