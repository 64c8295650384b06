"""The recommender trained by tinymf next to the same model trained by torch (``reference``).

Both sides start from the same seed and their parameters are compared after 1, 10 and 100
epochs. With torch's vendor kernels substituted, every epoch is bit-equal on rating tables,
seeds, sizes and learning rates that Hypothesis draws; with NumPy's own, the drift on a fixed
set of tables drawn the same way stays within the bounds below, measured on those tables as
docs/exactness.md explains.
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
from tinymf import models

reference = pytest.importorskip("reference")

CHECKPOINTS = (1, 10, 100)

# Worst drift of any parameter from torch's, with NumPy's sqrt and matrix product, over the
# fixed tables of the long profile (which begin with the ci profile's) at both kernel levels
# and the CPUs measured (one-hot, epoch 100: an Intel Xeon's, at the DEFAULT level).
EXACTNESS = {
    "MatrixFactorization, initial weights": BIT_EQUAL,
    "MatrixFactorization, loss of epoch 1": BIT_EQUAL,
    "MatrixFactorization onehot, epoch 1": Seam(Bound(ulp=2048, abs=5.960464477539063e-08)),
    "MatrixFactorization onehot, epoch 10": Seam(Bound(ulp=4608, abs=5.066394805908203e-07)),
    "MatrixFactorization onehot, epoch 100": Seam(Bound(ulp=124400, abs=3.647804260253906e-05)),
    "MatrixFactorization embedding, epoch 1": Seam(Bound(ulp=128, abs=1.1920928955078125e-07)),
    "MatrixFactorization embedding, epoch 10": Seam(Bound(ulp=2560, abs=7.748603820800781e-07)),
    "MatrixFactorization embedding, epoch 100": Seam(Bound(ulp=7008, abs=5.125999450683594e-06)),
}

RUNS = settings(
    max_examples=max(3, settings.default.max_examples // 8),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# A bound is a measurement, checked on the very tables that measured it: fixed ones from
# NumPy's generator (Hypothesis's examples change with the code around them; see test_ops).
# The ci profile's 5 tables are the first 5 of the long profile's 125.
FIXED_TABLES = max(3, settings.default.max_examples // 8)


@pytest.fixture(autouse=True, scope="module")
def _write_measurements():
    yield
    dump_measured()


@st.composite
def rating_tables(draw) -> dict:
    """Who rated what, how, and how the model is set up: a small lecture-like problem."""
    n_users, n_items = draw(st.integers(1, 12)), draw(st.integers(1, 10))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=min(60, n_users * n_items),
            unique=True,
        )
    )
    scores = st.sampled_from([1.0, 2.0, 2.5, 3.0, 4.0, 4.5, 5.0]) | st.floats(0.5, 5, width=32)
    ratings = draw(st.lists(scores, min_size=len(pairs), max_size=len(pairs)))
    return {
        "users": np.array([u for u, _ in pairs], dtype=np.int64),
        "items": np.array([i for _, i in pairs], dtype=np.int64),
        "ratings": np.array(ratings, dtype=np.float32),
        "n_users": n_users,
        "n_items": n_items,
        "dim": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "lr": draw(st.sampled_from([0.1, 0.01])),
    }


def fixed_table(i: int) -> dict:
    """Table number ``i`` of the fixed set, drawn like :func:`rating_tables`."""
    rng = np.random.default_rng([i, 1729])
    n_users, n_items = int(rng.integers(1, 13)), int(rng.integers(1, 11))
    cells = rng.choice(n_users * n_items, int(rng.integers(1, min(60, n_users * n_items) + 1)),
                       replace=False)  # fmt: skip
    scores = np.array([1.0, 2.0, 2.5, 3.0, 4.0, 4.5, 5.0])
    ratings = np.where(
        rng.integers(2, size=cells.size) == 0,
        scores[rng.integers(len(scores), size=cells.size)],
        rng.uniform(0.5, 5, cells.size),
    )
    return {
        "users": (cells // n_items).astype(np.int64),
        "items": (cells % n_items).astype(np.int64),
        "ratings": ratings.astype(np.float32),
        "n_users": n_users,
        "n_items": n_items,
        "dim": int(rng.integers(1, 4)),
        "seed": int(rng.integers(0, 2**32)),
        "lr": float(rng.choice([0.1, 0.01])),
    }


def train_both(table: dict, form: str) -> tuple[dict, dict]:
    """Parameters (and losses) of each side at the start and after each checkpoint."""

    def run(lib, module) -> dict:
        lib.manual_seed(table["seed"])
        model = module.MatrixFactorization(
            table["n_users"], table["n_items"], dim=table["dim"], form=form
        )
        seen = {0: module.parameters_numpy(model)}

        def keep(epoch, loss, m):
            if epoch + 1 in CHECKPOINTS:
                seen[epoch + 1] = module.parameters_numpy(m)

        seen["losses"] = module.train(
            model, table["users"], table["items"], table["ratings"],
            epochs=CHECKPOINTS[-1], lr=table["lr"], callback=keep,
        )  # fmt: skip
        return seen

    return run(tinymf, models), run(torch, reference)


@pytest.mark.parametrize("form", ["onehot", "embedding"])
@RUNS
@given(table=rating_tables())
def test_training_is_bit_equal_to_torch_with_torch_kernels(table, form, torch_kernels):
    ours, theirs = train_both(table, form)
    for epoch in (0,) + CHECKPOINTS:
        for name in models.PARAMETER_NAMES:
            assert_bit_equal(ours[epoch][name], theirs[epoch][name], f"{name}, epoch {epoch}")
    assert ours["losses"] == theirs["losses"]


@pytest.mark.parametrize("form", ["onehot", "embedding"])
def test_training_drift_with_numpy_kernels_stays_within_the_measured_bound(form):
    assert_numpy_kernels()
    for i in range(FIXED_TABLES):
        ours, theirs = train_both(fixed_table(i), form)
        for name in models.PARAMETER_NAMES:
            assert_bit_equal(ours[0][name], theirs[0][name], f"table {i}, initial {name}")
        # the first loss is computed before any sqrt or matrix-product gradient is used
        assert ours["losses"][0] == theirs["losses"][0], f"table {i}"
        for epoch in CHECKPOINTS:
            key = f"MatrixFactorization {form}, epoch {epoch}"
            for name in models.PARAMETER_NAMES:
                assert_within(ours[epoch][name], theirs[epoch][name], EXACTNESS[key].numpy,
                              f"table {i}, {name}, epoch {epoch}", key)  # fmt: skip
