"""Torch-compatible floating-point arithmetic.

torch's CPU kernels are chosen by CPU capability, and the level changes the bits: the AVX2
kernels fuse ``a * b + c`` into one rounding (FMA), the DEFAULT kernels round twice. tinymf
reproduces one level at a time, named by the *arithmetic profile*:

- ``"avx2"`` (the default): fused multiply-adds where torch's AVX2 kernels use them.
- ``"default"``: every product and sum rounded on its own, as torch's scalar kernels do;
  chosen at import when ``ATEN_CPU_CAPABILITY=default`` tells torch to use those kernels.

A few kernels come from a vendor library in torch (MKL) and are not reproduced bit for bit:
float ``sqrt``, the reduction order of a dense matrix product, and the VML ``exp``, ``tanh``
and ``log`` (within 1 ulp of the correctly rounded result, and so of tinymf's). They sit
behind a small seam, :data:`kernels`, so tests can substitute torch's own and prove
everything else is bit-equal, while tinymf itself stays NumPy only.

Everything else here follows torch's own code: the cascade sum of its reductions, Sleef's
``exp`` inside its vectorized sigmoid, glibc's ``exp`` in its scalar loops, and where its
threads cut a loop (:func:`set_num_threads`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

PROFILES = ("avx2", "default")
# torch reads ATEN_CPU_CAPABILITY at import to pick its kernels; tinymf starts at that level
_profile = "default" if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "default" else "avx2"


_F32_TIE_MASK = np.uint64((1 << 29) - 1)  # float64 mantissa bits below float32 precision
_F32_TIE = np.uint64(1 << 28)  # ... set exactly halfway between two float32 neighbours
_F32_LOW_EXPONENT = np.uint32(0x7F000000)  # all clear: a float32 below 2**-125 in magnitude


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

    s = np.multiply(a, b, dtype=np.float64)
    s += c
    out = s.astype(np.float32)
    # rounding twice (to float64, then float32) differs from rounding once only when the
    # float64 sum sits exactly halfway between two float32 values, or when the result is
    # near or below float32's subnormal range (fewer bits, another halfway point); redo
    # those few exactly
    redo = (s.view(np.uint64) & _F32_TIE_MASK) == _F32_TIE
    redo |= (out.view(np.uint32) & _F32_LOW_EXPONENT) == 0
    if redo.any():
        a, b, c = np.broadcast_arrays(a, b, c)
        out = np.array(out, copy=True)
        out[redo] = _fma32_exact(a[redo], b[redo], c[redo])
    return out


def _fma32_exact(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 ``a * b + c`` rounded once: the float64 sum rounded to odd, then to float32."""
    p = a.astype(np.float64) * b.astype(np.float64)  # exact: 24 + 24 bits fit in 53
    c64 = c.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s, err = _two_sum(p, c64)
    return _round_to_odd(s, err).astype(np.float32)


def _two_sum(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


def _round_to_odd(v: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Move an inexact ``v`` whose last bit is even one ulp towards the exact value."""
    v = np.array(v, copy=True)
    fix = np.isfinite(v) & (err != 0) & ((v.view(np.uint64) & 1) == 0)
    if np.any(fix):
        v[fix] = np.nextafter(v[fix], np.where(err[fix] > 0, np.inf, -np.inf))
    return v


def _fma64(a, b, c) -> np.ndarray:
    """Correctly rounded float64 ``a * b + c``.

    Boldo and Melquiond's emulation: an exact product (Dekker), an exact sum, and the two
    low parts added with rounding to odd, so the final rounding is the only one that counts.
    It is proven away from overflow and underflow; elements near either edge are computed
    exactly with rationals instead.
    """
    a, b, c = np.broadcast_arrays(
        np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(c, np.float64)
    )
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        ph = a * b
        split = 134217729.0  # 2**27 + 1
        ta = split * a
        ah = ta - (ta - a)
        al = a - ah
        tb = split * b
        bh = tb - (tb - b)
        bl = b - bh
        pl = ((ah * bh - ph) + ah * bl + al * bh) + al * bl
        th, tl = _two_sum(c, ph)
        v, verr = _two_sum(tl, pl)
        out = th + _round_to_odd(v, verr)

        zero = (a == 0) | (b == 0)
        out = np.where(zero, ph + c, out)  # an exact zero product keeps IEEE's signed zeros
        finite = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
        big = 2.0**995
        tiny = 2.0**-960
        edge = (
            finite
            & ~zero
            & (
                (np.abs(a) > big)
                | (np.abs(b) > big)
                | (np.abs(c) > big)
                | (np.abs(ph) > big)
                | (np.abs(ph) < tiny)
                | (np.abs(out) < tiny)
            )
        )
        out = np.where(finite, out, a * b + c)
    if np.any(edge):
        out = np.array(out, copy=True)
        for i in map(tuple, np.argwhere(edge)):  # argwhere, unlike nonzero, takes 0-d arrays
            out[i] = _exact_fma(float(a[i]), float(b[i]), float(c[i]))
    return out


def _exact_fma(a: float, b: float, c: float) -> float:
    from fractions import Fraction

    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        return a * b + c  # IEEE's sign rules for an exact zero sum
    try:
        return float(exact)  # Fraction to float rounds correctly
    except OverflowError:
        return float("inf") if exact > 0 else float("-inf")


def mul_add(a, b, c) -> np.ndarray:
    """``a * b + c`` as torch's kernels at the current profile compute it."""
    if _profile == "avx2":
        return fma(a, b, c)
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    return a * b + c


def _correctly_rounded(f64: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """A float32/float64 elementwise function from its float64 NumPy version.

    float32 goes through float64 and is rounded once, which is correctly rounded but for
    inputs whose result lies within a float64 ulp of a float32 rounding boundary.
    """

    def kernel(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        with np.errstate(all="ignore"):
            if x.dtype == np.float32:
                return np.asarray(f64(x.astype(np.float64)).astype(np.float32))
            return np.asarray(f64(x))

    kernel.__name__ = f64.__name__
    return kernel


@dataclass
class Kernels:
    """The vendor kernels torch takes from MKL; swap them to compare bit for bit.

    MKL's vector-math ``exp``, ``tanh`` and ``log`` (high-accuracy mode) are within 1 ulp of
    the correctly rounded result, and so are the NumPy-based defaults; 0.1% to 20% of
    elements differ by that 1 ulp, depending on the function and dtype.
    """

    sqrt: Callable[[np.ndarray], np.ndarray] = np.sqrt
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul
    exp: Callable[[np.ndarray], np.ndarray] = _correctly_rounded(np.exp)
    tanh: Callable[[np.ndarray], np.ndarray] = _correctly_rounded(np.tanh)
    log: Callable[[np.ndarray], np.ndarray] = _correctly_rounded(np.log)
    # the weight gradient of Linear on a one-hot input, (g, indices, classes) -> (out, classes);
    # None adds the rows in input order, or hands the dense product to a substituted matmul
    onehot_weight_grad: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None
    # Linear's bias plus product in one call, (bias, input, weight.T) -> out, as torch runs a
    # matrix input (MKL's gemm adding onto the bias); None adds the bias to `matmul`'s product
    addmm: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None


kernels = Kernels()
_KERNEL_NAMES = ("sqrt", "matmul", "exp", "tanh", "log", "onehot_weight_grad", "addmm")


@contextlib.contextmanager
def use_kernels(
    sqrt: Callable[[np.ndarray], np.ndarray] | None = None,
    matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    exp: Callable[[np.ndarray], np.ndarray] | None = None,
    tanh: Callable[[np.ndarray], np.ndarray] | None = None,
    log: Callable[[np.ndarray], np.ndarray] | None = None,
    onehot_weight_grad: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None,
    addmm: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Iterator[Kernels]:
    """Substitute any of the vendor kernels for the duration of a block."""
    new = dict(
        sqrt=sqrt, matmul=matmul, exp=exp, tanh=tanh, log=log,
        onehot_weight_grad=onehot_weight_grad, addmm=addmm,
    )
    old = {name: getattr(kernels, name) for name in _KERNEL_NAMES}
    for name, fn in new.items():
        if fn is not None:
            setattr(kernels, name, fn)
    try:
        yield kernels
    finally:
        for name, fn in old.items():
            setattr(kernels, name, fn)


# ---------------------------------------------------------------------------------------------
# Threads
#
# torch hands large loops to several threads, and where a loop is cut changes the bits: a full
# reduction is summed chunk by chunk, and an elementwise kernel leaves a scalar tail at the end
# of every chunk. tinymf imitates one thread count, 1 unless told otherwise.
# ---------------------------------------------------------------------------------------------

_GRAIN_SIZE = 32768  # torch never splits a loop of fewer elements
def _default_threads() -> int:
    # torch starts with one intra-op thread per CPU this process may run on, unless
    # OMP_NUM_THREADS says otherwise; tinymf starts from the same count
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_num_threads = _default_threads()


def get_num_threads() -> int:
    """The number of torch intra-op threads whose results tinymf reproduces."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Reproduce torch running with ``n`` intra-op threads (``torch.set_num_threads(n)``)."""
    global _num_threads
    if int(n) < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    _num_threads = int(n)


def thread_ranges(n: int) -> list[tuple[int, int]]:
    """The ``[begin, end)`` ranges of a loop over ``n`` elements that torch's threads take
    (one range below 32768 elements or with one thread)."""
    return _chunks(n)


def _chunks(n: int, grain: int = _GRAIN_SIZE) -> list[tuple[int, int]]:
    """The ``[begin, end)`` ranges torch's ``parallel_for`` gives its threads."""
    if n == 0:
        return []
    if _num_threads == 1 or n < grain:
        return [(0, n)]
    used = min(_num_threads, -(-n // grain))
    size = -(-n // used)
    return [(b, min(n, b + size)) for b in range(0, n, size)]


def mkl_replay() -> dict[str, Callable]:
    """Replays of torch's MKL ``sqrt`` and ``sgemm``, for ``use_kernels(**mkl_replay())``.

    They reproduce torch 2.13's MKL 2024.2 bit for bit as measured on an AMD EPYC (Zen, AVX2,
    no AVX-512), the kind of machine tinymf is developed on. They depend on that CPU's
    ``rsqrtps`` table and on the code paths MKL takes on it: on an Intel CPU MKL runs other
    kernels, so check them against torch before relying on them there. ``exp``, ``tanh`` and
    ``log`` are not replayed.
    """
    from . import mklgemm, mklsqrt

    return {
        "sqrt": mklsqrt.sqrt,
        "matmul": mklgemm.matmul,
        "onehot_weight_grad": mklgemm.onehot_weight_grad,
    }


# ---------------------------------------------------------------------------------------------
# Reductions: torch's cascade sum
#
# torch sums floats with the cascade of its ``SumKernel.cpp``: a column of terms is cut into
# blocks of ``level_step`` terms (16; more past 2**19 terms) added left to right, and the block
# sums are gathered the same way on up to three more levels. A contiguous row is read as vectors
# of 8 float32 (4 float64) lanes through four interleaved accumulators, so 32 (16) partial sums
# run side by side before they meet. Summing through the same tree gives the same bits; NumPy's
# pairwise ``np.sum`` does not.
# ---------------------------------------------------------------------------------------------

_ILP = 4  # interleaved accumulators of torch's row sum
_LEVELS = 4  # levels of torch's cascade


def _check_float(x: np.ndarray) -> None:
    if x.dtype != np.float32 and x.dtype != np.float64:
        raise TypeError(f"expected a float32 or float64 array, got {x.dtype}")


def _contiguous(x: np.ndarray) -> np.ndarray:
    """``x`` in C order (``np.ascontiguousarray`` would turn a 0-d array into 1-d)."""
    return x if x.flags.c_contiguous else x.copy(order="C")


def _walk(x: np.ndarray) -> tuple[tuple[int, ...], int, bool]:
    """How torch's iterator walks a strided ``x``: its axes outermost first (by decreasing
    stride; size-1 axes, which it drops, ahead of them), the length of the innermost run
    once neighbours that memory allows are merged, and whether that run is contiguous. A
    transposed or permuted contiguous block is one contiguous run of ``x.size``, in memory
    order.
    """
    moving = sorted((d for d in range(x.ndim) if x.shape[d] > 1), key=lambda d: x.strides[d])
    inner = 1
    for d in moving:
        inner *= x.shape[d]
        later = moving.index(d) + 1
        if later == len(moving) or x.strides[moving[later]] != x.strides[d] * x.shape[d]:
            break
    perm = tuple(d for d in range(x.ndim) if x.shape[d] == 1) + tuple(reversed(moving))
    return perm, inner, bool(moving) and x.strides[moving[0]] == x.itemsize


def _iterator_perm(x: np.ndarray) -> tuple[int, ...]:
    """The axis order, innermost first, that torch's iterator gives a lone input ``x`` (an
    insertion sort by stride, equal strides putting the smaller axis inside); a new output
    is laid out densely in that order, which fixes even the strides of its size-1 axes."""
    perm = list(range(x.ndim - 1, -1, -1))
    for i in range(1, x.ndim):
        j = i
        for k in range(i - 1, -1, -1):
            a, b = perm[k], perm[j]
            if x.strides[a] > x.strides[b] or (
                x.strides[a] == x.strides[b] and x.shape[a] > x.shape[b]
            ):
                perm[k], perm[j] = b, a
                j = k
            elif x.strides[a] < x.strides[b]:
                break
    return tuple(perm)


def _like_torch_output(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (shaped as ``x``) in a new array laid out as torch lays out the result of
    an elementwise operation on ``x``."""
    outer_first = _iterator_perm(x)[::-1]
    buf = np.empty([x.shape[d] for d in outer_first], values.dtype)
    out = np.transpose(buf, np.argsort(outer_first))
    out[...] = values
    return out


def _strided(x: np.ndarray) -> bool:
    """A view torch walks in another order than its logical one: not row-major, and no
    broadcast (zero) strides, which walks of their own would follow."""
    return not x.flags.c_contiguous and all(
        st > 0 or n == 1 for st, n in zip(x.strides, x.shape, strict=True)
    )


def _lanes(dtype: np.dtype) -> int:
    """Lanes of a 256-bit vector, the width torch's kernels are written for (also at DEFAULT)."""
    return 8 if dtype == np.float32 else 4


def _fold(a: np.ndarray) -> np.ndarray:
    """Left-to-right sum down axis 0: ``((a[0] + a[1]) + a[2]) + ...``; 0 when empty."""
    n = a.shape[0]
    if n == 0:
        return np.zeros(a.shape[1:], a.dtype)
    if n == 1:
        return a[0].copy()
    if a[0].size <= 64:
        # a running sum is sequential by definition; one call beats a Python loop here
        return np.add.accumulate(a, axis=0)[-1]
    acc = a[0] + a[1]
    for i in range(2, n):
        acc += a[i]
    return acc


def _level_step(n: int) -> int:
    """Block length of torch's cascade over ``n`` terms."""
    ceil_log2 = 1 if n <= 2 else (n - 1).bit_length()
    return 1 << max(4, ceil_log2 // _LEVELS)


def _cascade(a: np.ndarray) -> np.ndarray:
    """torch's cascade sum down axis 0 (``multi_row_sum``); other axes are separate columns."""
    n = a.shape[0]
    step = _level_step(n)
    nb = n // step
    if nb == 0:
        return _fold(a)
    rest = a.shape[1:]

    # level 0 adds `step` terms at a time; what is left over stays in the first accumulator
    first = _fold(a[nb * step :])
    sums = _fold(a[: nb * step].reshape(nb, step, *rest).swapaxes(0, 1))
    # levels 1 and 2 pass their total on after every `step` arrivals; level 3 keeps everything
    levels = []
    for _ in range(_LEVELS - 2):
        ng = sums.shape[0] // step
        levels.append(_fold(sums[ng * step :]))
        if ng == 0:
            return _fold(np.stack([first, *levels]))
        sums = _fold(sums[: ng * step].reshape(ng, step, *rest).swapaxes(0, 1))
    return _fold(np.stack([first, *levels, _fold(sums)]))


def _row_sum(a: np.ndarray) -> np.ndarray:
    """torch's ``row_sum`` down axis 0: four interleaved cascades, leftovers into the first."""
    n = a.shape[0]
    m = n // _ILP
    part = _cascade(a[: m * _ILP].reshape(m, _ILP, *a.shape[1:]))
    if m * _ILP == n:
        return _fold(part)
    return _fold(np.concatenate([part[:1], a[m * _ILP :], part[1:]]))


def _inner_vec_sum(a: np.ndarray, lanes: int) -> np.ndarray:
    """torch's sum of contiguous rows (down axis 0): vectors through ``row_sum``, then the
    scalar tail from zero, then the lanes one by one."""
    n = a.shape[0]
    nv = n // lanes
    vec = _row_sum(a[: nv * lanes].reshape(nv, lanes, *a.shape[1:]))
    return _fold(np.concatenate([a[nv * lanes :], vec]))


def _flat_sum(flat: np.ndarray) -> np.ndarray:
    """torch's single-thread sum of a contiguous 1-d array, as a 0-d array."""
    lanes = _lanes(flat.dtype)
    if flat.size >= lanes:
        return _inner_vec_sum(flat, lanes)
    return _row_sum(flat)


def _normalize_axes(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    """Reduced axes, ascending; ``None`` and ``()`` mean every axis, as torch's ``dim`` does."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    bound = max(ndim, 1)  # a 0-d tensor accepts dim 0 and -1
    out = []
    for a in axes:
        if not -bound <= int(a) < bound:
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
        out.append(int(a) % bound)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis} names a dimension more than once")
    if not out:
        return tuple(range(ndim))
    return tuple(sorted(a for a in out if a < ndim))


def _column_sums(y: np.ndarray, d0: int, d1: int | None) -> np.ndarray:
    """Sum ``y`` down axis ``d0`` as torch's kernel does for its 2-d loop over ``(d0, d1)``.

    ``d0`` is the innermost reduced axis and ``d1`` the next axis torch iterates (reduced or
    kept). torch picks one of four kernels from the strides of the two, and each adds up a
    column in its own order. Returns ``y`` without axis ``d0``.
    """
    lanes = _lanes(y.dtype)
    cols = np.moveaxis(y, d0, 0)
    if y.strides[d0] == y.itemsize and y.shape[d0] >= lanes:
        return _inner_vec_sum(cols, lanes)
    if d1 is None:
        return _row_sum(cols)
    s1 = y.shape[d1]
    if y.strides[d1] == y.itemsize and s1 >= lanes:
        # vectorized across d1: blocks of four vectors share a plain cascade, the rest row sums
        block = 4 * lanes * (s1 // (4 * lanes))
    elif y.strides[d0] < y.strides[d1]:
        return _row_sum(cols)
    else:
        # scalar kernel across d1: groups of four columns share a cascade, the rest row sums
        block = 4 * (s1 // 4)
    if block == s1:
        return _cascade(cols)
    j = d1 + 1 if d1 < d0 else d1  # where d1 sits in `cols`
    tail = _row_sum(cols[(slice(None),) * j + (slice(block, None),)])
    if block == 0:
        return tail
    head = _cascade(cols[(slice(None),) * j + (slice(0, block),)])
    return np.concatenate([head, tail], axis=j - 1)


def _split_columns(y: np.ndarray, d0: int, d1: int | None, kept: list[int]) -> np.ndarray:
    """Column sums as torch computes them when its threads share out the kept columns.

    torch splits the outermost kept dimension that has at least one column per thread. Only a
    split of ``d1`` changes how the kernels group columns, so only that one is imitated; where
    ``d1`` is contiguous, its cuts are rounded down to 128-byte boundaries.
    """
    n = 1 if d1 is None else y.shape[d1]
    split = next((d for d in kept if y.shape[d] >= _num_threads), None)
    if split is None:
        split = max(kept, key=lambda d: y.shape[d])  # the largest; the first of equals
    if split != d1 or y.size < _GRAIN_SIZE or _num_threads == 1:
        return _column_sums(y, d0, d1)
    multiple = 128 // y.itemsize if y.strides[d1] == y.itemsize else 1
    used = min(_num_threads, n)
    size = -(-n // used)
    pieces = []
    for begin in range(0, n, size):
        end = min(n, begin + size)
        begin -= begin % multiple
        if end != n:
            end -= end % multiple
        if begin < end:
            part = y[(slice(None),) * d1 + (slice(begin, end),)]
            pieces.append(_column_sums(part, d0, d1))
    return np.concatenate(pieces, axis=d1 - (d1 > d0))


def _serial_sum(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """torch's sum of ``x`` (any strides but zero ones) over ``axes``, shaped as with
    ``keepdims``."""
    out_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    if x.size == 0:
        return np.zeros(out_shape, x.dtype)

    # torch's iterator drops size-1 dimensions and walks the reduced ones innermost, in order
    # of their strides, then the kept ones in the order of the (row-major) output; it merges
    # neighbours on that walk where memory allows. `y` views `x` with the walk's dimensions
    # outermost first, so that position stands for the walk below, as in a contiguous tensor.
    walk = [i for i in sorted(axes, key=lambda d: abs(x.strides[d])) if x.shape[i] > 1]
    walk += [i for i in range(x.ndim - 1, -1, -1) if i not in axes and x.shape[i] > 1]
    merged: list[list] = []  # [size, stride, reduced], innermost first
    for i in walk:
        n, stride, red = x.shape[i], x.strides[i], i in axes
        if merged and merged[-1][2] == red and merged[-1][0] * merged[-1][1] == stride:
            merged[-1][0] *= n
        else:
            merged.append([n, stride, red])
    merged.reverse()
    if not any(red for _, _, red in merged):
        # nothing left to reduce: torch still adds every element to a zero-filled output
        return (x + x.dtype.type(0)).reshape(out_shape)
    y = np.lib.stride_tricks.as_strided(
        x, [n for n, _, _ in merged], [st for _, st, _ in merged], writeable=False
    )

    # torch iterates the reduced dimensions innermost first, then the kept ones
    reduced = [i for i in range(y.ndim - 1, -1, -1) if merged[i][2]]
    kept = [i for i in range(y.ndim - 1, -1, -1) if not merged[i][2]]
    order = reduced + kept
    d1 = order[1] if len(order) > 1 else None
    cols = _split_columns(y, order[0], d1, kept[::-1]) if kept else _column_sums(y, order[0], d1)

    # each further reduced dimension adds one contribution per 2-d loop, in C order
    rest = sorted(i - (i > order[0]) for i in reduced[1:])
    if rest:
        moved = np.moveaxis(cols, rest, range(cols.ndim - len(rest), cols.ndim))
        flat = moved.reshape(*moved.shape[: cols.ndim - len(rest)], -1)
        cols = _fold(np.moveaxis(flat, -1, 0))
    # torch adds into a zero-filled output, so a sum of negative zeros comes out +0
    return (cols + x.dtype.type(0)).reshape(out_shape)


def _full_sum(flat: np.ndarray) -> np.ndarray:
    """torch's sum of a contiguous 1-d array: per-thread chunk sums, then their sum."""
    chunks = _chunks(flat.size)
    if len(chunks) <= 1:
        return _flat_sum(flat) + flat.dtype.type(0)
    # every thread owns a slot, zero if it got no chunk; the slots are summed like a tensor
    slots = np.zeros(_num_threads, flat.dtype)
    for t, (b, e) in enumerate(chunks):
        slots[t] = _flat_sum(flat[b:e])
    return _flat_sum(slots) + flat.dtype.type(0)


def _full_sum_rows(flat: np.ndarray, row: int, unit: bool) -> np.ndarray:
    """torch's threaded sum of a view walked as rows of ``row`` elements (``flat`` holds
    them in walk order): each thread adds its rows, cut where its range begins or ends, one
    by one into its slot, each summed by the row kernel (contiguous or strided, ``unit``)."""

    def piece(seg: np.ndarray) -> np.ndarray:  # one row, or the part of one a thread holds
        return _flat_sum(seg) if unit else _row_sum(seg)

    def rows(block: np.ndarray) -> np.ndarray:  # whole rows at once, one sum each
        if unit and row >= _lanes(block.dtype):
            return _inner_vec_sum(block.T, _lanes(block.dtype))
        return _row_sum(block.T)

    slots = np.zeros(_num_threads, flat.dtype)
    for t, (b, e) in enumerate(_chunks(flat.size)):
        parts = [np.zeros(1, flat.dtype)]
        first = min(e, (b // row + 1) * row) if b % row else b
        if first > b:
            parts.append(np.atleast_1d(piece(flat[b:first])))
        whole = first + (e - first) // row * row
        if whole > first:
            parts.append(rows(flat[first:whole].reshape(-1, row)))
        if whole < e:
            parts.append(np.atleast_1d(piece(flat[whole:e])))
        slots[t] = _fold(np.concatenate(parts))
    return _flat_sum(slots) + flat.dtype.type(0)


def reduce_sum(
    x: np.ndarray, axis: int | tuple[int, ...] | None = None, keepdims: bool = False
) -> np.ndarray:
    """``x`` summed over ``axis`` (``None`` or ``()``: every axis) with ``torch.sum``'s bits.

    Takes the kernel, summation tree and thread split torch uses on a tensor laid out as ``x``
    (transposed and sliced views are walked as torch walks them). The result keeps ``x``'s
    dtype, is row-major and always an array (0-d for a full reduction).
    """
    x = np.asarray(x)
    _check_float(x)
    axes = _normalize_axes(axis, x.ndim)
    if any(st == 0 and n > 1 for st, n in zip(x.strides, x.shape, strict=True)):
        x = _contiguous(x)  # a broadcast view: summed as the tensor it stands for
    kept_shape = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN arise quietly, as in torch
        full = x.size and all(n == 1 for n in kept_shape)
        if full and _strided(x):
            perm, inner, unit = _walk(x)
            if unit and inner == x.size:  # one run: the contiguous case, in memory order
                out = _full_sum(np.transpose(x, perm).reshape(-1))
            elif x.size < _GRAIN_SIZE or _num_threads == 1:
                out = _serial_sum(x, axes)  # rows of a sliced view, one after another
            else:  # threads take runs of whole and cut rows
                out = _full_sum_rows(np.transpose(x, perm).reshape(-1), inner, unit)
        elif full:
            out = _full_sum(_contiguous(x).reshape(-1))  # one output: torch's two passes
        else:
            out = _serial_sum(x, axes)
    out = _contiguous(np.asarray(out))  # torch's result is a new row-major tensor
    if keepdims:
        return out.reshape(tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return out.reshape(kept_shape)


def mean(
    x: np.ndarray, axis: int | tuple[int, ...] | None = None, keepdims: bool = False
) -> np.ndarray:
    """``torch.mean``: the cascade sum, then a true division by the count cast to the dtype.

    An empty reduction gives NaN, as in torch.
    """
    x = np.asarray(x)
    _check_float(x)
    axes = _normalize_axes(axis, x.ndim)
    count = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
    total = reduce_sum(x, axes if axes else None, keepdims)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.divide(total, x.dtype.type(count)))


# ---------------------------------------------------------------------------------------------
# Elementwise kernels
#
# torch runs an elementwise kernel over each thread's chunk in blocks of two vectors (16
# float32, 8 float64) and hands the last few elements of the chunk to the scalar version of the
# kernel. At the AVX2 level the two versions can differ: sigmoid's vector code calls Sleef's
# exp, its scalar code the C library's. At the DEFAULT level the "vectors" are loops over the
# same scalar code.
# ---------------------------------------------------------------------------------------------



def _fma32_ties(v: np.ndarray) -> np.ndarray:
    """Where a float64 ``a * b + c`` of float32 operands would round twice on its way to float32.

    The product of two float32 values is exact in float64, so ``v`` carries one rounding;
    rounding it again to float32 is correct unless ``v`` landed exactly halfway between two
    float32 values, which is rare and is then redone exactly.
    """
    return (v.view(np.uint64) & _F32_TIE_MASK) == _F32_TIE


def _f32(text: str) -> np.float32:
    """A float32 constant given as a decimal literal, rounded once (as a C compiler does)."""
    from fractions import Fraction

    exact = Fraction(text)
    near = np.float32(float(exact))
    return min(
        (np.nextafter(near, np.float32(-np.inf)), near, np.nextafter(near, np.float32(np.inf))),
        key=lambda c: abs(Fraction(float(c)) - exact),
    )


# Sleef's single-precision exp (``expf_u10``): constants of its source, as the compiler rounds them
_SLEEF_R_LN2F = _f32("1.442695040888963407359924681001892137426645954152985934135449406931")
_SLEEF_L2UF = _f32("0.693145751953125")
_SLEEF_L2LF = _f32("1.428606765330187045e-06")
_SLEEF_EXPF_POLY = tuple(
    np.float32(c)  # double literals passed to a float parameter: rounded via double, as in C
    for c in (
        0.000198527617612853646278381,
        0.00139304355252534151077271,
        0.00833336077630519866943359,
        0.0416664853692054748535156,
        0.166666671633720397949219,
        0.5,
    )
)


def _sleef_expf(d: np.ndarray, exact: bool = False) -> np.ndarray:
    """Sleef's ``expf8_u10`` as torch's AVX2 build runs it (every multiply-add fused).

    The fused multiply-adds run in float64 and are checked for double rounding all at once
    (see :func:`_fma32_ties`); the rare elements at risk are redone with the exact :func:`fma`.
    """
    sums = None if exact else np.empty((6, *d.shape), np.float64)
    step = iter(range(6))

    def fma32(a, b, c):
        if exact:
            return fma(a, b, c).astype(np.float32)
        v = np.multiply(a, b, out=sums[next(step)], dtype=np.float64)
        v += c
        return v.astype(np.float32)

    with np.errstate(all="ignore"):
        # q = round-half-even(d / ln 2); outside [-104, 100] the result is replaced below, so q
        # is clipped where the vector code would saturate its integer conversion
        qf = np.rint(d * _SLEEF_R_LN2F)
        np.clip(qf, -256, 256, out=qf)
        q = qf.astype(np.int32)
        # s = d - q ln 2 in two parts; both products and sums are exact in float64 here
        s = (qf * np.float64(-_SLEEF_L2UF) + d).astype(np.float32)
        s = (qf * np.float64(-_SLEEF_L2LF) + s).astype(np.float32)
        sd = s if exact else s.astype(np.float64)
        # a degree-5 polynomial in Horner form: exp(s) ~ 1 + s + s**2 * u
        poly = _SLEEF_EXPF_POLY
        u = fma32(np.full(d.shape, poly[0]), sd, poly[1])
        for c in poly[2:]:
            u = fma32(u, sd, c)
        u = np.float32(1) + fma32(s * s, u, sd)
        # scale by 2**q in two halves so that 2**q itself never overflows
        half = q >> 1
        u = np.ldexp(np.ldexp(u, half), q - half)
        u[d < np.float32(-104)] = 0
        u[np.float32(100) < d] = np.inf
    if not exact:
        ties = _fma32_ties(sums).any(axis=0)
        if ties.any():
            u[ties] = _sleef_expf(d[ties], exact=True)
    return u


def _exp2_table(bits: int) -> np.ndarray:
    """``2**(i / 2**bits)`` rounded to float64, for ``i`` in ``[0, 2**bits)``."""
    import decimal

    ctx = decimal.Context(prec=60)
    n = 1 << bits
    return np.array(
        [float(ctx.power(decimal.Decimal(2), decimal.Decimal(i) / n)) for i in range(n)],
        np.float64,
    )


# glibc's expf (2.28 and later): exp(x) = 2**(k/32) * p(r), evaluated in double and rounded once.
# The table holds the bits of 2**(i/32) less i/32 in the exponent field, so adding k << 47
# rescales by 2**(k//32).
_EXPF_BITS = 5
_EXPF_TAB = _exp2_table(_EXPF_BITS).view(np.uint64) - (
    np.arange(1 << _EXPF_BITS, dtype=np.uint64) << np.uint64(52 - _EXPF_BITS)
)
_EXPF_INV_LN2N = float.fromhex("0x1.71547652b82fep+0") * (1 << _EXPF_BITS)
_EXPF_SHIFT = float.fromhex("0x1.8p+52")
_EXPF_C = (
    float.fromhex("0x1.c6af84b912394p-5") / 32**3,
    float.fromhex("0x1.ebfce50fac4f3p-3") / 32**2,
    float.fromhex("0x1.62e42ff0c52d6p-1") / 32,
)
_EXPF_OFLOW = np.float32(float.fromhex("0x1.62e42ep6"))  # above: +inf
_EXPF_UFLOW = np.float32(-float.fromhex("0x1.9fe368p6"))  # below: 0
_EXPF_MAY_UFLOW = np.float32(-float.fromhex("0x1.9d1d9ep6"))  # below: the least subnormal


def _glibc_expf_core(x: np.ndarray, fused: bool) -> np.ndarray:
    """The double-precision body of glibc's expf; ``fused`` as its FMA build contracts it."""
    xd = x.astype(np.float64)
    if fused:
        kd = _fma64(_EXPF_INV_LN2N, xd, _EXPF_SHIFT)
    else:
        z = _EXPF_INV_LN2N * xd
        kd = z + _EXPF_SHIFT
    ki = kd.view(np.uint64)
    kd = kd - _EXPF_SHIFT
    r = _fma64(_EXPF_INV_LN2N, xd, -kd) if fused else z - kd
    s = (_EXPF_TAB[ki & np.uint64(31)] + (ki << np.uint64(52 - _EXPF_BITS))).view(np.float64)
    c0, c1, c2 = _EXPF_C
    if fused:
        y = _fma64(_fma64(c0, r, c1), r * r, _fma64(c2, r, 1.0))
    else:
        y = (c0 * r + c1) * (r * r) + (c2 * r + 1.0)
    return y * s, r


def _glibc_expf(x: np.ndarray) -> np.ndarray:
    """glibc's ``expf`` (x86-64, FMA build), as torch's scalar float32 kernels call it.

    It is not always correctly rounded, so it is followed step by step. The fused evaluation
    is costly in NumPy; the plain one differs from it by a few hundred float64 ulps at most,
    which can only matter when the result is near a float32 rounding boundary or ``k`` near a
    rounding tie. Only those rare elements are redone fused.
    """
    x = np.asarray(x, np.float32)
    with np.errstate(all="ignore"):
        y, r = _glibc_expf_core(x, fused=False)
        low = (y.view(np.uint64) & _F32_TIE_MASK).astype(np.int64)
        risky = np.abs(low - int(_F32_TIE)) < (1 << 12)
        risky |= np.abs(np.abs(r) - 0.5) < 2.0**-30
        risky |= np.abs(y) < 2.0**-125  # float32 subnormal results round differently
        if risky.any():
            y[risky] = _glibc_expf_core(x[risky], fused=True)[0]
        out = y.astype(np.float32)

        # glibc's special cases for |x| >= 88, infinities and NaN
        big = ~(np.abs(x) < np.float32(88))
        if big.any():
            xb = x[big]
            ob = out[big]
            ob[xb < _EXPF_MAY_UFLOW] = np.float32(2.0**-149)
            ob[xb < _EXPF_UFLOW] = 0
            ob[xb > _EXPF_OFLOW] = np.inf
            nonfinite = ~np.isfinite(xb)
            ob[nonfinite] = xb[nonfinite] + xb[nonfinite]
            ob[xb == -np.inf] = 0
            out[big] = ob
    return out


def _scalar_tails(n: int, block: int) -> np.ndarray | slice:
    """Indices of the elements torch's vectorized loop leaves to its scalar code: the last
    ``(end - begin) % block`` of every thread's chunk."""
    tails = [(b + (e - b) // block * block, e) for b, e in _chunks(n)]
    if len(tails) <= 1:
        return slice(*tails[0]) if tails else slice(0, 0)
    return np.concatenate([np.arange(b, e) for b, e in tails])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``torch.sigmoid``: ``1 / (exp(-x) + 1)`` with the exp torch's kernel level calls.

    AVX2: Sleef's exp on blocks of 16 float32 (8 float64) elements, glibc's on the rest of
    each thread's chunk. DEFAULT: glibc's everywhere. Saturates to 0 and 1 without warnings.
    """
    x = np.asarray(x)
    _check_float(x)
    if _strided(x):
        # torch walks the view in memory order and lays its result out the same way
        perm, inner, unit = _walk(x)
        walked = np.transpose(x, perm)
        if unit and inner == x.size:
            out = _sigmoid_flat(walked.reshape(-1), None)
        else:
            # vector blocks restart every row (and every thread's range), and only a
            # contiguous row has any
            out = _sigmoid_flat(walked.copy().reshape(-1), inner if unit else 0)
        return _like_torch_output(x, np.transpose(out.reshape(walked.shape), np.argsort(perm)))
    x = _contiguous(x)
    return _sigmoid_flat(x.reshape(-1), None).reshape(x.shape)


def _sigmoid_flat(flat: np.ndarray, row: int | None) -> np.ndarray:
    """sigmoid of a contiguous 1-d array, walked as one run (``row`` None) or as rows of
    ``row`` elements, each with its own vector blocks and scalar tail, as is each thread's
    range (``row`` 0: rows read with a stride, all scalar)."""
    one = flat.dtype.type(1)
    single = flat.dtype == np.float32
    with np.errstate(all="ignore"):
        neg = flat.dtype.type(0) - flat
        if _profile == "avx2":
            # each element goes through exactly one of the two exps
            vector_exp, scalar_exp = _sleef_expf, _glibc_expf
            if not single:
                vector_exp, scalar_exp = _sleef_exp, _glibc_exp
            block = 2 * _lanes(flat.dtype)
            if row == 0:
                tail, vector = slice(None), slice(0, 0)
            elif row is not None:
                n = flat.size
                starts = np.union1d(np.arange(0, n, row), [b for b, _ in _chunks(n)])
                lengths = np.diff(np.append(starts, n))
                at = np.arange(n)
                seg = np.searchsorted(starts, at, side="right") - 1
                tail = at - starts[seg] >= lengths[seg] - lengths[seg] % block
                vector = ~tail
            else:
                tail = _scalar_tails(flat.size, block)
                if isinstance(tail, slice):
                    vector = slice(0, tail.start)  # one chunk: whole blocks, then its tail
                else:
                    vector = np.ones(flat.size, dtype=bool)
                    vector[tail] = False
            e = np.empty_like(neg)
            e[vector] = vector_exp(neg[vector])
            e[tail] = scalar_exp(neg[tail])
        else:
            e = _glibc_expf(neg) if single else _glibc_exp(neg)
        return one / (e + one)


def sigmoid_backward(grad: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of sigmoid from its output ``y``: ``(grad * (1 - y)) * y``, torch's order.

    No multiply-add to fuse, so every kernel level gives the same bits.
    """
    grad, y = np.asarray(grad), np.asarray(y)
    dtype = np.result_type(grad, y)
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"expected float32 or float64 arrays, got {grad.dtype} and {y.dtype}")
    grad, y = grad.astype(dtype, copy=False), y.astype(dtype, copy=False)
    with np.errstate(all="ignore"):
        return np.asarray((grad * (dtype.type(1) - y)) * y)


def _exp_tail_table(bits: int) -> np.ndarray:
    """glibc's exp table: per ``i``, the relative error of the float64 ``2**(i / 2**bits)`` and
    that float64's bits less ``i / 2**bits`` in the exponent field."""
    import decimal

    ctx = decimal.Context(prec=80)
    n = 1 << bits
    out = np.empty(2 * n, np.uint64)
    for i in range(n):
        exact = ctx.power(decimal.Decimal(2), decimal.Decimal(i) / n)
        head = float(exact)
        tail = float(ctx.divide(ctx.subtract(exact, decimal.Decimal(head)), decimal.Decimal(head)))
        out[2 * i] = np.float64(tail).view(np.uint64)
        out[2 * i + 1] = np.float64(head).view(np.uint64) - np.uint64(i << (52 - bits))
    return out


# glibc's exp (2.28 and later): exp(x) = 2**(k/128) * (1 + tail + p(r)), rounded once at the end
_EXP_BITS = 7
_EXP_TAB = _exp_tail_table(_EXP_BITS)
_EXP_INV_LN2N = float.fromhex("0x1.71547652b82fep0") * (1 << _EXP_BITS)
_EXP_NEG_LN2_HI = -float.fromhex("0x1.62e42fefa0000p-8")
_EXP_NEG_LN2_LO = -float.fromhex("0x1.cf79abc9e3b3ap-47")
_EXP_SHIFT = float.fromhex("0x1.8p52")
_EXP_C = tuple(
    float.fromhex(c)
    for c in (
        "0x1.ffffffffffdbdp-2",
        "0x1.555555555543cp-3",
        "0x1.55555cf172b91p-5",
        "0x1.1111167a4d017p-7",
    )
)


def _glibc_exp(x: np.ndarray) -> np.ndarray:
    """glibc's double ``exp`` (x86-64, FMA build), as torch's scalar float64 kernels call it.

    The FMA build fuses the argument reduction, the polynomial and the final scaling; its
    out-of-range path for ``|x| >= 512`` towards zero is evaluated without fusing, so that the
    result rounds once in the subnormal range.
    """
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        kd = _fma64(_EXP_INV_LN2N, x, _EXP_SHIFT)
        ki = kd.view(np.uint64)
        kd = kd - _EXP_SHIFT
        r = _fma64(kd, _EXP_NEG_LN2_LO, _fma64(kd, _EXP_NEG_LN2_HI, x))
        idx = (ki & np.uint64((1 << _EXP_BITS) - 1)) * np.uint64(2)
        tail = _EXP_TAB[idx].view(np.float64)
        sbits = _EXP_TAB[idx + np.uint64(1)] + (ki << np.uint64(52 - _EXP_BITS))
        c2, c3, c4, c5 = _EXP_C
        r2 = r * r
        tmp = _fma64(r2 * r2, _fma64(r, c5, c4), _fma64(r2, _fma64(r, c3, c2), tail + r))
        scale = sbits.view(np.float64)
        out = _fma64(scale, tmp, scale)

        ax = np.abs(x)
        special = ~(ax < 512.0)
        if special.any():
            up = special & ((ki & np.uint64(0x80000000)) == 0)
            s = (sbits[up] - np.uint64(1009 << 52)).view(np.float64)
            out[up] = 2.0**1009 * _fma64(s, tmp[up], s)
            down = special & ~up
            s = (sbits[down] + np.uint64(1022 << 52)).view(np.float64)
            p = s * tmp[down]
            y = s + p
            # round once at the subnormal precision: 1 + y holds exactly the bits that survive
            lo = (s - y) + p
            hi = 1.0 + y
            lo = ((1.0 - hi) + y) + lo
            y = np.where(y < 1.0, (hi + lo) - 1.0, y)
            y[y == 0] = 0.0
            out[down] = 2.0**-1022 * y
        tiny = ax < 2.0**-54
        out[tiny] = 1.0 + x[tiny]
        huge = ~(ax < 1024.0)
        xh = x[huge]
        out[huge] = np.where(np.isnan(xh) | (xh == np.inf), 1.0 + xh, np.where(xh > 0, np.inf, 0.0))
    return out


# Sleef's double-precision exp (``expd4_u10``)
_SLEEF_R_LN2 = 1.442695040888963407359924681001892137426645954152985934135449406931
_SLEEF_L2U = 0.69314718055966295651160180568695068359375
_SLEEF_L2L = 0.28235290563031577122588448175013436025525412068e-12
_SLEEF_LOG_DBL_MAX = float.fromhex("0x1.62e42fefa39efp+9")
_SLEEF_EXP_POLY = (  # c9 .. c0 of exp(s) ~ 1 + s + s**2 (1/2 + s (c0 + c1 s + ...))
    0.2081276378237164457e-8,
    0.2511210703042288022e-7,
    0.2755762628169491192e-6,
    0.2755723402025388239e-5,
    0.2480158687479686264e-4,
    0.1984126989855865850e-3,
    0.1388888888914497797e-2,
    0.8333333333314938210e-2,
    0.4166666666666602598e-1,
    0.1666666666666669072e0,
)


def _pow2i64(k: np.ndarray) -> np.ndarray:
    """``2.0**k`` as float64 built from its exponent bits (wrapping as the integer code does)."""
    high = ((k.astype(np.int64) + 0x3FF) << 20) & 0xFFFFFFFF
    return (high.astype(np.uint64) << np.uint64(32)).view(np.float64)


def _sleef_exp(d: np.ndarray) -> np.ndarray:
    """Sleef's ``expd4_u10`` as torch's AVX2 build runs it: an Estrin-scheme polynomial with
    every multiply-add fused."""
    f = _fma64
    with np.errstate(all="ignore"):
        u = np.rint(d * _SLEEF_R_LN2)
        q = np.where(np.abs(u) < 2.0**31, u, -(2.0**31)).astype(np.int32)
        s = f(u, -_SLEEF_L2U, d)
        s = f(u, -_SLEEF_L2L, s)
        s2 = s * s
        s4 = s2 * s2
        s8 = s4 * s4
        c9, c8, c7, c6, c5, c4, c3, c2, c1, c0 = _SLEEF_EXP_POLY
        low = f(s4, f(s2, f(s, c7, c6), f(s, c5, c4)), f(s2, f(s, c3, c2), f(s, c1, c0)))
        u = f(s8, f(s, c9, c8), low)
        u = f(u, s, 0.5)
        u = f(u, s, 1.0)
        u = f(u, s, 1.0)
        half = q >> 1
        u = (u * _pow2i64(half)) * _pow2i64(q - half)
        u[d > _SLEEF_LOG_DBL_MAX] = np.inf
        u[d < -1000.0] = 0
    return u


def exp(x: np.ndarray) -> np.ndarray:
    """``torch.exp``. torch calls MKL's vector math here at every kernel level, so this goes
    through the :data:`kernels` seam: within 1 ulp of torch, bit-equal with torch's swapped in.
    """
    x = np.asarray(x)
    _check_float(x)
    return kernels.exp(x)


def tanh(x: np.ndarray) -> np.ndarray:
    """``torch.tanh``: MKL's vector math in torch, so through the :data:`kernels` seam."""
    x = np.asarray(x)
    _check_float(x)
    return kernels.tanh(x)


def log(x: np.ndarray) -> np.ndarray:
    """``torch.log``: MKL's vector math in torch, so through the :data:`kernels` seam."""
    x = np.asarray(x)
    _check_float(x)
    return kernels.log(x)
