"""tinymf.random draws the same bits as torch's CPU generator, at both kernel levels.

torch's bits depend on its kernel level, fixed when torch is imported, so torch runs here in
two helper processes, one pinned to ``ATEN_CPU_CAPABILITY=avx2`` and one to ``=default``.
Each test sends them a seed and a list of calls, and compares every result bit for bit with
tinymf's under the matching arithmetic profile.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymf import arith
from tinymf import random as tr

pytest.importorskip("torch")

LEVELS = ("avx2", "default")

_WORKER = r"""
import json, sys
import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}

def run(call):
    kind, args = call[0], call[1:]
    if kind == "uniform":
        shape, low, high, dt = args
        return [torch.empty(shape, dtype=DTYPES[dt]).uniform_(low, high)]
    if kind == "normal":
        shape, mean, std, dt = args
        return [torch.empty(shape, dtype=DTYPES[dt]).normal_(mean, std)]
    if kind == "rand":
        return [torch.rand(args[0], dtype=DTYPES[args[1]])]
    if kind == "randn":
        return [torch.randn(args[0], dtype=DTYPES[args[1]])]
    if kind == "linear":
        n_in, n_out, bias, dt = args
        layer = torch.nn.Linear(n_in, n_out, bias=bias, dtype=DTYPES[dt])
        return [layer.weight] + ([layer.bias] if bias else [])
    if kind == "embedding":
        num, dim, dt = args
        return [torch.nn.Embedding(num, dim, dtype=DTYPES[dt]).weight]
    if kind == "randint":
        return [torch.randint(args[0], args[1], tuple(args[2]))]
    if kind == "randperm":
        return [torch.randperm(args[0])]
    if kind == "state":
        return [torch.get_rng_state()]
    raise ValueError(kind)

print(torch.backends.cpu.get_cpu_capability(), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    torch.manual_seed(request["seed"])
    with torch.no_grad():
        out = [t.detach().numpy() for call in request["calls"] for t in run(call)]
    np.savez(request["out"], *out)
    print("done", flush=True)
"""


class TorchWorker:
    """A torch process at one kernel level that answers seeded lists of calls."""

    def __init__(self, level: str, folder: Path) -> None:
        script = folder / "torch_worker.py"
        script.write_text(_WORKER)
        env = dict(os.environ, ATEN_CPU_CAPABILITY=level)
        self.out = folder / "result.npz"
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.capability = self.proc.stdout.readline().strip()

    def run(self, seed: int, calls: list) -> list[np.ndarray]:
        request = {"seed": seed, "calls": calls, "out": str(self.out)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "done":
            raise RuntimeError("the torch worker stopped")
        with np.load(self.out) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    started = {}
    for level in LEVELS:
        started[level] = TorchWorker(level, tmp_path_factory.mktemp(f"torch_{level}"))
    yield started
    for w in started.values():
        w.close()


def torch_at(workers, level: str | None = None) -> TorchWorker:
    """The worker for a level; ``None`` for draws that are the same at every level."""
    if level is None:
        level = next((lv for lv in LEVELS if workers[lv].capability.lower() == lv), LEVELS[0])
    worker = workers[level]
    if worker.capability.lower() != level:
        pytest.skip(f"torch could not run its {level} kernels here (got {worker.capability})")
    return worker


def ours(level: str, seed: int, calls: list) -> list[np.ndarray]:
    """The same calls through tinymf.random, under the matching arithmetic profile."""
    out = []
    with arith.profile(level):
        tr.manual_seed(seed)
        for kind, *args in calls:
            if kind == "uniform":
                shape, low, high, dt = args
                out.append(tr.uniform(shape, low, high, dtype=dt))
            elif kind == "normal":
                shape, mean, std, dt = args
                out.append(tr.normal(shape, mean, std, dtype=dt))
            elif kind == "rand":
                out.append(tr.rand(args[0], dtype=args[1]))
            elif kind == "randn":
                out.append(tr.randn(args[0], dtype=args[1]))
            elif kind == "linear":
                weight, bias = tr.linear_init(*args)
                out += [weight] + ([bias] if bias is not None else [])
            elif kind == "embedding":
                out.append(tr.embedding_init(*args))
            elif kind == "randint":
                out.append(tr.randint(args[0], args[1], args[2]))
            elif kind == "randperm":
                out.append(tr.randperm(args[0]))
            elif kind == "state":
                out.append(tr.get_rng_state())
    return out


def assert_same_bits(mine: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        # compare raw bits, so -0.0 against 0.0 and NaN payloads would count as different
        np.testing.assert_array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))


def check(workers, level: str | None, seed: int, calls: list) -> None:
    worker = torch_at(workers, level)
    assert_same_bits(ours(level or "avx2", seed, calls), worker.run(seed, calls))


# ------------------------------------------------------------------------------ strategies

seeds = st.integers(-(2**63), 2**64 - 1)
# sizes on both sides of 16 (the normal kernel's switch) and of its blocks of 16
edge_sizes = [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 255, 256, 257, 1000]
sizes = st.one_of(st.sampled_from(edge_sizes), st.integers(1, 1100))
shapes = st.one_of(
    sizes.map(lambda n: [n]),
    st.lists(st.integers(1, 11), min_size=0, max_size=3),  # [] is a 0-d tensor: 1 element
)
dtypes = st.sampled_from(["float32", "float64"])
levels = st.sampled_from(LEVELS)
bounds = st.one_of(
    st.floats(-1e4, 1e4),
    st.floats(-1e-3, 1e-3),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-38, 3e-39, 1e30]),
)


@st.composite
def low_high(draw):
    low = draw(bounds)
    return low, low + draw(st.one_of(st.floats(0, 1e4), st.floats(0, 1e-36), st.just(0.0)))


# ------------------------------------------------------------------------------ comparisons


@settings(deadline=None)
@given(level=levels, seed=seeds, shape=shapes, dt=dtypes, lh=low_high())
def test_uniform_is_bit_equal_to_torch(workers, level, seed, shape, dt, lh):
    check(workers, level, seed, [["uniform", shape, lh[0], lh[1], dt]])


@settings(deadline=None)
@given(
    level=levels,
    seed=seeds,
    shape=shapes,
    dt=dtypes,
    mean=st.one_of(st.just(0.0), st.floats(-1e3, 1e3)),
    std=st.one_of(st.just(1.0), st.floats(0, 1e3), st.floats(0, 1e-3)),
)
def test_normal_is_bit_equal_to_torch(workers, level, seed, shape, dt, mean, std):
    check(workers, level, seed, [["normal", shape, mean, std, dt]])


@settings(deadline=None)
@given(level=levels, seed=seeds, n=sizes, dt=dtypes)
def test_rand_and_randn_are_bit_equal_to_torch(workers, level, seed, n, dt):
    check(workers, level, seed, [["rand", [n], dt], ["randn", [n], dt]])


small = st.integers(1, 40)
calls = st.one_of(
    st.tuples(st.just("rand"), shapes, dtypes),
    st.tuples(st.just("randn"), shapes, dtypes),
    st.tuples(st.just("uniform"), shapes, st.just(-0.7), st.just(2.3), dtypes),
    st.tuples(st.just("normal"), shapes, st.just(0.5), st.just(3.0), dtypes),
    st.tuples(st.just("linear"), small, small, st.booleans(), dtypes),
    st.tuples(st.just("embedding"), small, small, dtypes),
).map(list)


@settings(deadline=None)
@given(level=levels, seed=seeds, sequence=st.lists(calls, min_size=2, max_size=6))
def test_interleaved_calls_after_one_seed_are_bit_equal_to_torch(workers, level, seed, sequence):
    # later draws depend on how many words earlier ones took and on the cached normal
    check(workers, level, seed, sequence + [["state"]])


@settings(deadline=None)
@given(
    seed=seeds,
    low=st.integers(-(2**40), 2**40),
    span=st.one_of(st.integers(1, 2**28 - 1), st.integers(2**28, 2**50)),
    n=st.integers(0, 300),
    perm=st.one_of(st.integers(0, 20), st.integers(21, 3000)),
)
def test_randint_and_randperm_are_bit_equal_to_torch(workers, seed, low, span, n, perm):
    calls = [["randint", low, low + span, [n]], ["randperm", perm], ["state"]]
    check(workers, None, seed, calls)  # integer draws are the same at every level


@pytest.mark.parametrize("level", LEVELS)
def test_draws_across_slices_and_tails_are_bit_equal_to_torch(workers, level):
    # more than one internal slice (65536 elements), a tail of 5, and odd bounds
    n = 3 * 65536 + 5
    calls = [
        ["normal", [n], 0.25, 1.75, "float32"],
        ["uniform", [n], -0.37, 0.91, "float32"],
        ["normal", [70001], -1.0, 0.5, "float64"],
        ["uniform", [70001], -3.3, 1e-3, "float64"],
        ["embedding", 5000, 13, "float32"],
    ]
    check(workers, level, 2**63 + 11, calls)


@pytest.mark.parametrize("level", LEVELS)
def test_lecture_linear_layers_match_torch_and_the_lecture(workers, level):
    calls = [["linear", 9, 2, False, "float32"], ["linear", 9, 1, False, "float32"]]
    calls += [["linear", 8, 2, False, "float32"], ["linear", 8, 1, False, "float32"]]
    mine = ours(level, 21345, calls)
    assert_same_bits(mine, torch_at(workers, level).run(21345, calls))
    # the lecture's printout (four decimals) holds at both levels
    np.testing.assert_array_equal(np.round(mine[0][0, :3], 4), np.float32([0.2862, 0.0305, 0.2883]))
    np.testing.assert_array_equal(np.round(mine[1][0, :2], 4), np.float32([0.0574, 0.2875]))
    np.testing.assert_array_equal(np.round(mine[2][1, :2], 4), np.float32([-0.2651, -0.1892]))
    np.testing.assert_array_equal(np.round(mine[3][0, -1], 4), np.float32(-0.3488))


# ------------------------------------------------------------------------------ state and seeds


def test_state_bytes_and_restore_agree_with_torch():
    import torch

    for seed in [0, 7, -1, 2**64 - 1, tr.DEFAULT_SEED]:
        for words in [0, 1, 623, 624, 625, 1249]:
            theirs = torch.Generator().manual_seed(seed)
            mine = tr.Generator(seed)
            torch.empty(words).uniform_(generator=theirs)
            tr.uniform(words, generator=mine)
            torch.randn(3, generator=theirs)  # leaves a cached normal behind
            tr.randn(3, generator=mine)
            np.testing.assert_array_equal(mine.get_state(), theirs.get_state().numpy())

            restored = tr.Generator()
            restored.set_state(theirs.get_state().numpy())
            torch_side = torch.Generator()
            torch_side.set_state(torch.from_numpy(mine.get_state()))
            for gen_t, gen_m in [(theirs, restored), (torch_side, mine)]:
                a = torch.randn(5, generator=gen_t).numpy()  # starts with the cached value
                b = tr.randn(5, generator=gen_m)
                np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
            assert restored.initial_seed() == theirs.initial_seed()


def test_seeds_cover_torchs_range_and_reject_the_rest():
    import torch

    for seed in [-(2**63), -1, 0, 2**32, 2**64 - 1]:
        assert (
            tr.Generator(seed).initial_seed() == torch.Generator().manual_seed(seed).initial_seed()
        )
    for seed in [2**64, -(2**63) - 1]:
        with pytest.raises(ValueError):
            tr.Generator(seed)
    with pytest.raises(TypeError):
        tr.Generator().manual_seed(True)
    assert tr.Generator().initial_seed() == torch.Generator().initial_seed()
    assert tr.manual_seed("7") is tr.default_generator  # int(seed), as torch.manual_seed does
    assert tr.initial_seed() == 7


def test_manual_seed_forgets_the_cached_normal():
    g = tr.Generator(3)
    first = tr.randn(1, generator=g)
    g.manual_seed(3)
    again = tr.randn(1, generator=g)  # not the cached sine of the first pair
    np.testing.assert_array_equal(first.view(np.uint32), again.view(np.uint32))


def test_state_roundtrip_replays_the_same_draws():
    g = tr.Generator(11)
    tr.randn(5, generator=g)
    state = g.get_state()
    a = [tr.randn(3, generator=g), tr.rand(40, generator=g), tr.randperm(30, generator=g)]
    g.set_state(state)
    b = [tr.randn(3, generator=g), tr.rand(40, generator=g), tr.randperm(30, generator=g)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError):
        tr.uniform(3, 1.0, 0.0)
    with pytest.raises(ValueError):
        tr.uniform(3, -3e38, 3e38)  # the width overflows float32
    with pytest.raises(ValueError):
        tr.normal(3, 0.0, -1.0)
    with pytest.raises(ValueError):
        tr.randint(5, 5, (2,))
    with pytest.raises(TypeError):
        tr.rand(3, dtype=np.int32)
    with pytest.raises(ValueError):
        tr.Generator().set_state(np.zeros(10, np.uint8))
    with pytest.raises(NotImplementedError):
        tr.randperm(2**32 // 20)  # torch's other algorithm, for permutations this long


# ------------------------------------------------------------------------------ helpers


def test_kaiming_bound_is_torchs_python_arithmetic():
    for fan_in in [1, 2, 8, 9, 100, 12345]:
        gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
        assert tr.kaiming_uniform_bound(fan_in) == math.sqrt(3.0) * (gain / math.sqrt(fan_in))


f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(deadline=None)
@given(a=f32, b=f32, c=f32)
def test_fast_float32_fma_is_correctly_rounded(a, b, c):
    a, b, c = np.float32(a), np.float32(b), np.float32(c)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if not abs(exact) <= Fraction(float(np.finfo(np.float32).max)):
        return  # overflow is no part of the contract
    got = arith.fma(np.array([a]), b, c)
    want = _round_to_float32(exact, fallback=float(a) * float(b) + float(c))
    np.testing.assert_array_equal(got.view(np.uint32), np.array([want]).view(np.uint32))


def _round_to_float32(exact: Fraction, fallback: float) -> np.float32:
    """The float32 nearest to ``exact``, ties to even: correct rounding, by brute force."""
    if exact == 0:
        return np.float32(fallback)  # IEEE's sign of an exact zero
    f = np.float32(float(exact))
    with np.errstate(over="ignore"):  # the largest float32's upper neighbour is inf
        candidates = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    return min(
        (x for x in candidates if np.isfinite(x)),
        key=lambda x: (abs(Fraction(float(x)) - exact), int(np.array(x).view(np.uint32)) & 1),
    )


def test_fast_float32_fma_handles_sums_that_round_onto_a_halfway_point():
    # in double, a * b + 1 rounds to exactly 1 + 2**-24, halfway between two float32s,
    # although the exact value lies above it: rounding twice would give 1, once gives 1 + 2**-23
    a = np.array([0x3FCFCE83], np.uint32).view(np.float32)
    b = np.array([0x331DAF5D], np.uint32).view(np.float32)[0]
    for scale in [np.float32(1), np.float32(2.0**-100), np.float32(2.0**20)]:
        got = arith.fma(a * scale, b, scale)
        assert got[0] == (1 + 2.0**-23) * float(scale)


@pytest.mark.parametrize("level", LEVELS)
def test_empty_layers_draw_like_torch(workers, level):
    # Linear(0, 3) still draws its (zero-width) bias; the rand after it shows the stream position
    calls = [["linear", 0, 3, True, "float32"], ["linear", 3, 0, True, "float64"]]
    calls += [["embedding", 0, 4, "float32"], ["rand", [2], "float32"], ["randn", [0], "float32"]]
    check(workers, level, 5, calls + [["state"]])
