"""tinymf.arith against the real torch, bit for bit.

torch runs in this process at the kernel level the test session pinned
(``ATEN_CPU_CAPABILITY``, see conftest.py), with tinymf's profile and thread count set to
match. The DEFAULT level is checked in a subprocess, since a process can only import torch
at one level.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymf import arith

torch = pytest.importorskip("torch")

LEVEL = "default" if torch.backends.cpu.get_cpu_capability() == "DEFAULT" else "avx2"
DTYPES = (np.float32, np.float64)
# tiny, subnormal, huge, signed zeros, where exp saturates or goes subnormal, non-finite
SPECIALS = np.array(
    "0 -0 1e-45 -1e-45 1e-40 1e-30 3e38 -3e38 20 -20 100 -100 -1000 88.7 -88.7 -103.9 -104 "
    "inf -inf nan".split(),
    dtype=np.float64,
)


@pytest.fixture(autouse=True)
def match_torch():
    """tinymf imitates the kernel level and thread count torch runs with in this process."""
    old = arith.get_num_threads()
    arith.set_num_threads(torch.get_num_threads())
    with arith.profile(LEVEL):
        yield
    arith.set_num_threads(old)


def assert_bits_equal(got: np.ndarray, want: np.ndarray) -> None:
    """Same shape, dtype and bits; any NaN matches any NaN (payloads are not compared)."""
    assert isinstance(got, np.ndarray), type(got)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape)
    uint = np.uint32 if want.dtype == np.float32 else np.uint64
    g, w = np.ascontiguousarray(got).reshape(-1), np.ascontiguousarray(want).reshape(-1)
    nan = np.isnan(w)
    assert np.array_equal(np.isnan(g), nan), "NaN in different places"
    differ = np.flatnonzero(g[~nan].view(uint) != w[~nan].view(uint))
    assert differ.size == 0, (
        f"{differ.size} of {g.size} elements differ, first at {differ[0]}: "
        f"{g[~nan][differ[0]]!r} vs torch {w[~nan][differ[0]]!r}"
    )


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between finite values of one dtype."""
    sint = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = a.view(sint).astype(np.int64), b.view(sint).astype(np.int64)
    # map the sign-magnitude bit patterns onto a monotonic integer line
    ia = np.where(ia < 0, np.iinfo(sint).min - ia, ia)
    ib = np.where(ib < 0, np.iinfo(sint).min - ib, ib)
    return np.abs(ia - ib)


def values(seed: int, shape: tuple[int, ...], dtype, specials: float = 0.0) -> np.ndarray:
    """Random values over many magnitudes; a fraction ``specials`` drawn from SPECIALS."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)
    pick = rng.random(n) < specials
    x[pick] = rng.choice(SPECIALS, int(pick.sum()))
    with np.errstate(over="ignore"):
        return x.astype(dtype).reshape(shape)


def torch_sum(x, axis, keepdims, op="sum"):
    fn = getattr(torch, op)
    t = torch.from_numpy(x)
    return fn(t, dim=axis, keepdim=keepdims).numpy()


# ---------------------------------------------------------------------------------------------
# shapes and axes
# ---------------------------------------------------------------------------------------------

SIDES = (0, 1, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)


@st.composite
def shapes_and_axes(draw, max_size: int = 300_000):
    """A shape (0-d to 4-d, sometimes one long side of up to 5000) and the axes to reduce."""
    ndim = draw(st.integers(0, 4))
    shape = [draw(st.sampled_from(SIDES)) for _ in range(ndim)]
    if ndim and draw(st.booleans()):
        shape[draw(st.integers(0, ndim - 1))] = draw(st.integers(1, 5000))
    while np.prod(shape) > max_size:
        shape[int(np.argmax(shape))] //= 2
    if draw(st.booleans()) or ndim == 0:
        axis = None if draw(st.booleans()) or ndim == 0 else ()
    else:
        chosen = draw(st.sets(st.integers(0, ndim - 1), min_size=1))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in sorted(chosen))
        if len(axis) == 1 and draw(st.booleans()):
            axis = axis[0]
    return tuple(shape), axis


# ---------------------------------------------------------------------------------------------
# sum and mean
# ---------------------------------------------------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(shapes_and_axes(), st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**32 - 1))
def test_sum_is_bit_equal_to_torch(shape_axis, dtype, keepdims, seed):
    shape, axis = shape_axis
    x = values(seed, shape, dtype)
    assert_bits_equal(arith.reduce_sum(x, axis, keepdims), torch_sum(x, axis, keepdims))


@settings(max_examples=120, deadline=None)
@given(shapes_and_axes(), st.sampled_from(DTYPES), st.booleans(), st.integers(0, 2**32 - 1))
def test_mean_is_bit_equal_to_torch(shape_axis, dtype, keepdims, seed):
    shape, axis = shape_axis
    x = values(seed, shape, dtype)
    assert_bits_equal(arith.mean(x, axis, keepdims), torch_sum(x, axis, keepdims, "mean"))


@settings(max_examples=80, deadline=None)
@given(shapes_and_axes(max_size=20_000), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_sum_of_special_values_is_bit_equal_to_torch(shape_axis, dtype, seed):
    # negative zeros come out +0 (torch adds into a zero-filled output), overflow gives inf,
    # inf - inf gives NaN
    shape, axis = shape_axis
    x = values(seed, shape, dtype, specials=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow and inf - inf stay quiet, as in torch
        got = arith.reduce_sum(x, axis)
    assert_bits_equal(got, torch_sum(x, axis, False))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 31, 32, 33, 63, 4095, 32767, 32768, 40000, 100003])
def test_full_sum_of_1d_is_bit_equal_to_torch(n, dtype):
    x = values(n, (n,), dtype)
    assert_bits_equal(arith.reduce_sum(x), torch.sum(torch.from_numpy(x)).numpy())
    assert_bits_equal(arith.mean(x), torch.mean(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((3_000_001,), None),  # ILP rows past 2**16: still blocks of 16
        ((17_000_011,), None),  # more than 2**19 rows of 32: blocks of 32
        ((600_001, 33), 0),  # outer reduction, 2**19+ rows: blocks of 32 in the cascade
        ((2_100_000, 3), 0),  # scalar outer kernel over a long column
    ],
)
def test_long_reductions_take_torch_level_steps(shape, axis):
    x = values(7, shape, np.float32)
    assert_bits_equal(arith.reduce_sum(x, axis), torch_sum(x, axis, False))


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize(
    "shape, axis",
    [
        ((1 << 20,), None),
        ((40_000,), None),
        ((100_003,), None),
        ((5000, 37), 0),
        ((300, 200), 0),
        ((70_000, 3), 0),
        ((2, 40_000), 1),
        ((1, 50_000), None),
    ],
)
def test_sum_follows_torch_thread_count(threads, shape, axis):
    x = values(11, shape, np.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        arith.set_num_threads(threads)
        assert_bits_equal(arith.reduce_sum(x, axis), torch_sum(x, axis, False))
    finally:
        torch.set_num_threads(old)


def test_two_threads_change_torch_bits_of_a_large_full_sum():
    """Measured: a full sum of 32768+ elements is cut into one chunk per thread, and that
    changes torch's own result (here for 1M float32 values), which is why tinymf imitates a
    thread count instead of pinning torch to one thread."""
    x = values(11, (1 << 20,), np.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.sum(torch.from_numpy(x)).numpy()
        torch.set_num_threads(2)
        two = torch.sum(torch.from_numpy(x)).numpy()
    finally:
        torch.set_num_threads(old)
    assert one.view(np.uint32) != two.view(np.uint32)
    arith.set_num_threads(1)
    assert_bits_equal(arith.reduce_sum(x), one)
    arith.set_num_threads(2)
    assert_bits_equal(arith.reduce_sum(x), two)


def test_sum_differs_from_numpy_pairwise_sum():
    # why the cascade is needed at all: NumPy's pairwise sum rounds differently, often
    xs = [values(seed, (1000,), np.float32) for seed in range(20)]
    assert sum(bool(arith.reduce_sum(x) != np.sum(x)) for x in xs) >= 5


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_keeps_dtype_and_returns_arrays(dtype):
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    for out in (arith.reduce_sum(x), arith.mean(x), arith.reduce_sum(x, 1), arith.mean(x, (0, 1))):
        assert isinstance(out, np.ndarray) and out.dtype == dtype
    assert arith.reduce_sum(np.array(2.5, dtype)).shape == ()
    # () means every axis, as in torch
    assert arith.reduce_sum(x, (), keepdims=True).shape == (1, 1)


def test_sum_rejects_bad_axes_and_dtypes():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        arith.reduce_sum(x, 2)
    with pytest.raises(ValueError):
        arith.reduce_sum(x, (0, -2))
    with pytest.raises(TypeError):
        arith.reduce_sum(np.zeros(3, np.int64))


def test_mean_divides_by_the_count_rather_than_multiplying_by_its_reciprocal():
    x = np.random.default_rng(1).standard_normal(63).astype(np.float32)
    total = arith.reduce_sum(x)
    assert total / np.float32(63) != total * (np.float32(1) / np.float32(63))
    assert_bits_equal(arith.mean(x), torch.mean(torch.from_numpy(x)).numpy())
    assert arith.mean(x) == total / np.float32(63)


def test_mean_of_nothing_is_nan_like_torch():
    x = np.zeros((3, 0), np.float32)
    assert_bits_equal(arith.mean(x, 1), torch.mean(torch.from_numpy(x), dim=1).numpy())
    assert_bits_equal(arith.reduce_sum(x, 1), torch.sum(torch.from_numpy(x), dim=1).numpy())


# ---------------------------------------------------------------------------------------------
# sigmoid, its gradient, exp
# ---------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.integers(0, 300), st.integers(301, 5000), st.integers(32_760, 70_000)),
    st.sampled_from(DTYPES),
    st.sampled_from([0.0, 0.05, 0.5]),
    st.integers(0, 2**32 - 1),
)
def test_sigmoid_is_bit_equal_to_torch(n, dtype, specials, seed):
    if dtype == np.float64 and n > 5000:
        n //= 8  # float64 FMAs are emulated slowly; the thread split is exercised in float32
    x = values(seed, (n,), dtype, specials)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings may leak
        got = arith.sigmoid(x)
    assert_bits_equal(got, torch.sigmoid(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_every_float32_pattern_near_the_exp_boundaries(dtype):
    # dense runs of inputs where Sleef's exp saturates, goes subnormal, or reduces near ties
    grids = [np.linspace(a, b, 20_011) for a, b in [(-105, -86), (85, 105), (-1, 1), (-20, 20)]]
    x = np.concatenate(grids).astype(dtype)
    assert_bits_equal(arith.sigmoid(x), torch.sigmoid(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_without_nan_or_warnings(dtype):
    x = np.array([-1000, -100, 100, 1000, -np.inf, np.inf], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = arith.sigmoid(x)
    assert y.dtype == dtype
    assert list(y) == [0, 0 if dtype == np.float32 else y[1], 1, 1, 0, 1]
    assert not np.isnan(y).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (4, 16), (1000,), (33, 17, 5)])
def test_sigmoid_keeps_shape_and_dtype(shape, dtype):
    x = values(1, shape, dtype)
    y = arith.sigmoid(x)
    assert isinstance(y, np.ndarray) and y.shape == shape and y.dtype == dtype
    assert_bits_equal(y, torch.sigmoid(torch.from_numpy(x)).numpy())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40_000), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_sigmoid_backward_is_bit_equal_to_torch(n, dtype, seed):
    rng = np.random.default_rng(seed)
    grad = values(seed, (n,), dtype, specials=0.02)
    y = rng.uniform(0, 1, n).astype(dtype)
    want = torch.ops.aten.sigmoid_backward(torch.from_numpy(grad), torch.from_numpy(y))
    assert_bits_equal(arith.sigmoid_backward(grad, y), want.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_gradient_through_autograd_is_bit_equal(dtype):
    x = values(5, (63,), dtype)
    g = values(6, (63,), dtype)
    t = torch.from_numpy(x).requires_grad_(True)
    torch.sigmoid(t).backward(torch.from_numpy(g))
    y = arith.sigmoid(x)
    assert_bits_equal(arith.sigmoid_backward(g, y), t.grad.numpy())


@pytest.mark.parametrize("name", ["exp", "tanh", "log"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_vml_functions_are_within_one_ulp_of_torch(name, dtype):
    """torch takes exp, tanh and log from MKL's vector math at every kernel level; measured
    here: at most 1 ulp from the correctly rounded result on 0.04% to 20% of elements."""
    x = values(2, (200_000,), dtype)
    if name == "log":
        x = np.abs(x)
    with np.errstate(all="ignore"):
        got = getattr(arith, name)(x)
    want = getattr(torch, name)(torch.from_numpy(x)).numpy()
    assert got.dtype == dtype and got.shape == x.shape
    finite = np.isfinite(want)
    assert np.array_equal(finite, np.isfinite(got))
    assert np.array_equal(got[~finite], want[~finite], equal_nan=True)
    assert ulp_distance(got[finite], want[finite]).max() <= 1


def test_vml_functions_are_bit_equal_with_torch_kernels_swapped_in():
    x = values(4, (1000,), np.float32)
    x_pos = np.abs(x)
    with arith.use_kernels(
        exp=lambda a: torch.exp(torch.from_numpy(a)).numpy(),
        tanh=lambda a: torch.tanh(torch.from_numpy(a)).numpy(),
        log=lambda a: torch.log(torch.from_numpy(a)).numpy(),
    ):
        assert_bits_equal(arith.exp(x), torch.exp(torch.from_numpy(x)).numpy())
        assert_bits_equal(arith.tanh(x), torch.tanh(torch.from_numpy(x)).numpy())
        assert_bits_equal(arith.log(x_pos), torch.log(torch.from_numpy(x_pos)).numpy())
    assert arith.kernels.exp is not None and arith.kernels.sqrt is np.sqrt  # restored


def test_exp_saturates_without_warnings():
    x = np.array([-1000, 0, 1000, np.nan], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = arith.exp(x)
    assert y[0] == 0 and y[1] == 1 and y[2] == np.inf and np.isnan(y[3])


# ---------------------------------------------------------------------------------------------
# the two exp implementations inside sigmoid, checked directly
# ---------------------------------------------------------------------------------------------


def _libm():
    if not sys.platform.startswith("linux"):
        pytest.skip("torch's scalar exp is the C library's; checked against glibc only")
    path = ctypes.util.find_library("m")
    if path is None:
        pytest.skip("no libm")
    lib = ctypes.CDLL(path)
    lib.expf.restype, lib.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    lib.exp.restype, lib.exp.argtypes = ctypes.c_double, [ctypes.c_double]
    return lib


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_exp_is_the_c_librarys(dtype):
    lib = _libm()
    rng = np.random.default_rng(9)
    if dtype == np.float32:
        # random bit patterns cover every binade, NaN and infinities
        bits = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
        x = np.concatenate([bits.view(np.float32), rng.uniform(-110, 100, 20_000).astype(dtype)])
        fn, ours = lib.expf, arith._glibc_expf
    else:
        x = np.concatenate([rng.uniform(-760, 720, 20_000), rng.standard_normal(10_000)])
        fn, ours = lib.exp, arith._glibc_exp
    want = np.array([fn(float(v)) for v in x], dtype)
    with np.errstate(all="ignore"):
        assert_bits_equal(ours(x), want)


def test_fast_float32_fma_paths_agree_with_exact_ones():
    # Sleef's float32 FMAs run in float64 with a tie check, glibc's expf unfused with a
    # near-boundary check; both are shortcuts that must equal the exact evaluation
    x = values(13, (200_000,), np.float32, specials=0.01)
    x = np.concatenate([x, np.linspace(-110, 110, 100_003, dtype=np.float32)])
    with np.errstate(all="ignore"):
        assert_bits_equal(arith._sleef_expf(x), arith._sleef_expf(x, exact=True))
        normal = x[np.abs(x) < 87]
        fused = arith._glibc_expf_core(normal, fused=True)[0].astype(np.float32)
        assert_bits_equal(arith._glibc_expf(normal), fused)


@pytest.mark.skipif(LEVEL != "avx2", reason="Sleef's exp runs at the AVX2 level")
@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_exp_is_sleefs(dtype):
    # a length that is a multiple of 16 runs entirely through the vector code
    x = values(12, (4096 * 16,), dtype, specials=0.02)
    with np.errstate(all="ignore"):
        exp = arith._sleef_expf if dtype == np.float32 else arith._sleef_exp
        ours = dtype(1) / (exp(dtype(0) - x) + dtype(1))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert_bits_equal(ours, torch.sigmoid(torch.from_numpy(x)).numpy())
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# the other kernel level, in a subprocess
# ---------------------------------------------------------------------------------------------

OTHER_LEVEL = "default" if LEVEL == "avx2" else "avx2"

_CHILD = r"""
import json, sys
import numpy as np
import torch
inputs = np.load(sys.argv[1])
cases = json.loads(sys.argv[2])
torch.set_num_threads(int(sys.argv[3]))
out = {}
for i, (op, key, key2, axis, keepdims) in enumerate(cases):
    x = torch.from_numpy(inputs[key])
    if op in ("sum", "mean"):
        fn = getattr(torch, op)
        axis = tuple(axis) if isinstance(axis, list) else axis
        r = fn(x, dim=axis, keepdim=keepdims)
    elif op == "sigmoid_backward":
        r = torch.ops.aten.sigmoid_backward(x, torch.from_numpy(inputs[key2]))
    else:
        r = getattr(torch, op)(x)
    out[f"r{i}"] = r.numpy()
out["level"] = np.array(torch.backends.cpu.get_cpu_capability())
np.savez(sys.argv[4], **out)
"""


@pytest.fixture(scope="module")
def other_level_cases(tmp_path_factory):
    """Inputs, tinymf's answers at the other level, and torch's, computed in one subprocess."""
    rng = np.random.default_rng(2024)
    inputs, cases = {}, []
    for dtype in DTYPES:
        tag = np.dtype(dtype).name
        for n in (0, 1, 15, 16, 17, 63, 1000, 40_000):
            key = f"v{tag}_{n}"
            inputs[key] = values(n + 1, (n,), dtype, specials=0.05)
            cases.append(("sigmoid", key, None, None, False))
            cases.append(("sum", key, None, None, False))
            cases.append(("mean", key, None, None, False))
            y = f"y{tag}_{n}"
            inputs[y] = rng.uniform(0, 1, n).astype(dtype)
            cases.append(("sigmoid_backward", key, y, None, False))
        key = f"m{tag}"
        inputs[key] = values(3, (37, 5, 64), dtype)
        for axis in (0, 1, 2, (0, 2), (1, 2), (0, 1)):
            cases.append(("sum", key, None, axis, bool(len(str(axis)) % 2)))
            cases.append(("mean", key, None, axis, False))
    tmp = tmp_path_factory.mktemp("level")
    np.savez(tmp / "in.npz", **inputs)
    env = dict(os.environ, ATEN_CPU_CAPABILITY=OTHER_LEVEL)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(tmp / "in.npz"),
            json.dumps(cases),
            str(torch.get_num_threads()),
            str(tmp / "out.npz"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp / "out.npz")
    assert str(got["level"]).lower() == OTHER_LEVEL
    return inputs, cases, got


def test_other_kernel_level_is_bit_equal_to_torch(other_level_cases):
    inputs, cases, want = other_level_cases
    with arith.profile(OTHER_LEVEL):
        for i, (op, key, key2, axis, keepdims) in enumerate(cases):
            x = inputs[key]
            if op == "sum":
                got = arith.reduce_sum(x, axis, keepdims)
            elif op == "mean":
                got = arith.mean(x, axis, keepdims)
            elif op == "sigmoid_backward":
                got = arith.sigmoid_backward(x, inputs[key2])
            else:
                got = getattr(arith, op)(x)
            assert_bits_equal(got, want[f"r{i}"])


def test_sigmoid_differs_between_the_kernel_levels(other_level_cases):
    # the reason for the profile: Sleef's vector exp and glibc's scalar exp round differently
    inputs, _, _ = other_level_cases
    x = inputs["vfloat32_40000"]
    with arith.profile("avx2"):
        a = arith.sigmoid(x)
    with arith.profile("default"):
        b = arith.sigmoid(x)
    assert (a.view(np.uint32) != b.view(np.uint32)).any()
