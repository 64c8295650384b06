"""Test setup: pin torch's CPU kernel level to tinymf's arithmetic profile, and Hypothesis.

torch's bits depend on its kernel level (AVX2 fuses multiply-adds; DEFAULT does not), so the
level must be fixed before torch is imported. ``ATEN_CPU_CAPABILITY=default pytest`` runs the
whole suite against torch's DEFAULT kernels with tinymf's "default" profile.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import tinymf  # noqa: E402

LEVEL = os.environ["ATEN_CPU_CAPABILITY"]
tinymf.arith.set_profile("default" if LEVEL == "default" else "avx2")

# the default profile replays the same examples on every run, so a red CI always means a
# change, never luck; TINYMF_HYPOTHESIS_PROFILE=long explores many more, freshly drawn
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("TINYMF_HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The MovieLens folders beside the project; their license forbids bundling them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"MovieLens data not found at {SHARED_DATA} (it is never bundled)")
    return SHARED_DATA


@pytest.fixture
def torch_kernels():
    """Substitute torch's sqrt and matrix products for tinymf's, to prove everything else
    bit-equal."""
    pytest.importorskip("torch")
    from tinymf.trace import torch_kernel_functions

    with tinymf.arith.use_kernels(**torch_kernel_functions()) as k:
        yield k


@pytest.fixture(scope="session")
def mkl_replay_mismatch() -> str:
    """Why this machine's torch rounds sqrt or sums sgemm otherwise than the replay, or "".

    Where it is "", this CPU's MKL is the one that printed the lecture's tables.
    """
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    kernels = tinymf.arith.mkl_replay()
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(1 << 16)).astype(np.float32) * np.float32(1e-3)
    if not np.array_equal(kernels["sqrt"](x), torch.sqrt(torch.from_numpy(x)).numpy()):
        return "this CPU's MKL sqrt differs from tinymf's replay (measured on AMD EPYC)"
    for k, m, c in [(63, 2, 9), (63, 1, 8), (500, 4, 40)]:
        g = rng.standard_normal((k, m)).astype(np.float32)
        idx = rng.integers(0, c, k)
        dense = np.eye(c, dtype=np.float32)[idx]
        want = (torch.from_numpy(g).t().mm(torch.from_numpy(dense))).numpy()
        if not np.array_equal(kernels["onehot_weight_grad"](g, idx, c), want):
            return "this CPU's MKL sgemm order differs from tinymf's replay"
    return ""


@pytest.fixture(scope="session")
def mkl_replay(mkl_replay_mismatch):
    """tinymf's replay of torch's MKL sqrt and sgemm, once shown to match torch here.

    The replay is exact on the AMD CPUs it was measured on; MKL takes other code paths on
    other CPUs, so the tests that rely on it first check it against this machine's torch.
    """
    if mkl_replay_mismatch:
        pytest.skip(mkl_replay_mismatch)
    return tinymf.arith.mkl_replay()
