"""The lecture's recommender and training loop, written in torch.

This is the yardstick tinymf is measured against: the same model, the same four steps per
epoch, the same parameter order for Adam. It never imports tinymf, so a comparison shares
nothing but the data.

The model predicts a rating from a user's and an item's latent features and biases::

    yhat = 5 * sigmoid(<w_u, m_i> + b_u + c_i)

The ``"onehot"`` form builds it exactly as the lecture does, from one-hot rows fed to
bias-free ``Linear`` layers, so ``torch.manual_seed(seed)`` followed by construction gives the
lecture's initial weights. The ``"embedding"`` form looks the rows up in ``Embedding`` tables
instead (same attribute names, weights stored users/items x features, normal(0, 1) init).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["MatrixFactorization", "fit", "parameters_numpy", "train"]

FORMS = ("onehot", "embedding")
PARAMETER_NAMES = ("l1.weight", "b1.weight", "l2.weight", "b2.weight")


class MatrixFactorization(torch.nn.Module):
    """Biased matrix factorization: user features ``l1``, user bias ``b1``, item features
    ``l2``, item bias ``b2``."""

    def __init__(self, n_users: int, n_items: int, dim: int = 2, form: str = "onehot") -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; choose one of {FORMS}")
        self.n_users, self.n_items, self.dim, self.form = n_users, n_items, dim, form

        # Construction order is l1, b1, l2, b2, as in the lecture: each draws from the global
        # generator in turn, so this order is what reproduces the lecture's weights.
        if form == "onehot":
            self.l1 = torch.nn.Linear(n_users, dim, bias=False)
            self.b1 = torch.nn.Linear(n_users, 1, bias=False)
            self.l2 = torch.nn.Linear(n_items, dim, bias=False)
            self.b2 = torch.nn.Linear(n_items, 1, bias=False)
        else:
            self.l1 = torch.nn.Embedding(n_users, dim)
            self.b1 = torch.nn.Embedding(n_users, 1)
            self.l2 = torch.nn.Embedding(n_items, dim)
            self.b2 = torch.nn.Embedding(n_items, 1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted ratings, shape (n, 1), for int64 user and item indices of shape (n,)."""
        if self.form == "onehot":
            users = torch.nn.functional.one_hot(users, self.n_users).float()
            items = torch.nn.functional.one_hot(items, self.n_items).float()
        score = (self.l1(users) * self.l2(items)).sum(axis=1).reshape(-1, 1)
        score = score + self.b1(users) + self.b2(items)
        return torch.sigmoid(score) * 5

    def lecture_parameters(self) -> list[torch.nn.Parameter]:
        """The weights in the lecture's order for the optimizer: l1, b1, l2, b2."""
        return [self.l1.weight, self.b1.weight, self.l2.weight, self.b2.weight]


def train(
    model: MatrixFactorization,
    users,
    items,
    ratings,
    epochs: int = 100,
    lr: float = 0.1,
    callback: Callable[[int, float, MatrixFactorization], object] | None = None,
) -> list[float]:
    """Run the lecture's loop and return each epoch's loss.

    Each epoch is the lecture's step 1 to 4: predict, MSE loss, ``backward()``, Adam ``step()``
    then ``zero_grad()``. The loss of an epoch is computed before that epoch's step, so
    ``losses[0]`` is the loss of the initial weights. ``callback(epoch, loss, model)`` runs
    after the step. Inputs may be NumPy arrays, lists or tensors; ratings become float32
    (n, 1), rounded once from whatever precision they come in.
    """
    users, items = _indices(users, "users"), _indices(items, "items")
    y = torch.as_tensor(np.asarray(ratings), dtype=torch.float32).reshape(-1, 1)
    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(model.lecture_parameters(), lr=lr)

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
    """Seed torch's generator, build the model, train it: the lecture's section E in one call."""
    torch.manual_seed(seed)
    model = MatrixFactorization(n_users, n_items, dim=dim, form=form)
    losses = train(model, users, items, ratings, epochs=epochs, lr=lr)
    return model, losses


def parameters_numpy(model: MatrixFactorization) -> dict[str, np.ndarray]:
    """float32 copies of the four weights, keyed ``"l1.weight"`` .. ``"b2.weight"``."""
    return {
        name: parameter.detach().cpu().numpy().copy()
        for name, parameter in zip(PARAMETER_NAMES, model.lecture_parameters(), strict=True)
    }


def _indices(values, what: str) -> torch.Tensor:
    """An int64 index tensor; refuses floats rather than truncating them."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values))
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"{what} must hold integer indices, got {values.dtype}")
    return values.to(torch.int64).reshape(-1)
