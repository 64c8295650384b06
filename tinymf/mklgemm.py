"""The summation order of torch's float32 ``mm`` (MKL ``sgemm``) for the weight-gradient layout.

The weight gradient of ``Linear`` on a float32 input ``x`` (``(K, C)``, contiguous) is
``g.t().mm(x)`` for the contiguous output gradient ``g`` (``(K, M)``). For a one-hot ``x``
every product is ``g[k, m] * 1`` or ``* 0``, so only the order and grouping of the additions
matter. The order was measured (by probing with cancelling pairs of huge terms) on torch
2.13.0+cpu with MKL 2024.2 on an AMD EPYC (Zen, AVX2+FMA, no AVX-512), where MKL runs its
generic code paths; on an Intel CPU MKL dispatches to other kernels, so check against torch
there before relying on any of this. ``ATEN_CPU_CAPABILITY`` does not change it.

For the ``(M, C)`` result (fresh, so 64-byte aligned), each row takes one of two paths:

- Small path (all rows when ``M <= 3`` or ``C <= 11``): every product is rounded, then added
  (no FMA) one at a time in ``k`` order to an accumulator starting at +0; no blocking over
  ``K``. Except that MKL peels the first ``p = -(m * C) mod 4`` elements of row ``m`` (when
  ``p > 0`` and ``C - p >= 4``) to reach 16-byte alignment, and those it sums by blocks of
  eight terms: ``acc += t0, t1, t2, t3`` one by one, then ``acc += ((t4 + t5) + t6) + t7``,
  and the ``K mod 8`` leftover terms one by one at the end.
- Blocked path (otherwise): ``K`` is cut into blocks (``K <= 192``: one; ``193 <= K <= 385``:
  two of ``K // 2`` terms, plus a one-term block if ``K`` is odd; ``K >= 386``: blocks of
  192, the last one shorter); each block is a chain of fused multiply-adds from +0, and the
  block sums are added to the result in order.
- With two or more threads, when ``K >= 17``, or ``C >= 17`` and ``K >= 5``, or ``C >= 101``,
  MKL gives the first ``4 * ceil(ceil(M / 2) / 4)`` rows to one thread and the rest to the
  other; a thread left with 1 to 3 rows (``M`` in 5-7 or 9-11) runs the small path on them.
  Only two threads were measured (the machine had two cores).
- ``K == 1`` with ``M >= 2`` and ``C >= 2`` gives the plain product (so ``-0`` for a
  negative times 0); otherwise a sum with no nonzero term is +0.

Verified bit for bit against torch, random normal ``g`` (and ``x``), threads 1 and 2:
:func:`onehot_weight_grad` on the lecture's shapes (``K = 63``, ``M`` in 1-2, ``C`` in 8-9;
4000 cases) and about 7000 cases with ``K`` up to 100000, ``M`` up to 64 and ``C`` up to 2000;
:func:`matmul` on about 2500 cases with ``K`` up to 2000, ``M`` up to 64 and ``C`` up to 2000.
Only the layout above was measured; other strides may take other MKL paths.
"""

from __future__ import annotations

import numpy as np

from tinymf.arith import fma, get_num_threads

_BLOCK = 192  # terms per K block on the blocked path
_CHUNK = 1 << 22  # elements per temporary on the peeled path


def _small_path(m_rows: int, n_classes: int) -> bool:
    return m_rows <= 3 or n_classes <= 11


def _k_blocks(k: int) -> list[int]:
    """Block boundaries over ``K`` on the blocked path."""
    if k <= _BLOCK:
        return [0, k]
    if k <= 2 * _BLOCK + 1:
        h = k // 2
        return [0, h, 2 * h] + ([k] if k % 2 else [])
    return [*range(0, k, _BLOCK), k]


def _peeled(m_rows: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the elements MKL sums before a row reaches 16-byte alignment."""
    m = np.arange(m_rows)[:, None]
    c = np.arange(n_classes)[None, :]
    p = (-(m * n_classes)) % 4
    mask = (c < p) & (n_classes - p >= 4)
    return np.nonzero(mask)


def _peeled_sums(g: np.ndarray, idx: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sums of the peeled elements: blocks of eight as ``t0..t3`` then ``(t4+t5+t6+t7)``."""
    k = g.shape[0]
    nb = k // 8
    out = np.empty(len(rows), np.float32)
    step = max(1, _CHUNK // max(k, 1))
    for s in range(0, len(rows), step):
        r, c = rows[s : s + step], cols[s : s + step]
        t = np.where(idx[:, None] == c[None, :], g[:, r], np.float32(0)).astype(np.float32)
        blk = t[: nb * 8].reshape(nb, 8, len(r))
        tail = ((blk[:, 4] + blk[:, 5]) + blk[:, 6]) + blk[:, 7]
        seq = np.concatenate([blk[:, :4], tail[:, None]], axis=1).reshape(nb * 5, len(r))
        seq = np.concatenate([np.zeros((1, len(r)), np.float32), seq, t[nb * 8 :]], axis=0)
        # cumsum adds strictly left to right (np.sum would sum pairwise)
        out[s : s + step] = np.cumsum(seq, axis=0, dtype=np.float32)[-1]
    return out


def _small_rows(m_rows: int, n_classes: int, k: int, threads: int) -> np.ndarray:
    """Which result rows MKL sums on the small path."""
    if _small_path(m_rows, n_classes):
        return np.ones(m_rows, bool)
    rows = np.zeros(m_rows, bool)
    if threads >= 2 and (k >= 17 or (n_classes >= 17 and k >= 5) or n_classes >= 101):
        # the rows are shared between two threads in multiples of four; a thread left with
        # at most three rows runs the small path on them
        half = (m_rows + 1) // 2
        first = (half + 3) // 4 * 4
        if 1 <= m_rows - first <= 3:
            rows[first:] = True
    return rows


def _sequential(g: np.ndarray, idx: np.ndarray, n_classes: int, bounds: list[int]) -> np.ndarray:
    """Per-block in-order sums from +0, the blocks then added in order; ``(n_classes, M)``."""
    # np.add.at is unbuffered and goes through the indices in order: a sequential sum
    out = np.zeros((n_classes, g.shape[1]), np.float32)
    np.add.at(out, idx[: bounds[1]], g[: bounds[1]])
    for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True):
        part = np.zeros_like(out)
        np.add.at(part, idx[lo:hi], g[lo:hi])
        out += part
    return out


def onehot_weight_grad(
    g: np.ndarray, idx: np.ndarray, n_classes: int, *, threads: int | None = None
) -> np.ndarray:
    """``g.T @ onehot(idx, n_classes)`` with the bits of torch's MKL ``sgemm``.

    ``g`` is the float32 ``(K, M)`` output gradient, ``idx`` the ``K`` class indices; returns
    the float32 ``(M, n_classes)`` weight gradient. ``threads`` is torch's intra-op thread
    count (default: :func:`tinymf.arith.get_num_threads`). See the module docstring.
    """
    if threads is None:
        threads = get_num_threads()
    g = np.ascontiguousarray(g, dtype=np.float32)
    idx = np.asarray(idx, dtype=np.intp)
    k, m_rows = g.shape
    if idx.shape != (k,):
        raise ValueError(f"idx must have shape ({k},), got {idx.shape}")
    if k == 0:
        return np.zeros((m_rows, n_classes), np.float32)
    if k == 1 and m_rows >= 2 and n_classes >= 2:
        x = np.zeros(n_classes, np.float32)
        x[idx[0]] = 1
        return g[0][:, None] * x[None, :]

    small = _small_rows(m_rows, n_classes, k, threads)
    out = np.empty((m_rows, n_classes), np.float32)
    if not small.all():
        big = ~small
        out[big] = _sequential(g[:, big], idx, n_classes, _k_blocks(k)).T
    if small.any():
        out[small] = _sequential(g[:, small], idx, n_classes, [0, k]).T
        rows, cols = _peeled(m_rows, n_classes)
        keep = small[rows]
        rows, cols = rows[keep], cols[keep]
        if len(rows):
            out[rows, cols] = _peeled_sums(g, idx, rows, cols)
    return out


def _chain(a: np.ndarray, b: np.ndarray, lo: int, hi: int, fused: bool) -> np.ndarray:
    """``sum(a[:, k] * b[k])`` for ``k`` in ``[lo, hi)``, one term at a time from +0."""
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for k in range(lo, hi):
        col, row = a[:, k, None], b[None, k]
        acc = fma(col, row, acc) if fused else acc + col * row
    return acc


def matmul(a: np.ndarray, b: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """float32 ``a @ b`` in the order of torch's MKL ``sgemm`` for the weight-gradient layout.

    ``a`` is ``(M, K)`` and ``b`` is ``(K, N)``; the order reproduced is the one torch uses
    for ``a.mm(b)`` when ``a`` is the transpose of a contiguous array and ``b`` is
    contiguous (as in ``grad.t().mm(x)``). Small path rows multiply and add with two
    roundings, in the order of :func:`onehot_weight_grad`; blocked path rows use fused
    multiply-adds within each ``K`` block. Slow for large ``K`` (a Python loop over ``K``).
    """
    if threads is None:
        threads = get_num_threads()
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    m_rows, k = a.shape
    n = b.shape[1]
    if k == 0:
        return np.zeros((m_rows, n), np.float32)
    if k == 1 and m_rows >= 2 and n >= 2:
        return a[:, :1] * b[:1]
    small = _small_rows(m_rows, n, k, threads)
    out = np.empty((m_rows, n), np.float32)
    if not small.all():
        bounds = _k_blocks(k)
        big = a[~small]
        acc = _chain(big, b, bounds[0], bounds[1], True)
        for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True):
            acc += _chain(big, b, lo, hi, True)
        out[~small] = acc
    if small.any():
        out[small] = _chain(a[small], b, 0, k, False)
        rows, cols = _peeled(m_rows, n)
        keep = small[rows]
        rows, cols = rows[keep], cols[keep]
        if len(rows):
            t = a[rows].T * b[:, cols]  # (K, P) rounded products
            nb = k // 8
            blk = t[: nb * 8].reshape(nb, 8, len(rows))
            tail = ((blk[:, 4] + blk[:, 5]) + blk[:, 6]) + blk[:, 7]
            seq = np.concatenate([blk[:, :4], tail[:, None]], axis=1).reshape(nb * 5, len(rows))
            seq = np.concatenate([np.zeros((1, len(rows)), np.float32), seq, t[nb * 8 :]])
            out[rows, cols] = np.cumsum(seq, axis=0, dtype=np.float32)[-1]
    return out
