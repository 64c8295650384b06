"""Training on real rating files: mini-batches, regularisation, and held-out error.

The lecture trains on all of its 63 ratings at once. A real rating file has tens of thousands,
so :func:`train_minibatch` runs the same four steps (predict, loss, ``backward()``, ``step()``)
on shuffled blocks of ratings, and can add a penalty on the weights so the model does not just
memorise the training ratings. :func:`evaluate` measures the error on ratings it did not train
on, including pairs whose user or item it never saw (see
:func:`tinymf.models.predict_with_fallback`).

Shuffling uses tinymf's generator: each epoch's order is ``torch.randperm(n, generator=g)``
with ``g = torch.Generator().manual_seed(seed)``, so a torch loop written the same way visits
the same batches in the same order.

The library prints nothing: progress reaches the caller through ``on_batch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import nn, optim
from .models import MatrixFactorization, _indices, predict_with_fallback
from .random import Generator, manual_seed, randperm
from .tensor import Tensor

__all__ = [
    "Metrics",
    "batch_order",
    "evaluate",
    "fit_ratings",
    "mae",
    "penalty",
    "rmse",
    "train_minibatch",
]


@dataclass(frozen=True)
class Metrics:
    """Root-mean-square and mean absolute error over ``n`` ratings."""

    rmse: float
    mae: float
    n: int


def rmse(predictions, ratings) -> float:
    """sqrt(mean((prediction - rating)^2)), accumulated in float64 (a score, not a loss)."""
    diff = _difference(predictions, ratings)
    return math.sqrt(float(np.mean(diff * diff)))


def mae(predictions, ratings) -> float:
    """mean(|prediction - rating|), accumulated in float64."""
    return float(np.mean(np.abs(_difference(predictions, ratings))))


def _difference(predictions, ratings) -> np.ndarray:
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    r = np.asarray(ratings, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"{p.size} predictions for {r.size} ratings")
    if p.size == 0:
        raise ValueError("no ratings to score")
    return p - r


def evaluate(model: MatrixFactorization, users, items, ratings) -> Metrics:
    """RMSE and MAE of the model's predictions; index ``-1`` marks an unseen user or item."""
    pred = predict_with_fallback(model, users, items)
    return Metrics(rmse(pred, ratings), mae(pred, ratings), int(pred.size))


def batch_order(
    n: int, batch_size: int | None, generator: Generator | None
) -> Iterator[np.ndarray]:
    """One epoch's batches of rating positions.

    With a generator the positions are ``randperm(n, generator)`` cut into blocks of
    ``batch_size`` (the last one shorter); without one they stay in file order. A
    ``batch_size`` of ``None`` is one batch of everything, the lecture's full-batch step.
    """
    order = np.arange(n, dtype=np.int64) if generator is None else randperm(n, generator)
    size = n if batch_size is None else batch_size
    for start in range(0, n, size):
        yield order[start : start + size]


def penalty(model: MatrixFactorization, users, items) -> Tensor:
    """Mean over the batch of ``|w_u|^2 + |m_i|^2``: L2 on the latent features of the rows used.

    Only the rows a batch touches are penalised, so a user or item is held back in proportion
    to how often it is rated, the usual regularisation for matrix factorization (unlike
    Adam's ``weight_decay``, which pulls every row at every step). The biases are left free:
    penalising them as well scored worse on held-out ratings (docs/real-data.md).
    """
    users, items = _indices(users, "users"), _indices(items, "items")
    if model.form == "onehot":
        users = nn.functional.one_hot(users, model.n_users).float()
        items = nn.functional.one_hot(items, model.n_items).float()
    w, m = model.l1(users), model.l2(items)
    return ((w * w).sum(axis=1) + (m * m).sum(axis=1)).mean()


def train_minibatch(
    model: MatrixFactorization,
    users,
    items,
    ratings,
    *,
    epochs: int = 10,
    batch_size: int | None = 1024,
    lr: float = 0.01,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    reg: float = 0.0,
    shuffle_seed: int | None = 0,
    optimizer: optim.Optimizer | None = None,
    on_batch: Callable[[int, int, float], object] | None = None,
) -> list[float]:
    """Train with Adam on batches of ratings; return each epoch's mean training MSE.

    Each batch runs the lecture's steps: predict, ``MSELoss`` (plus ``reg *`` :func:`penalty`
    when ``reg`` > 0), ``backward()``, ``step()``, ``zero_grad()``. ``weight_decay`` and
    ``eps`` are Adam's: its L2 term, and the constant added to its denominator (a larger one
    damps the steps of rows whose gradients are small, i.e. of rarely rated users and items).

    ``shuffle_seed=None`` keeps the file order; ``batch_size=None`` is one batch of
    everything, which with no shuffling and no penalty is exactly :func:`tinymf.models.train`.
    An epoch's MSE is the size-weighted mean of its batches' MSE before each step (the penalty
    is not included). ``on_batch(epoch, batch, mse)`` runs after every step.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if reg < 0:
        raise ValueError(f"reg must be non-negative, got {reg}")
    users = _indices(users, "users").value
    items = _indices(items, "items").value
    y = np.asarray(ratings, dtype=np.float32).reshape(-1, 1)
    if not len(users) == len(items) == len(y):
        raise ValueError(f"{len(users)} users, {len(items)} items and {len(y)} ratings")
    if len(y) == 0:
        raise ValueError("no ratings to train on")
    loss_fn = nn.MSELoss()
    if optimizer is None:
        optimizer = optim.Adam(
            model.lecture_parameters(), lr=lr, eps=eps, weight_decay=weight_decay
        )
    generator = None if shuffle_seed is None else Generator(shuffle_seed)

    losses = []
    for epoch in range(epochs):
        seen = []
        for k, rows in enumerate(batch_order(len(y), batch_size, generator)):
            u, i = Tensor(users[rows]), Tensor(items[rows])
            yhat = model(u, i)
            mse = loss_fn(yhat, Tensor(y[rows]))
            loss = mse + penalty(model, u, i) * reg if reg > 0 else mse
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

            seen.append((mse.item(), len(rows)))
            if on_batch is not None:
                on_batch(epoch, k, seen[-1][0])
        # one batch: its loss as it is (the lecture's number), not re-weighted
        mean = seen[0][0] if len(seen) == 1 else sum(v * n for v, n in seen) / len(y)
        losses.append(mean)
    return losses


def fit_ratings(
    users,
    items,
    ratings,
    n_users: int,
    n_items: int,
    *,
    dim: int = 32,
    epochs: int = 10,
    batch_size: int | None = 1024,
    lr: float = 0.01,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    reg: float = 0.0,
    seed: int = 0,
    shuffle_seed: int | None = 0,
    form: str = "onehot",
    on_batch: Callable[[int, int, float], object] | None = None,
) -> tuple[MatrixFactorization, list[float]]:
    """``manual_seed(seed)``, build the model, :func:`train_minibatch` it."""
    manual_seed(seed)
    model = MatrixFactorization(n_users, n_items, dim=dim, form=form)
    losses = train_minibatch(
        model,
        users,
        items,
        ratings,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        eps=eps,
        reg=reg,
        shuffle_seed=shuffle_seed,
        on_batch=on_batch,
    )
    return model, losses
