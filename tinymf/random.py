"""torch's CPU random number generator, reproduced bit for bit in NumPy.

The stream: a Mersenne Twister (mt19937) seeded with the low 32 bits of the seed. torch takes
one 32-bit word per float32 sample and two words, high word first, per float64 sample.

The transformations, as torch 2.13's CPU kernels compute them:

- uniform on ``[low, high)``: ``x = (word & (2**24 - 1)) * 2**-24`` (float32; 53 bits of the
  64-bit pair for float64), then ``x * (high - low) + low`` in the tensor's dtype: one rounding
  where the AVX2 kernel fuses it, two at the DEFAULT level. A result equal to ``high`` becomes
  ``low``.
- normal, fewer than 16 elements: Box-Muller in double on two 53-bit uniforms,
  ``r = sqrt(-2 log1p(-u2))``, ``theta = 2 pi u1``; ``r cos(theta)`` is returned and
  ``r sin(theta)`` is cached for the next small draw until the generator is re-seeded. The
  value is then ``v * std + mean`` in double (fused under AVX2) and cast to the dtype.
- normal, 16 or more elements: n uniforms first, then Box-Muller on each block of 16 with
  ``u1 = 1 - u[0:8]`` and ``u2 = u[8:16]``, writing the cosines then the sines; when n is not a
  multiple of 16, 16 fresh uniforms redo the last 16 elements. ``fma(r cos, std, mean)``.
  float32 under AVX2 uses the Cephes-style ``log256_ps``/``sincos256_ps`` of torch's
  ``avx_mathfun.h`` with the multiply-adds the compiler fused (read off torch's machine code);
  float32 at the DEFAULT level calls glibc's ``logf``/``sincosf``, emulated here step for step;
  float64 calls glibc's ``log``/``sincos`` at both levels, reached here through Python's
  ``math`` (NumPy's own float64 ``log`` is a different, vectorized one on AVX-512 CPUs).

Which level is reproduced follows :func:`tinymf.arith.get_profile`.

Limits: the DEFAULT-level float32 normal follows glibc 2.28+ on a CPU with FMA (the variant
glibc picks there); the float64 normal calls the system libm element by element, about
0.2 s per million samples; ``randperm`` from 214748364 elements on is not reproduced.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

from tinymf import arith

DEFAULT_SEED = 67280421310721  # torch.Generator()'s seed

_N = 624  # words in the mt19937 state
_STATE_BYTES = 5056  # sizeof(CPUGeneratorImplState), the layout of torch.get_rng_state()
_MASK24 = np.uint32(0xFFFFFF)
_MASK53 = np.uint64((1 << 53) - 1)
_CHUNK = 1 << 16  # elements per slice of a large draw: small temporaries, no big copies
_RANDPERM_SMALL = 0xFFFFFFFF // 20  # torch switches randperm's algorithm at this size


# ---------------------------------------------------------------------------------- generator


def _as_seed(seed: int) -> int:
    """A Python integer seed mapped to torch's unsigned 64-bit seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expected an int, got {type(seed).__name__}")
    seed = operator.index(seed)
    if not -(1 << 63) <= seed < (1 << 64):
        raise ValueError(f"seed must lie in [-2**63, 2**64), got {seed} (overflow, as in torch)")
    return seed & 0xFFFFFFFFFFFFFFFF  # a negative seed wraps like a C cast to uint64


def _init_genrand(seed32: int) -> np.ndarray:
    """mt19937's initial state for a 32-bit seed (Matsumoto and Nishimura's init_genrand)."""
    key = [seed32]
    for j in range(1, _N):
        prev = key[-1]
        key.append((1812433253 * (prev ^ (prev >> 30)) + j) & 0xFFFFFFFF)
    return np.array(key, dtype=np.uint32)


class Generator:
    """A CPU random stream that yields the same numbers as ``torch.Generator``."""

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self._mt = np.random.MT19937(0)
        self._draw = np.random.Generator(self._mt)
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> Generator:
        """Re-seed the stream (torch's whole seed range) and forget the cached normal."""
        self._seed = _as_seed(seed)
        key = _init_genrand(self._seed & 0xFFFFFFFF)
        self._mt.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": _N}}
        self._fresh = True  # no word drawn since seeding (torch's state then reads next = 0)
        self._normal_cache: float | None = None
        return self

    def initial_seed(self) -> int:
        """The seed last given, as torch reports it (an unsigned 64-bit integer)."""
        return self._seed

    def get_state(self) -> np.ndarray:
        """A copy of the state: the bytes ``torch.Generator.get_state()`` would hold."""
        st = self._mt.state["state"]
        pos = int(st["pos"])
        buf = np.zeros(_STATE_BYTES, dtype=np.uint8)
        head = np.array([self._seed], dtype="<u8").tobytes()
        left, nxt = (1, 0) if self._fresh else (_N + 1 - pos, pos)
        head += np.array([left, 1], dtype="<i4").tobytes()  # left, seeded
        head += np.array([nxt], dtype="<u8").tobytes()
        head += np.asarray(st["key"], dtype="<u8").tobytes()
        cache = 0.0 if self._normal_cache is None else self._normal_cache
        head += np.array([0.0, cache, 0.0], dtype="<f8").tobytes()  # normal_x, _y, _rho
        head += np.array([self._normal_cache is not None], dtype="<i4").tobytes()
        buf[: len(head)] = np.frombuffer(head, dtype=np.uint8)
        return buf

    def set_state(self, state: np.ndarray | bytes) -> None:
        """Restore a state from :meth:`get_state` (or from ``torch.Generator.get_state()``)."""
        raw = np.frombuffer(state, np.uint8) if isinstance(state, bytes) else np.asarray(state)
        if raw.dtype != np.uint8 or raw.shape != (_STATE_BYTES,):
            raise ValueError(f"expected {_STATE_BYTES} bytes of generator state, got {raw.shape}")
        b = raw.tobytes()
        seed = int(np.frombuffer(b, "<u8", 1, 0)[0])
        left, seeded = (int(v) for v in np.frombuffer(b, "<i4", 2, 8))
        nxt = int(np.frombuffer(b, "<u8", 1, 16)[0])
        key = np.frombuffer(b, "<u8", _N, 24)
        normal_y = float(np.frombuffer(b, "<f8", 1, 24 + 8 * _N + 8)[0])
        normal_valid = int(np.frombuffer(b, "<i4", 1, 24 + 8 * _N + 24)[0])
        fresh = left == 1 and nxt == 0
        if not seeded or not 0 < left <= _N or not (fresh or left + nxt == _N + 1):
            raise ValueError("invalid mt19937 state")
        if np.any(key > 0xFFFFFFFF):
            raise ValueError("invalid mt19937 state: a state word exceeds 32 bits")
        self._seed = seed
        self._mt.state = {
            "bit_generator": "MT19937",
            "state": {"key": key.astype(np.uint32), "pos": _N + 1 - left},
        }
        self._fresh = fresh
        self._normal_cache = normal_y if normal_valid else None

    def _words(self, n: int) -> np.ndarray:
        """The next n 32-bit words of the stream (torch's ``random()``)."""
        if n:
            self._fresh = False
        return self._draw.integers(0, 1 << 32, size=n, dtype=np.uint32)

    def _words64(self, n: int) -> np.ndarray:
        """The next n 64-bit values, each two words with the first on top (``random64()``)."""
        w = self._words(2 * n).astype(np.uint64)
        return (w[0::2] << np.uint64(32)) | w[1::2]


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator, as ``torch.manual_seed`` does (``int(seed)`` first)."""
    return default_generator.manual_seed(int(seed))


def initial_seed() -> int:
    """The default generator's seed."""
    return default_generator.initial_seed()


def get_rng_state() -> np.ndarray:
    """The default generator's state (torch's byte layout)."""
    return default_generator.get_state()


def set_rng_state(state: np.ndarray | bytes) -> None:
    """Restore the default generator's state."""
    default_generator.set_state(state)


# ---------------------------------------------------------------------------------- helpers


def _gen(generator: Generator | None) -> Generator:
    return default_generator if generator is None else generator


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    dims = tuple(operator.index(d) for d in dims)
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    return dims


def _float_dtype(dtype: object) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"expected float32 or float64, got {dt}")
    return dt


# ---------------------------------------------------------------------------------- uniform


def _unit(g: Generator, n: int, dt: np.dtype) -> np.ndarray:
    """n uniforms on [0, 1): 24 bits of one word (float32) or 53 bits of a pair (float64)."""
    if dt == np.float32:
        return (g._words(n) & _MASK24).astype(np.float32) * np.float32(2.0**-24)
    return (g._words64(n) & _MASK53).astype(np.float64) * 2.0**-53


def _check_bounds(low: float, high: float, dt: np.dtype) -> None:
    big = float(np.finfo(dt).max)
    for name, v in (("from", low), ("to", high)):
        if not -big <= v <= big:
            raise ValueError(f"{name}={v} is out of bounds for {dt}")
    if not low <= high:
        raise ValueError(f"uniform expects a [from, to) range, but found from={low} > to={high}")
    if high - low > big:
        raise ValueError(f"to - from = {high - low} exceeds the largest {dt}")


def uniform(
    shape: int | Sequence[int],
    low: float = 0.0,
    high: float = 1.0,
    dtype: object = np.float32,
    generator: Generator | None = None,
) -> np.ndarray:
    """Samples on ``[low, high)``: ``torch.empty(shape, dtype=dtype).uniform_(low, high)``."""
    dims, dt, g = _shape(shape), _float_dtype(dtype), _gen(generator)
    low, high = float(low), float(high)
    _check_bounds(low, high, dt)
    n = math.prod(dims)
    lo, hi = dt.type(low), dt.type(high)
    out = np.empty(n, dtype=dt)
    for start in range(0, n, _CHUNK):
        x = _unit(g, min(_CHUNK, n - start), dt)
        if low == 0.0 and high == 1.0:
            out[start : start + x.size] = x  # x * 1 + 0 is x exactly, fused or not
        elif dt == np.float32:
            out[start : start + x.size] = arith.mul_add(x, hi - lo, lo)
        else:
            out[start : start + x.size] = arith.mul_add(x, hi - lo, lo)
    out[out == hi] = lo  # a sum rounded up onto the open end goes back to the start
    return out.reshape(dims)


def rand(
    shape: int | Sequence[int], dtype: object = np.float32, generator: Generator | None = None
) -> np.ndarray:
    """``torch.rand(shape)``: uniform on ``[0, 1)``."""
    return uniform(shape, 0.0, 1.0, dtype=dtype, generator=generator)


# ---------------------------------------------------------------------------------- normal


def _normal_small(g: Generator, n: int, mean: float, std: float, dt: np.dtype) -> np.ndarray:
    """Fewer than 16 samples: scalar Box-Muller in double with the cached second value."""
    values = []
    for _ in range(n):
        if g._normal_cache is not None:
            v, g._normal_cache = g._normal_cache, None
        else:
            w = g._words64(2) & _MASK53
            u1, u2 = float(w[0]) * 2.0**-53, float(w[1]) * 2.0**-53
            # math calls the same libm that torch links, so these are glibc's own results
            r = math.sqrt(-2.0 * math.log1p(-u2))
            theta = 2.0 * math.pi * u1
            g._normal_cache = r * math.sin(theta)
            v = r * math.cos(theta)
        values.append(v)
    return arith.mul_add(np.array(values, dtype=np.float64), std, mean).astype(dt)


# float32 constants of avx_mathfun.h (their bits match those stored in torch's binary)
_F = np.float32
_ONE, _HALF = _F(1.0), _F(0.5)
_TWO_PI = _F(2.0 * math.pi)
_SQRTHF = _F(0.707106781186547524)
_LOG_P = [
    _F(7.0376836292e-2),
    _F(-1.1514610310e-1),
    _F(1.1676998740e-1),
    _F(-1.2420140846e-1),
    _F(1.4249322787e-1),
    _F(-1.6668057665e-1),
    _F(2.0000714765e-1),
    _F(-2.4999993993e-1),
    _F(3.3333331174e-1),
]
_LOG_Q1, _LOG_Q2 = _F(-2.12194440e-4), _F(0.693359375)
_FOPI = _F(1.27323954473516)  # 4 / pi
_DP = [_F(-0.78515625), _F(-2.4187564849853515625e-4), _F(-3.77489497744594108e-8)]
_SIN_P = [_F(-1.9515295891e-4), _F(8.3321608736e-3), _F(-1.6666654611e-1)]
_COS_P = [_F(2.443315711809948e-005), _F(-1.388731625493765e-003), _F(4.166664568298827e-002)]


def _log256(x: np.ndarray) -> np.ndarray:
    """``log256_ps`` for normal float32 x in (0, 1], with the FMAs of torch's AVX2 build.

    For torch's arguments, ``1 - k * 2**-24``, every intermediate is zero or above 2**-80,
    far from float32's subnormal range.
    """
    bits = x.view(np.uint32)
    e = ((bits >> 23).astype(np.int32) - 127).astype(np.float32) + _ONE
    m = ((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(np.float32)  # [0.5, 1)
    below = m < _SQRTHF
    e = e - below.astype(np.float32)
    m = (m - _ONE) + np.where(below, m, _F(0.0))
    z = m * m
    y = arith.fma(_LOG_P[0], m, _LOG_P[1])
    for p in _LOG_P[2:]:
        y = arith.fma(y, m, p)
    y = arith.fma(y * m, z, e * _LOG_Q1)
    y = y - z * _HALF  # z * 0.5 is exact, so the fused and unfused forms agree
    return arith.fma(e, _LOG_Q2, m + y)


def _sincos256(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sincos256_ps`` for float32 x, with the FMAs of torch's AVX2 build.

    For torch's arguments, ``f32(2 pi) * k * 2**-24``, the reduced argument is 0 or above
    1e-8 (checked over all 2**24 of them), so every polynomial term stays far above float32's
    subnormal range.
    """
    bits = x.view(np.uint32)
    sign_sin = bits & np.uint32(0x80000000)
    ax = (bits & np.uint32(0x7FFFFFFF)).view(np.float32)
    j = (ax * _FOPI).astype(np.int32)
    j = (j + 1) & ~1
    jf = j.astype(np.float32)
    sign_sin ^= ((j & 4) << 29).view(np.uint32)
    sign_cos = ((~(j - 2) & 4) << 29).view(np.uint32)
    first = (j & 2) == 0

    # the "extended precision modular arithmetic": x - j * pi/4 in three fused steps
    r = arith.fma(jf, _DP[0], ax)
    r = arith.fma(jf, _DP[1], r)
    r = arith.fma(jf, _DP[2], r)
    z = r * r

    c = arith.fma(_COS_P[0], z, _COS_P[1])
    c = arith.fma(c, z, _COS_P[2])
    c = arith.fma(z, z * c, -(z * _HALF)) + _ONE
    s = arith.fma(_SIN_P[0], z, _SIN_P[1])
    s = arith.fma(s, z, _SIN_P[2])
    s = arith.fma(r, z * s, r)

    sin = np.where(first, s, c).view(np.uint32) ^ sign_sin
    cos = np.where(first, c, s).view(np.uint32) ^ sign_cos
    return sin.view(np.float32), cos.view(np.float32)


# glibc's tables and polynomials for logf and sincosf (sysdeps/ieee754/flt-32)
_H = float.fromhex
_LOGF_INVC = np.array(
    [
        _H(h)
        for h in (
            "0x1.661ec79f8f3bep+0 0x1.571ed4aaf883dp+0 0x1.49539f0f010bp+0 0x1.3c995b0b80385p+0 "
            "0x1.30d190c8864a5p+0 0x1.25e227b0b8eap+0 0x1.1bb4a4a1a343fp+0 0x1.12358f08ae5bap+0 "
            "0x1.0953f419900a7p+0 0x1p+0 0x1.e608cfd9a47acp-1 0x1.ca4b31f026aap-1 "
            "0x1.b2036576afce6p-1 0x1.9c2d163a1aa2dp-1 0x1.886e6037841edp-1 0x1.767dcf5534862p-1"
        ).split()
    ]
)
_LOGF_LOGC = np.array(
    [
        _H(h)
        for h in (
            "-0x1.57bf7808caadep-2 -0x1.2bef0a7c06ddbp-2 -0x1.01eae7f513a67p-2 "
            "-0x1.b31d8a68224e9p-3 -0x1.6574f0ac07758p-3 -0x1.1aa2bc79c81p-3 "
            "-0x1.a4e76ce8c0e5ep-4 -0x1.1973c5a611cccp-4 -0x1.252f438e10c1ep-5 0x0p+0 "
            "0x1.aa5aa5df25984p-5 0x1.c5e53aa362eb4p-4 0x1.526e57720db08p-3 "
            "0x1.bc2860d22477p-3 0x1.1058bc8a07ee1p-2 0x1.4043057b6ee09p-2"
        ).split()
    ]
)
_LOGF_LN2 = _H("0x1.62e42fefa39efp-1")
_LOGF_A = [_H("-0x1.00ea348b88334p-2"), _H("0x1.5575b0be00b6ap-2"), _H("-0x1.ffffef20a4123p-2")]
_SC_HPI_INV = _H("0x1.45F306DC9C883p+23")  # 2/pi, scaled by 2**24
_SC_HPI = _H("0x1.921FB54442D18p0")  # pi/2
_SC_C = [
    _H("0x1p0"),
    _H("-0x1.ffffffd0c621cp-2"),
    _H("0x1.55553e1068f19p-5"),
    _H("-0x1.6c087e89a359dp-10"),
    _H("0x1.99343027bf8c3p-16"),
]
_SC_S = [_H("-0x1.555545995a603p-3"), _H("0x1.1107605230bc4p-7"), _H("-0x1.994eb3774cf24p-13")]


def _glibc_logf(x: np.ndarray) -> np.ndarray:
    """glibc's ``logf`` (its FMA build) for positive normal float32 x."""
    ix = x.view(np.uint32)
    tmp = ix - np.uint32(0x3F330000)
    i = (tmp >> 19) & 15
    k = (tmp.view(np.int32) >> 23).astype(np.float64)
    z = (ix - (tmp & np.uint32(0x1FF << 23))).view(np.float32).astype(np.float64)
    r = arith.fma(z, _LOGF_INVC[i], -1.0)
    y0 = arith.fma(k, _LOGF_LN2, _LOGF_LOGC[i])
    r2 = r * r
    y = arith.fma(_LOGF_A[1], r, _LOGF_A[2])
    y = arith.fma(_LOGF_A[0], r2, y)
    y = arith.fma(y, r2, y0 + r)
    return np.where(ix == 0x3F800000, _F(0.0), y.astype(np.float32))


def _glibc_sincosf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """glibc's ``sincosf`` (its FMA build) for float32 x in [0, 120)."""
    top = (x.view(np.uint32) >> 20) & 0x7FF
    xd = x.astype(np.float64)
    small = top < 0x3F4  # |x| < pi/4 by the top 12 bits: no reduction
    q = ((xd * _SC_HPI_INV).astype(np.int32) + 0x800000) >> 24
    q = np.where(small, 0, q)
    xr = np.where(small, xd, arith.fma(-q.astype(np.float64), _SC_HPI, xd))
    xs = xr * np.where(((q + 1) & 2) == 0, 1.0, -1.0)  # the sign of sine by quadrant
    neg = np.where((q & 2) == 0, 1.0, -1.0)  # quadrants 2 and 3 use the negated cosine

    x2 = xr * xr
    x3, x4 = x2 * xs, x2 * x2
    c2 = arith.fma(x2, neg * _SC_C[4], neg * _SC_C[3])
    s1 = arith.fma(x2, _SC_S[2], _SC_S[1])
    c1 = arith.fma(x2, neg * _SC_C[1], neg * _SC_C[0])
    x5, x6 = x3 * x2, x4 * x2
    s = arith.fma(x3, _SC_S[0], xs)
    c = arith.fma(x4, neg * _SC_C[2], c1)
    s = arith.fma(x5, s1, s).astype(np.float32)
    c = arith.fma(x6, c2, c).astype(np.float32)

    odd = (q & 1) == 1
    sin, cos = np.where(odd, c, s), np.where(odd, s, c)
    tiny = top < 0x398  # |x| < 2**-12: sin x = x, cos x = 1
    return np.where(tiny, x, sin), np.where(tiny, _ONE, cos)


def _box_muller16_f32(u: np.ndarray, mean: np.float32, std: np.float32) -> np.ndarray:
    """torch's float32 ``NormalFill16`` on rows of 16 uniforms, at the current profile."""
    u1 = _ONE - u[:, :8]
    u2 = u[:, 8:]
    if arith.get_profile() == "avx2":
        radius = np.sqrt(_log256(u1) * _F(-2.0))
        sin, cos = _sincos256(u2 * _TWO_PI)
    else:
        radius = np.sqrt(_glibc_logf(u1) * _F(-2.0))
        # the scalar kernel forms theta in double from a double 2*pi, then rounds it to float
        sin, cos = _glibc_sincosf((u2.astype(np.float64) * (2.0 * math.pi)).astype(np.float32))
    out = np.empty_like(u)
    out[:, :8] = arith.fma(radius * cos, std, mean)
    out[:, 8:] = arith.fma(radius * sin, std, mean)
    return out


def _libm(f, x: np.ndarray) -> np.ndarray:
    """A float64 function of the system libm, element by element, as torch's scalar loop calls it.

    NumPy's float64 ``log`` (and others) dispatch to its own SIMD code on some CPUs, which
    differs from glibc's in the last bit; Python's ``math`` always calls the libm torch links.
    """
    return np.fromiter(map(f, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


def _box_muller16_f64(u: np.ndarray, mean: float, std: float) -> np.ndarray:
    """torch's float64 ``NormalFill16`` (glibc ``log``/``sincos``, fused at both levels)."""
    radius = np.sqrt(-2.0 * _libm(math.log, 1.0 - u[:, :8]))
    theta = (2.0 * math.pi) * u[:, 8:]
    out = np.empty_like(u)
    for half, trig in ((slice(0, 8), math.cos), (slice(8, 16), math.sin)):
        v = radius * _libm(trig, theta)
        # fma(v, 1, mean) is one rounding of v + mean, so the costly general FMA can be skipped
        out[:, half] = v + mean if std == 1.0 else arith.fma(v, std, mean)
    return out


def _normal_fill(g: Generator, n: int, mean: float, std: float, dt: np.dtype) -> np.ndarray:
    """16 or more samples: uniforms first, Box-Muller per block of 16, the tail redone."""

    def transform(rows: np.ndarray) -> np.ndarray:
        if dt == np.float32:
            return _box_muller16_f32(rows, np.float32(mean), np.float32(std))
        return _box_muller16_f64(rows, mean, std)

    out = np.empty(n, dtype=dt)
    blocks = n // 16
    out_rows = out[: blocks * 16].reshape(blocks, 16)
    step = _CHUNK // 16
    # drawing slice by slice reads the same stream as drawing all n uniforms at once
    for start in range(0, blocks, step):
        rows = _unit(g, min(step, blocks - start) * 16, dt).reshape(-1, 16)
        out_rows[start : start + rows.shape[0]] = transform(rows)
    if n % 16:
        _unit(g, n % 16, dt)  # the last uniforms torch draws, then overwrites
        out[n - 16 :] = transform(_unit(g, 16, dt).reshape(1, 16)).ravel()
    return out


def normal(
    shape: int | Sequence[int],
    mean: float = 0.0,
    std: float = 1.0,
    dtype: object = np.float32,
    generator: Generator | None = None,
) -> np.ndarray:
    """Normal samples: ``torch.empty(shape, dtype=dtype).normal_(mean, std)``."""
    dims, dt, g = _shape(shape), _float_dtype(dtype), _gen(generator)
    mean, std = float(mean), float(std)
    if not std >= 0.0:
        raise ValueError(f"normal expects std >= 0.0, but found std {std}")
    n = math.prod(dims)
    if n == 0:
        return np.empty(dims, dtype=dt)
    if n < 16:
        return _normal_small(g, n, mean, std, dt).reshape(dims)
    return _normal_fill(g, n, mean, std, dt).reshape(dims)


def randn(
    shape: int | Sequence[int], dtype: object = np.float32, generator: Generator | None = None
) -> np.ndarray:
    """``torch.randn(shape)``: standard normal samples."""
    return normal(shape, 0.0, 1.0, dtype=dtype, generator=generator)


# ---------------------------------------------------------------------------------- integers


def randint(
    low: int, high: int, shape: int | Sequence[int], generator: Generator | None = None
) -> np.ndarray:
    """``torch.randint(low, high, shape)``: int64 samples on ``[low, high)``.

    torch reduces one word modulo the range, or a 64-bit pair once the range reaches 2**28.
    """
    dims, g = _shape(shape), _gen(generator)
    low, high = operator.index(low), operator.index(high)
    if not -(1 << 63) <= low < high < (1 << 63):
        raise ValueError(f"randint expects low < high within int64, got low={low}, high={high}")
    n = math.prod(dims)
    span = high - low
    val = g._words64(n) if span >= 1 << 28 else g._words(n).astype(np.uint64)
    out = (val % np.uint64(span)) + np.uint64(low & 0xFFFFFFFFFFFFFFFF)  # wraps like uint64
    return out.view(np.int64).reshape(dims)


def randperm(n: int, generator: Generator | None = None) -> np.ndarray:
    """``torch.randperm(n)``: a random permutation of ``0..n-1`` (int64).

    torch's Fisher-Yates walks i upward, swapping element i with ``i + word % (n - i)``.
    """
    n, g = operator.index(n), _gen(generator)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if n >= _RANDPERM_SMALL:
        raise NotImplementedError(
            f"randperm of {n} elements: torch uses a different algorithm from "
            f"{_RANDPERM_SMALL} elements on, which tinymf does not reproduce"
        )
    if n < 2:
        return np.arange(n, dtype=np.int64)
    i = np.arange(n - 1, dtype=np.int64)
    targets = (i + (g._words(n - 1).astype(np.int64) % (n - i))).tolist()
    perm = list(range(n))
    # each swap depends on the ones before it, so this walk stays sequential
    for a, b in enumerate(targets):
        perm[a], perm[b] = perm[b], perm[a]
    return np.array(perm, dtype=np.int64)


# ---------------------------------------------------------------------------------- init


def kaiming_uniform_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    """The bound of ``nn.init.kaiming_uniform_`` (leaky ReLU gain, fan-in mode).

    Computed in Python doubles in torch's order: ``sqrt(3) * (sqrt(2 / (1 + a**2)) /
    sqrt(fan_in))``.
    """
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    gain = math.sqrt(2.0 / (1 + a**2))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std


def linear_init(
    in_features: int,
    out_features: int,
    bias: bool,
    dtype: object = np.float32,
    generator: Generator | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """What ``nn.Linear(in_features, out_features, bias)`` draws, in torch's order.

    The weight (out_features, in_features) first, kaiming-uniform with ``a = sqrt(5)``;
    then the bias, uniform on ``+-1/sqrt(in_features)``.
    """
    g = _gen(generator)
    shape = (out_features, in_features)
    if in_features > 0 and out_features > 0:
        bound = kaiming_uniform_bound(in_features)
        weight = uniform(shape, -bound, bound, dtype=dtype, generator=g)
    else:
        weight = np.empty(shape, dtype=_float_dtype(dtype))  # torch skips empty tensors
    if not bias:
        return weight, None
    b = 1 / math.sqrt(in_features) if in_features > 0 else 0  # an int, so -b is +0.0 as in torch
    return weight, uniform(out_features, -b, b, dtype=dtype, generator=g)


def embedding_init(
    num_embeddings: int,
    embedding_dim: int,
    dtype: object = np.float32,
    generator: Generator | None = None,
) -> np.ndarray:
    """What ``nn.Embedding(num_embeddings, embedding_dim)`` draws: ``normal_(0, 1)``."""
    return normal((num_embeddings, embedding_dim), 0.0, 1.0, dtype=dtype, generator=generator)
