"""The ways hand-written autograd engines go wrong, each checked against torch.

Every test builds the same small computation in tinymf and in torch and compares values and
gradients bit for bit (or by the bound the exactness table gives the operation).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ops import BIT_EQUAL, EXACTNESS, assert_bit_equal, assert_within

import tinymf
from tinymf.autograd import GradcheckError, gradcheck

rng = np.random.default_rng(20240611)


def both(array: np.ndarray, requires_grad: bool = True):
    """The same values as a tinymf tensor and a torch tensor."""
    return (
        tinymf.tensor(array, requires_grad=requires_grad),
        torch.tensor(array, requires_grad=requires_grad),
    )


def f32(*shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def same_grad(ours, theirs, what: str = "grad") -> None:
    assert (ours.grad is None) == (theirs.grad is None), what
    assert_bit_equal(ours.grad.value, theirs.grad.numpy(), what)


# -- repeated indices -----------------------------------------------------------------------------

USERS = np.array([0, 2, 0, 1, 0, 2], dtype=np.int64)  # user 0 three times, user 2 twice


def test_repeated_users_accumulate_in_embedding_backward():
    w_ours, w_theirs = both(f32(4, 3))
    upstream = f32(len(USERS), 3)
    tinymf.nn.functional.embedding(tinymf.tensor(USERS), w_ours).backward(tinymf.tensor(upstream))
    torch.nn.functional.embedding(torch.tensor(USERS), w_theirs).backward(
        torch.from_numpy(upstream)
    )
    same_grad(w_ours, w_theirs)
    # row 0 is the sum of three rows of the upstream gradient, added in input order
    assert w_ours.grad.value[0].tolist() == ((upstream[0] + upstream[2]) + upstream[4]).tolist()
    assert not np.any(w_ours.grad.value[3])  # never looked up: zero


@pytest.mark.parametrize("kernels", ["numpy", "torch"])
def test_repeated_users_accumulate_in_one_hot_linear_backward(kernels, request):
    if kernels == "torch":
        request.getfixturevalue("torch_kernels")
    w_ours, w_theirs = both(f32(3, 4))  # Linear(4 users, 3 features)
    upstream = f32(len(USERS), 3)
    x_ours = tinymf.nn.functional.one_hot(tinymf.tensor(USERS), 4).float()
    x_theirs = torch.nn.functional.one_hot(torch.tensor(USERS), 4).float()
    tinymf.nn.functional.linear(x_ours, w_ours).backward(tinymf.tensor(upstream))
    torch.nn.functional.linear(x_theirs, w_theirs).backward(torch.from_numpy(upstream))

    how = EXACTNESS["linear (one-hot input)"]
    if kernels == "torch" or how == BIT_EQUAL:
        same_grad(w_ours, w_theirs)
    else:
        scale = np.abs(upstream).T @ np.abs(x_theirs.numpy())
        assert_within(w_ours.grad.value, w_theirs.grad.numpy(), how.numpy, "one-hot linear",
                      "linear (one-hot input)", scale)  # fmt: skip
    expected = (upstream[0] + upstream[2]) + upstream[4]
    np.testing.assert_allclose(w_ours.grad.value[:, 0], expected, rtol=1e-6)


# -- shapes ---------------------------------------------------------------------------------------


def test_a_size_one_vector_times_a_matrix_gets_a_size_one_gradient():
    a_ours, a_theirs = both(f32(1))
    b_ours, b_theirs = both(f32(1, 2))
    upstream = f32(1, 2)
    (a_ours * b_ours).backward(tinymf.tensor(upstream))
    (a_theirs * b_theirs).backward(torch.from_numpy(upstream))
    assert a_ours.grad.shape == (1,) and b_ours.grad.shape == (1, 2)
    same_grad(a_ours, a_theirs, "a")
    same_grad(b_ours, b_theirs, "b")


def test_mse_between_n_by_1_and_n_warns_and_equals_torch():
    yhat_ours, yhat_theirs = both(f32(7, 1))
    y = f32(7)
    with pytest.warns(UserWarning, match="target size"):
        loss_ours = tinymf.nn.MSELoss()(yhat_ours, tinymf.tensor(y))
    with pytest.warns(UserWarning, match="target size"):
        loss_theirs = torch.nn.MSELoss()(yhat_theirs, torch.tensor(y))
    assert_bit_equal(loss_ours.value, loss_theirs.detach().numpy(), "loss")
    loss_ours.backward()
    loss_theirs.backward()
    same_grad(yhat_ours, yhat_theirs)


# -- accumulation and reuse -----------------------------------------------------------------------


def test_backward_twice_with_retain_graph_accumulates_like_torch():
    x_ours, x_theirs = both(f32(5))
    y_ours = (x_ours * x_ours).sigmoid().sum()
    y_theirs = (x_theirs * x_theirs).sigmoid().sum()
    for _ in range(2):
        y_ours.backward(retain_graph=True)
        y_theirs.backward(retain_graph=True)
    same_grad(x_ours, x_theirs)


def test_backward_of_two_fresh_forwards_accumulates_like_torch():
    x_ours, x_theirs = both(f32(5))
    for _ in range(2):
        (x_ours * 3.0).sum().backward()
        (x_theirs * 3.0).sum().backward()
    same_grad(x_ours, x_theirs)


@pytest.mark.parametrize(
    "expression",
    [
        lambda x: x * x,
        lambda x: x + x,
        lambda x: x - x * 0.5,
        lambda x: (lambda y: y * y + y)(x * 2.0),  # a node reused by two later nodes
        lambda x: (lambda y: (y * y).sigmoid() * y)(x.sigmoid()),
        lambda x: x.sum() * x,
    ],
    ids=["x*x", "x+x", "x-x*0.5", "y=2x; y*y+y", "y=sigmoid(x); sigmoid(y*y)*y", "sum(x)*x"],
)
def test_a_tensor_used_twice_gets_both_gradients_in_torchs_order(expression):
    x_ours, x_theirs = both(f32(4, 3))
    upstream = f32(4, 3)
    expression(x_ours).backward(tinymf.tensor(upstream))
    expression(x_theirs).backward(torch.from_numpy(upstream))
    same_grad(x_ours, x_theirs)


# -- saturation and dtypes ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_gradient_at_minus_1000_is_zero_not_nan(dtype):
    values = np.array([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0], dtype=dtype)
    x_ours, x_theirs = both(values)
    tinymf.sigmoid(x_ours).sum().backward()
    torch.sigmoid(x_theirs).sum().backward()
    assert not np.any(np.isnan(x_ours.grad.value))
    assert x_ours.grad.value[0] == 0 and x_ours.grad.value[-1] == 0
    same_grad(x_ours, x_theirs)


def test_float32_inputs_never_give_float64_gradients_or_optimizer_state():
    tinymf.manual_seed(0)
    layer = tinymf.nn.Linear(5, 2)
    table = tinymf.nn.Embedding(4, 2)
    x = tinymf.tensor(f32(6, 5))
    idx = tinymf.tensor(np.array([0, 3, 3, 1, 0, 2]))
    target = tinymf.tensor(f32(6))
    # Python floats and ints everywhere: each must enter in the tensor's float32
    h = layer(x) * 0.5 + 1 - table(idx) / 3.0
    yhat = (h.sigmoid() * 5.0).sum(axis=1) ** 2
    loss = tinymf.nn.functional.mse_loss(yhat, target) + (h.tanh().mean() - 0.1).abs()
    assert loss.dtype == tinymf.float32
    loss.backward()
    params = list(layer.parameters()) + list(table.parameters())
    for p in params:
        assert p.grad.value.dtype == np.float32
    for opt in (tinymf.optim.Adam(params, lr=0.1, amsgrad=True),
                tinymf.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)):  # fmt: skip
        opt.step()
        for p in params:
            assert p.value.dtype == np.float32
            assert all(v.dtype == np.float32 for v in opt.state[p].values()
                       if isinstance(v, np.ndarray))  # fmt: skip


# -- the graph's lifetime ----------------------------------------------------------------------


def test_backward_through_a_freed_graph_raises_like_torch():
    x_ours, x_theirs = both(f32(3))
    y_ours = (x_ours * x_ours).sum()
    y_theirs = (x_theirs * x_theirs).sum()
    y_ours.backward()
    y_theirs.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y_theirs.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y_ours.backward()


def test_zero_grad_leaves_none():
    tinymf.manual_seed(0)
    layer = tinymf.nn.Linear(3, 2)
    layer(tinymf.tensor(f32(4, 3))).sum().backward()
    assert layer.weight.grad is not None
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None
    layer(tinymf.tensor(f32(4, 3))).sum().backward()
    opt = tinymf.optim.Adam(layer.parameters())
    opt.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_no_grad_records_nothing():
    x = tinymf.tensor(f32(3), requires_grad=True)
    with tinymf.no_grad():
        y = (x * 2).sigmoid().sum()
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()

    @tinymf.no_grad()
    def predict(v):
        return v * 3

    assert predict(x).grad_fn is None
    assert (x * 2).grad_fn is not None  # recording resumes afterwards


def test_detach_cuts_the_graph():
    x_ours, x_theirs = both(f32(4))
    (x_ours.detach() * x_ours).sum().backward()
    (x_theirs.detach() * x_theirs).sum().backward()
    same_grad(x_ours, x_theirs)  # only the second factor's path: the values of x
    assert x_ours.detach().grad_fn is None and not x_ours.detach().requires_grad


# -- the gradient checker itself ----------------------------------------------------------------


def test_gradcheck_accepts_a_right_gradient_and_rejects_a_wrong_one_like_torch():
    from tinymf.functional import record

    values = rng.standard_normal((3, 2))

    def ours_wrong(x):
        return record(x.value * 2.0, (x,), "WrongBackward", lambda g: (g * 3.0,))

    class TheirsWrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return g * 3.0

    x_ours, x_theirs = both(values)
    assert gradcheck(lambda x: (x * x).sigmoid(), (x_ours,))
    assert torch.autograd.gradcheck(lambda x: (x * x).sigmoid(), (x_theirs,))
    assert gradcheck(ours_wrong, (x_ours,), raise_exception=False) is False
    assert torch.autograd.gradcheck(TheirsWrong.apply, (x_theirs,), raise_exception=False) is False
    mismatch = "Jacobian mismatch for output 0 with respect to input 0"
    with pytest.raises(GradcheckError, match=mismatch):
        gradcheck(ours_wrong, (x_ours,))
    with pytest.raises(RuntimeError, match=mismatch):
        torch.autograd.gradcheck(TheirsWrong.apply, (x_theirs,))


def test_gradcheck_needs_an_input_that_requires_grad_and_warns_on_float32():
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda x: x * 2, (tinymf.tensor(np.ones(2)),))
    x = tinymf.tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="not a double precision"):
        gradcheck(lambda v: v * 2, (x,), eps=1e-2, atol=1e-2)
    assert x.grad is None  # the check leaves the inputs' gradients alone


@pytest.mark.parametrize(
    "value", [np.float64(1.5), np.float32(1.5), np.int32(2), np.int16(-3), np.bool_(True), 1.5, 2]
)
def test_tensor_from_a_scalar_takes_torchs_dtype(value):
    # a NumPy scalar keeps its own dtype; a Python number takes torch's default
    ours, theirs = tinymf.tensor(value).dtype, torch.tensor(value).dtype
    assert str(ours).split(".")[-1] == str(theirs).split(".")[-1], (value, ours, theirs)
