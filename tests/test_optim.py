"""Adam and SGD against torch.optim, step by step: parameters and every piece of state.

With torch's ``sqrt`` substituted (the ``torch_kernels`` fixture) Adam must be bit-equal; with
NumPy's own ``sqrt`` its drift over long runs is measured and bounded. SGD uses no vendor
kernel and must be bit-equal as it is.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ops import (
    BIT_EQUAL,
    Bound,
    Seam,
    assert_bit_equal,
    assert_numpy_kernels,
    assert_within,
    dump_measured,
)

import tinymf

# How each optimizer agrees with torch when tinymf uses NumPy's sqrt (with torch's substituted,
# both are bit-equal). The Adam bounds are the worst drift measured over 20 runs of 1000 steps
# (seeds 2024 to 2043) at both kernel levels, 1024 parameters each, a fresh N(0, 1) gradient
# every step, default betas and eps: the worst |difference| of a parameter, and the worst
# distance in ulps (met by parameters passing close to zero, where an ulp is tiny), over the
# CPUs measured (MKL's sqrt errs on other elements on each; float64's figures come from an
# Intel Xeon). The tests rerun seed 2024, all 20 with TINYMF_HYPOTHESIS_PROFILE=long.
# docs/exactness.md says why.
EXACTNESS = {
    "SGD": BIT_EQUAL,
    "Adam, lr 1e-3, float32": Seam(Bound(ulp=4352, abs=2.384185791015625e-07)),
    "Adam, lr 0.1, float32": Seam(Bound(ulp=16384, abs=2.86102294921875e-06)),
    "Adam, lr 1e-3, float64": Seam(Bound(ulp=256, abs=4.440892098500626e-16)),
    "Adam, lr 0.1, float64": Seam(Bound(ulp=8192, abs=3.552713678800501e-15)),
}
DRIFT_SEEDS = range(2024, 2044) if settings.default.max_examples >= 1000 else range(2024, 2025)

# torch_kernels is function-scoped but only swaps two module attributes: safe to share
# across Hypothesis examples
WITH_FIXTURE = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(autouse=True, scope="module")
def _write_measurements():
    yield
    dump_measured()


# -- building the same problem on both sides ----------------------------------------------------

DTYPES = (np.float32, np.float64)

shapes = st.one_of(
    st.sampled_from([(), (0,), (1,), (1, 1), (0, 3)]),
    st.integers(2, 70).map(lambda n: (n,)),  # both sides of the 8- and 16-lane vector blocks
    st.lists(st.integers(0, 6), min_size=2, max_size=3).map(tuple),
)


@st.composite
def adam_settings(draw) -> dict:
    return {
        "lr": draw(st.sampled_from([1e-3, 0.1]) | st.floats(1e-6, 1.0)),
        # beta1 > 0.5 and beta1 <= 0.5 take lerp's two different formulas
        "betas": (
            draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.999)),
            draw(st.sampled_from([0.0, 0.999]) | st.floats(0.0, 0.9999)),
        ),
        "eps": draw(st.sampled_from([1e-8]) | st.floats(1e-12, 1e-2)),
        "weight_decay": draw(st.sampled_from([0.0]) | st.floats(0.0, 0.5)),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(st.booleans()),
    }


@st.composite
def sgd_settings(draw) -> dict:
    momentum = draw(st.sampled_from([0.0, 0.9]) | st.floats(0.0, 0.99))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.sampled_from([0.0]) | st.floats(0.0, 1.0))
    return {
        "lr": draw(st.sampled_from([1e-3, 0.1]) | st.floats(1e-6, 1.0)),
        "momentum": momentum,
        "dampening": dampening,
        "nesterov": nesterov,
        "weight_decay": draw(st.sampled_from([0.0]) | st.floats(0.0, 0.5)),
        "maximize": draw(st.booleans()),
    }


@st.composite
def problems(draw, settings_strategy) -> dict:
    """Parameters, per-group settings, and how many steps with which gradients."""
    param_shapes = draw(st.lists(shapes, min_size=1, max_size=3))
    n_groups = draw(st.integers(1, min(2, len(param_shapes))))
    return {
        "dtype": draw(st.sampled_from(DTYPES)),
        "shapes": param_shapes,
        "groups": [draw(settings_strategy) for _ in range(n_groups)],
        "steps": draw(st.integers(1, 30)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "grad_scale": draw(st.sampled_from([1e-6, 1e-3, 1.0, 1e3])),
        # some steps leave some parameters without a gradient: they must be skipped
        "skip": draw(st.sampled_from([0.0, 0.3])),
    }


def _groups(params: list, settings_list: list[dict]) -> list[dict]:
    """Split the parameters into len(settings_list) consecutive groups."""
    cuts = np.array_split(np.arange(len(params)), len(settings_list))
    return [
        {"params": [params[i] for i in idx], **cfg}
        for idx, cfg in zip(cuts, settings_list, strict=True)
    ]


class SideBySide:
    """The same parameters in tinymf and torch, each with its optimizer."""

    def __init__(self, name: str, problem: dict) -> None:
        self.rng = np.random.default_rng(problem["seed"])
        self.dtype = problem["dtype"]
        self.problem = problem
        init = [self._draw(s, 1.0) for s in problem["shapes"]]
        self.ours = [tinymf.tensor(v, requires_grad=True) for v in init]
        self.theirs = [torch.tensor(v, requires_grad=True) for v in init]
        self.opt_ours = getattr(tinymf.optim, name)(_groups(self.ours, problem["groups"]))
        self.opt_theirs = getattr(torch.optim, name)(_groups(self.theirs, problem["groups"]))

    def _draw(self, shape, scale) -> np.ndarray:
        value = np.array(self.rng.standard_normal(shape) * scale)
        # exact zeros: lerp and sqrt at 0 (many negative ones where a zero's sign is tested)
        signed = self.problem.get("negative_zeros", 0.0)
        value[self.rng.random(shape) < (signed or 0.1)] = -0.0 if signed else 0.0
        return np.asarray(value, dtype=self.dtype)

    def step(self) -> None:
        for ours, theirs in zip(self.ours, self.theirs, strict=True):
            if self.rng.random() < self.problem["skip"]:
                ours.grad = theirs.grad = None
            else:
                g = self._draw(tuple(ours.shape), self.problem["grad_scale"])
                ours.grad = tinymf.tensor(g)
                theirs.grad = torch.from_numpy(g.copy())
        self.opt_ours.step()
        self.opt_theirs.step()

    def pairs(self):
        """(what, tinymf array, torch array) for every parameter and every state buffer."""
        for i, (ours, theirs) in enumerate(zip(self.ours, self.theirs, strict=True)):
            yield f"param {i}", ours.value, theirs.detach().numpy()
            mine = self.opt_ours.state.get(ours, {})
            ref = self.opt_theirs.state.get(theirs, {})
            buffers = {k for k, v in ref.items() if k != "step" and v is not None}
            assert buffers == {k for k in mine if k != "step"}, (i, sorted(mine), sorted(ref))
            if "step" in ref:
                assert mine["step"] == int(ref["step"].item())
            for k in sorted(buffers):
                yield f"param {i} {k}", mine[k], ref[k].numpy()


def run_bit_equal(name: str, problem: dict) -> None:
    side = SideBySide(name, problem)
    for step in range(problem["steps"]):
        side.step()
        for what, ours, theirs in side.pairs():
            assert_bit_equal(ours, theirs, f"{name} step {step + 1}, {what}")


# -- bit-equal, step by step -------------------------------------------------------------------


@WITH_FIXTURE
@given(problem=problems(adam_settings()))
def test_adam_parameters_and_state_are_bit_equal_to_torch_with_torch_sqrt(problem, torch_kernels):
    run_bit_equal("Adam", problem)


@given(problem=problems(sgd_settings()))
def test_sgd_parameters_and_momentum_are_bit_equal_to_torch(problem):
    assert_numpy_kernels()  # SGD needs no vendor kernel, so none is substituted
    run_bit_equal("SGD", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.51, 0.9, 0.999])
@pytest.mark.parametrize(
    "options",
    [{}, {"amsgrad": True}, {"maximize": True}, {"weight_decay": 0.01}],
    ids=["plain", "amsgrad", "maximize", "weight_decay"],
)
def test_adam_is_bit_equal_on_both_lerp_branches_and_every_option(
    dtype, beta1, options, torch_kernels
):
    # a fixed grid, so every run covers lerp's two formulas (weight 1 - beta1 below and at or
    # above 0.5) with each option, whatever Hypothesis happens to draw
    problem = {
        "dtype": dtype, "shapes": [(37,), (), (3, 5)], "steps": 12, "seed": 7,
        "grad_scale": 1.0, "skip": 0.0,
        "groups": [{"lr": 0.1, "betas": (beta1, 0.999), **options}],
    }  # fmt: skip
    run_bit_equal("Adam", problem)


@pytest.mark.parametrize(
    ("beta1", "shapes"),
    [(0.5000000001, [(7,), (17,)]), (0.0, [(32785,)]), (0.0, [(40001,), (5,)])],
    ids=["1 - beta1 rounds to 0.5 in float32", "one long tensor", "long and short"],
)
def test_adam_lerp_takes_the_form_and_the_blocks_torch_does(beta1, shapes, torch_kernels):
    # the lerp's formula is chosen by its weight as a float32, and its vector blocks restart
    # in each thread's share of a long tensor: either can flip the sign of a zero moment
    problem = {
        "dtype": np.float32, "shapes": shapes, "steps": 3, "seed": 5, "grad_scale": 1.0,
        "skip": 0.0, "groups": [{"lr": 0.1, "betas": (beta1, 0.999)}], "negative_zeros": 0.7,
    }  # fmt: skip
    run_bit_equal("Adam", problem)


def test_adam_float64_bias_correction_is_a_power_not_a_sqrt(torch_kernels):
    # torch computes sqrt(1 - beta2**t) as ``** 0.5`` (C's pow); for this beta2 at step 2 the
    # double differs in its last bit from math.sqrt, which float64 parameters would show
    beta2 = 0.5008748687434371
    assert (1 - beta2**2) ** 0.5 != np.sqrt(1 - beta2**2)
    problem = {
        "dtype": np.float64, "shapes": [(40,)], "steps": 2, "seed": 3, "grad_scale": 1.0,
        "skip": 0.0, "groups": [{"lr": 0.1, "betas": (0.9, beta2)}],
    }  # fmt: skip
    run_bit_equal("Adam", problem)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_and_weight_decay_is_bit_equal(dtype, nesterov):
    group = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": nesterov}
    if not nesterov:
        group["dampening"] = 0.1
    problem = {
        "dtype": dtype, "shapes": [(37,), (), (3, 5)], "steps": 25, "seed": 11,
        "grad_scale": 1.0, "skip": 0.0, "groups": [group],
    }  # fmt: skip
    run_bit_equal("SGD", problem)


# -- with NumPy's sqrt: a measured bound ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("lr", ["1e-3", "0.1"])
def test_adam_drift_with_numpy_sqrt_stays_within_the_measured_bound(lr, dtype):
    assert_numpy_kernels()
    key = f"Adam, lr {lr}, {np.dtype(dtype).name}"
    for seed in DRIFT_SEEDS:
        problem = {
            "dtype": dtype, "shapes": [(1024,)], "steps": 1000, "seed": seed, "grad_scale": 1.0,
            "skip": 0.0, "groups": [{"lr": float(lr)}],
        }  # fmt: skip
        side = SideBySide("Adam", problem)
        for _ in range(problem["steps"]):
            side.step()
        for what, ours, theirs in side.pairs():
            # the moments never see sqrt (the gradients do not depend on the parameters)
            if what == "param 0":
                assert_within(ours, theirs, EXACTNESS[key].numpy, f"{key}, seed {seed}", key)
            else:
                assert_bit_equal(ours, theirs, what)


# -- behaviour beyond the arithmetic ----------------------------------------------------------


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_float32_parameters_get_float32_state(name):
    p = tinymf.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    extra = {"momentum": 0.9} if name == "SGD" else {"amsgrad": True}
    opt = getattr(tinymf.optim, name)([p], lr=0.1, weight_decay=0.1, **extra)
    for _ in range(2):
        p.grad = tinymf.tensor(np.full((3, 2), 0.5, np.float32))
        opt.step()
    assert p.dtype == tinymf.float32 and p.value.dtype == np.float32
    buffers = [v for v in opt.state[p].values() if isinstance(v, np.ndarray)]
    assert buffers and all(b.dtype == np.float32 for b in buffers)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_zero_grad_leaves_none_like_torch(name):
    ours = tinymf.tensor(np.ones(3, np.float32), requires_grad=True)
    theirs = torch.ones(3, requires_grad=True)
    opts = [getattr(m.optim, name)([p], lr=0.1) for m, p in ((tinymf, ours), (torch, theirs))]
    (ours * 2).sum().backward()
    (theirs * 2).sum().backward()
    for opt in opts:
        opt.zero_grad()
    assert ours.grad is None and theirs.grad is None


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_parameters_without_a_gradient_are_left_alone(name):
    a = tinymf.tensor(np.ones(3, np.float32), requires_grad=True)
    b = tinymf.tensor(np.ones(3, np.float32), requires_grad=True)
    extra = {"momentum": 0.9} if name == "SGD" else {}
    opt = getattr(tinymf.optim, name)([a, b], lr=0.1, **extra)
    a.grad = tinymf.tensor(np.ones(3, np.float32))
    opt.step()
    assert np.all(b.value == 1) and b not in opt.state and b.grad is None
    assert np.all(a.value != 1) and a in opt.state
