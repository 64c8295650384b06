"""MKL's vector square root, reproduced bit for bit in NumPy.

torch's ``Tensor.sqrt()`` on x86-64 CPUs calls MKL's ``vsSqrt`` / ``vdSqrt`` (high-accuracy
mode). Those kernels are not correctly rounded: they start from the hardware reciprocal square
root estimate (the SSE ``rsqrtps`` instruction) and refine it with ordinary, separately rounded
multiplies and adds. The results are within about 1 ulp of IEEE ``sqrt``, but differ from
``np.sqrt`` for roughly one float32 element in six and one float64 element in eighty, which is
enough to make Adam drift away from torch.

:func:`sqrt` replays the MKL code path that torch 2.13 (MKL 2024.2) runs on an AMD CPU with
AVX2 (the ``EX`` kernels; MKL picks them because the CPU is not an Intel one), including the
``rsqrtps`` estimate, which is an 8192-entry table read from the CPU.

Not portable: the ``rsqrtps`` table is CPU-specific (Intel and AMD use different ones), and on
an Intel CPU MKL dispatches to other kernels (``L9``, ``Z0``) with their own arithmetic. The
bits reproduced here are those of torch on the AMD EPYC (Zen, AVX2+FMA, no AVX-512) machine
they were measured on; elsewhere, check :func:`sqrt` against ``torch.sqrt`` before relying on it.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

# rsqrtps estimates for x in [0.5, 2): entry i answers every x whose float32 bits have
# (bits >> 11) & 0x1fff == i (the exponent's last bit and the top 12 mantissa bits). The
# answers have 12 significant bits; stored as the drop of (answer bits >> 11) from one entry
# to the next, which is 0, 1 or 2, deflated.
_RSQRT_FIRST = 0x7F6A0
_RSQRT_DROPS = (
    "eNrdmOEOwyAIhA/e/6GXLF2mqGUUpKyzi573QRdj9uMIRO1D55oVH2TrR8H9YPWP3X651mzkrRqb61f+Z2KhSdFW"
    "vq4+htCkaAT72TxApQeC+cHvTkCeyPv/w+V7+ej6Qbdb8lIkaCTXn/DN/VifW7SfzY/18iI8ewbGi98+moaRt9Yj"
    "uR+K9fPy5n6Bvf9RSw+b343k+mg+u1+0P/LHevHV/Gy+Wn3196m/5/h8FqxoL09O3qsx8ds9PmF/8e+eYffxXWPQ"
    "rPi7NYL5ud+dTKdZ8XdrBPPSZ2MqxyGpXp6Gxg8ZYD/v9rG5Xp2nqeh1jWA+2p/wpsyQi2easPIyDlM0ivluHs8a"
    "V/NceR6rKM3LZ/sq78wx6abcNEpbU2PEpM6X+0XzMgakSSyY6d/BG0tcOvt9uo6NmKv10+pfFv8QAA=="
)


def _rsqrt_table() -> np.ndarray:
    drops = np.frombuffer(zlib.decompress(base64.b64decode(_RSQRT_DROPS)), dtype=np.uint8)
    top = _RSQRT_FIRST - np.concatenate(([0], np.cumsum(drops, dtype=np.int64)))
    return (top << 11).astype(np.int64)


_RSQRT = _rsqrt_table()


def _rsqrtps(x: np.ndarray) -> np.ndarray:
    """The CPU's ``rsqrtps`` estimate of ``1/sqrt(x)`` for positive normal float32 ``x``."""
    bits = x.view(np.uint32)
    index = (bits >> 11) & 0x1FFF
    # the table covers biased exponents 126 and 127; every two exponents up halve the answer
    half_steps = ((bits >> 23).astype(np.int64) - 126) // 2
    return (_RSQRT[index] - (half_steps << 23)).astype(np.uint32).view(np.float32)


def _sqrt32(x: np.ndarray) -> np.ndarray:
    bits = x.view(np.int32)
    # MKL's fast path takes positive normals below 0x7f7ff001 (where y*y cannot overflow);
    # zeros, subnormals, the top of the range, negatives, inf and nan go to a correctly
    # rounded scalar path
    rare = (bits < 0x00800000) | (bits > 0x7F7FF000)
    xs = np.where(rare, np.float32(1), x)

    # Goldschmidt: s ~ sqrt(x), h ~ 1/(2 sqrt(x)), one step, then a final residual correction;
    # every product and sum rounded on its own, as the SSE code does
    half = np.float32(0.5)
    y = _rsqrtps(xs)
    s = xs * y
    h = y * half
    r = half - s * h
    s = s * r + s
    h = h * r + h
    out = (xs - s * s) * h + s

    if np.any(rare):
        out = np.where(rare, _rare(x), out)
    return out


_POLY = np.array(
    [0x3FD1800032338CBB, 0x3FD40000B13001D9, 0x3FD80000000000F6, 0x3FDFFFFFFFFFFE71],
    dtype=np.uint64,
).view(np.float64)


def _sqrt64(x: np.ndarray) -> np.ndarray:
    u = np.uint64
    bits = x.view(np.uint64)
    # fast path: positive normals below 2**1022
    rare = (bits < u(0x0010000000000000)) | (bits >= u(0x7FD0000000000000))
    bits = np.where(rare, u(0x3FF0000000000000), bits)
    xs = bits.view(np.float64)

    # the estimate: rsqrtps of x's top 23 mantissa bits (truncated) placed in [1, 4), keeping
    # the exponent's parity, then scaled back by a power of two built from the exponent
    even = ~bits & u(0x0010000000000000)
    f = ((bits & u(0x001FFFFFE0000000)) | (even + u(0x07F0000000000000))) >> u(29)
    scale = (even - (bits & u(0x7FF0000000000000)) + u(0xBFD0000000000000)) >> u(1)
    y = scale.view(np.float64) * _rsqrtps(f.astype(np.uint32).view(np.float32)).astype(np.float64)

    # t = 1 - x*y*y with x split so that the high part's product is nearly exact, then
    # y / sqrt(1 - t) by its series 1 + t/2 + 3t^2/8 + 5t^3/16 + 35t^4/128
    yy = y * y
    xh = (bits & u(0xFFFFFFFFF8000000)).view(np.float64)
    xl = xs - xh
    t = (1.0 - xh * yy) - xl * yy
    c4, c3, c2, c1 = _POLY
    p = (((t * c4 + c3) * t + c2) * t + c1) * t
    out = xh * y + (xl * y + (p * y) * xs)

    if np.any(rare):
        out = np.where(rare, _rare(x), out)
    return out


def _rare(x: np.ndarray) -> np.ndarray:
    """MKL's scalar path: IEEE sqrt, but a negative number gives the positive default nan."""
    with np.errstate(invalid="ignore"):
        out = np.sqrt(x)
    negative = (x < 0) & ~np.isnan(x)
    return np.where(negative, np.array(np.nan, dtype=x.dtype), out)


def sqrt(x: np.ndarray) -> np.ndarray:
    """Element-wise square root with the same bits as ``torch.sqrt`` (MKL) on AMD x86-64.

    float32 and float64 follow MKL's kernels; other dtypes fall back to ``np.sqrt``.
    """
    x = np.asarray(x)
    # work on a flat array: 0-d inputs would otherwise turn into NumPy scalars, whose integer
    # arithmetic warns on the wrap-around the bit manipulations rely on
    if x.dtype == np.float32:
        return _sqrt32(x.reshape(-1)).reshape(x.shape)
    if x.dtype == np.float64:
        return _sqrt64(x.reshape(-1)).reshape(x.shape)
    return np.sqrt(x)
