"""The lecture's recommender: biased matrix factorization on tinymf.

A rating is predicted from a user's and an item's latent features and biases::

    yhat = 5 * sigmoid(<w_u, m_i> + b_u + c_i)

The ``"onehot"`` form builds it as the lecture does, from one-hot rows fed to bias-free
``Linear`` layers (constructed in the order l1, b1, l2, b2, so ``manual_seed`` followed by
construction gives the lecture's weights); the ``"embedding"`` form looks the same rows up in
``Embedding`` tables. ``reference.MatrixFactorization`` is the same model in torch, with the
same names and signatures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import nn, optim
from .random import manual_seed
from .tensor import Tensor, no_grad, tensor

__all__ = ["MatrixFactorization", "fit", "parameters_numpy", "predict_with_fallback", "train"]

FORMS = ("onehot", "embedding")
PARAMETER_NAMES = ("l1.weight", "b1.weight", "l2.weight", "b2.weight")


class MatrixFactorization(nn.Module):
    """User features ``l1``, user bias ``b1``, item features ``l2``, item bias ``b2``."""

    def __init__(self, n_users: int, n_items: int, dim: int = 2, form: str = "onehot") -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose one of {FORMS}")
        self.n_users, self.n_items, self.dim, self.form = n_users, n_items, dim, form
        if form == "onehot":
            self.l1 = nn.Linear(n_users, dim, bias=False)
            self.b1 = nn.Linear(n_users, 1, bias=False)
            self.l2 = nn.Linear(n_items, dim, bias=False)
            self.b2 = nn.Linear(n_items, 1, bias=False)
        else:
            self.l1 = nn.Embedding(n_users, dim)
            self.b1 = nn.Embedding(n_users, 1)
            self.l2 = nn.Embedding(n_items, dim)
            self.b2 = nn.Embedding(n_items, 1)

    def forward(self, users, items) -> Tensor:
        """Predicted ratings, shape (n, 1), for int64 user and item indices of shape (n,)."""
        users, items = _indices(users, "users"), _indices(items, "items")
        if self.form == "onehot":
            users = nn.functional.one_hot(users, self.n_users).float()
            items = nn.functional.one_hot(items, self.n_items).float()
        score = (self.l1(users) * self.l2(items)).sum(axis=1).reshape(-1, 1)
        score = score + self.b1(users) + self.b2(items)
        return nn.functional.sigmoid(score) * 5

    def lecture_parameters(self) -> list[nn.Parameter]:
        """The weights in the lecture's order for the optimizer: l1, b1, l2, b2."""
        return [self.l1.weight, self.b1.weight, self.l2.weight, self.b2.weight]

    def user_features(self) -> np.ndarray:
        """Latent features per user, (n_users, dim), whichever form stores them."""
        w = self.l1.weight.value
        return (w.T if self.form == "onehot" else w).copy()

    def item_features(self) -> np.ndarray:
        w = self.l2.weight.value
        return (w.T if self.form == "onehot" else w).copy()

    def user_bias(self) -> np.ndarray:
        return self.b1.weight.value.reshape(-1).copy()

    def item_bias(self) -> np.ndarray:
        return self.b2.weight.value.reshape(-1).copy()

    def predict(self, users, items) -> np.ndarray:
        """Predictions as a float32 vector, without recording a graph."""
        with no_grad():
            return self(users, items).value.reshape(-1).copy()


def train(
    model: MatrixFactorization,
    users,
    items,
    ratings,
    epochs: int = 100,
    lr: float = 0.1,
    callback: Callable[[int, float, MatrixFactorization], object] | None = None,
    optimizer: optim.Optimizer | None = None,
) -> list[float]:
    """Run the lecture's loop and return each epoch's loss (computed before its step).

    Each epoch is the lecture's steps 1 to 4: predict, MSE loss, ``backward()``, Adam
    ``step()``, then ``zero_grad()``. ``callback(epoch, loss, model)`` runs after the step.
    """
    users, items = _indices(users, "users"), _indices(items, "items")
    y = tensor(np.asarray(ratings), dtype=np.float32).reshape(-1, 1)
    loss_fn = nn.MSELoss()
    if optimizer is None:
        optimizer = optim.Adam(model.lecture_parameters(), lr=lr)

    losses = []
    for epoch in range(epochs):
        yhat = model(users, items)
        loss = loss_fn(yhat, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

        losses.append(loss.item())
        if callback is not None:
            callback(epoch, losses[-1], model)
    return losses


def fit(
    users,
    items,
    ratings,
    n_users: int,
    n_items: int,
    *,
    dim: int = 2,
    epochs: int = 100,
    lr: float = 0.1,
    seed: int = 21345,
    form: str = "onehot",
) -> tuple[MatrixFactorization, list[float]]:
    """Seed the generator, build the model, train it: the lecture's section E in one call."""
    manual_seed(seed)
    model = MatrixFactorization(n_users, n_items, dim=dim, form=form)
    losses = train(model, users, items, ratings, epochs=epochs, lr=lr)
    return model, losses


def parameters_numpy(model: MatrixFactorization) -> dict[str, np.ndarray]:
    """float32 copies of the four weights, keyed ``"l1.weight"`` .. ``"b2.weight"``."""
    return {
        name: p.value.copy()
        for name, p in zip(PARAMETER_NAMES, model.lecture_parameters(), strict=True)
    }


def predict_with_fallback(model: MatrixFactorization, users, items) -> np.ndarray:
    """Predictions as a float32 vector, where index ``-1`` marks a user or item never seen.

    A pair the model knows gets :meth:`MatrixFactorization.predict`. An unseen user has no
    features and no bias of its own, so its side contributes no interaction and the mean of
    all user biases (likewise for an unseen item): a known item's prediction is then
    ``5 * sigmoid(mean(b1) + c_i)``, its popularity among all users. Never NaN.
    """
    u, i = _indices(users, "users").value, _indices(items, "items").value
    if u.shape != i.shape:
        raise ValueError(f"{u.size} users but {i.size} items")
    for idx, n, what in ((u, model.n_users, "user"), (i, model.n_items, "item")):
        if idx.size and (idx.min() < -1 or idx.max() >= n):
            raise IndexError(f"{what} indices must lie in -1 .. {n - 1}")

    out = np.empty(u.shape, dtype=np.float32)
    known = (u >= 0) & (i >= 0)
    if known.any():
        out[known] = model.predict(u[known], i[known])
    if not known.all():
        u, i = u[~known], i[~known]
        with no_grad():
            user_bias = model.b1.weight.reshape(-1)
            item_bias = model.b2.weight.reshape(-1)
            bu = np.where(u >= 0, user_bias.value[u], user_bias.mean().value)
            ci = np.where(i >= 0, item_bias.value[i], item_bias.mean().value)
            # no interaction term: an unseen side has no features to pair with
            out[~known] = (nn.functional.sigmoid(Tensor(bu + ci)) * 5).value
    return out


def _indices(values, what: str) -> Tensor:
    """An int64 index vector; refuses floats rather than truncating them."""
    arr = values.value if isinstance(values, Tensor) else np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer indices, got {arr.dtype}")
    return Tensor(np.ascontiguousarray(arr.reshape(-1), dtype=np.int64))
