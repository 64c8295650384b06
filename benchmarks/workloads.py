"""The rating sets the benchmark trains on, and how long each one is timed.

Every workload is turned into plain NumPy arrays once, by the parent process, and handed to
each measurement as the same ``.npz`` file: tinymf and torch train on identical indices,
ratings and batch order, and a torch process never imports tinymf.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SEED = 21345  # the lecture's seed, for the weights and for the synthetic ratings


class MissingDataError(Exception):
    """The workload cannot run here (its data is missing); the message says why."""


@dataclass(frozen=True)
class Budget:
    """How many steps to warm up and how long to keep timing.

    Warm-up runs ``warmup_steps`` steps, or fewer once ``warmup_seconds`` have passed (at
    least one). Timing then stops after ``max_epochs`` epochs, or once ``min_epochs`` epochs
    and ``min_seconds`` are both done, or past ``max_seconds`` with ``floor_epochs`` done.
    """

    warmup_steps: int
    warmup_seconds: float
    min_epochs: int
    min_seconds: float
    max_epochs: int
    max_seconds: float
    floor_epochs: int = 3


QUICK_BUDGET = Budget(1, 5.0, 3, 0.0, 3, 5.0, 3)


@dataclass(frozen=True)
class Workload:
    """A rating set, the model size and optimizer, and whether it runs by default."""

    name: str
    title: str
    dim: int
    lr: float
    batch_size: int | None  # None: full batch, one step per epoch
    budget: Budget
    opt_in: bool = False
    rounds: int = 1  # separate processes per measurement, taken in turn; samples pooled
    note: str = ""
    quick_note: str = ""
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "lecture",
            "the lecture: 63 ratings, 9 users x 8 items",
            dim=2,
            lr=0.1,
            batch_size=None,
            budget=Budget(20, 5.0, 200, 2.0, 3000, 4.0),
            rounds=3,
            note="tinymf.data.load_lecture(), full batch, Adam lr 0.1",
        ),
        Workload(
            "ml-100k",
            "MovieLens 100k: 100,000 ratings, 943 users x 1,682 items",
            dim=32,
            lr=0.1,
            batch_size=None,
            budget=Budget(3, 30.0, 10, 4.0, 200, 12.0),
            rounds=2,
            note="u.data (u1.base if absent), full batch",
            quick_note="first 2,000 ratings of u.data",
        ),
        Workload(
            "synthetic-1m",
            "synthetic: 1,000,000 ratings, 100,000 users x 20,000 items",
            dim=32,
            lr=0.1,
            batch_size=None,
            budget=Budget(2, 20.0, 5, 10.0, 100, 30.0),
            note="uniform random ids and ratings 1..5 (NumPy PCG64, seed 21345), full batch",
            quick_note="20,000 ratings, 2,000 users x 400 items",
            extra={
                "n": 1_000_000,
                "n_users": 100_000,
                "n_items": 20_000,
                "quick": (20_000, 2_000, 400),
            },
        ),
        Workload(
            "synthetic-10m",
            "synthetic: 10,000,000 ratings, 100,000 users x 20,000 items",
            dim=32,
            lr=0.1,
            batch_size=1_000_000,
            budget=Budget(2, 30.0, 2, 0.0, 3, 120.0, 2),
            opt_in=True,
            note="as synthetic-1m, in shuffled batches of 1,000,000 (10 steps an epoch); "
            "opt-in (--with-10m): about 4 minutes more on 2 cores",
            quick_note="100,000 ratings in batches of 10,000",
            extra={
                "n": 10_000_000,
                "n_users": 100_000,
                "n_items": 20_000,
                "quick": (100_000, 2_000, 400),
                "quick_batch": 10_000,
            },
        ),
    )
}


def data_dir() -> Path:
    """Where the MovieLens folders live: ``<repo>/../shared/data`` (never bundled)."""
    return Path(os.environ.get("TINYMF_SHARED_DATA", SHARED_DATA))


def prepare(workload: Workload, quick: bool, path: Path) -> dict:
    """Write ``users``, ``items``, ``ratings`` (and the sizes) to ``path``; describe them.

    Raises :class:`MissingDataError` when the workload's data is not on this machine.
    """
    if workload.name == "lecture":
        users, items, ratings, n_users, n_items, source = _lecture()
    elif workload.name == "ml-100k":
        users, items, ratings, n_users, n_items, source = _movielens(2_000 if quick else None)
    else:
        x = workload.extra
        n, n_users, n_items = x["quick"] if quick else (x["n"], x["n_users"], x["n_items"])
        users, items, ratings = _synthetic(n, n_users, n_items)
        source = f"synthetic, seed {SEED}"

    batch = workload.extra.get("quick_batch") if quick else workload.batch_size
    if batch is not None and batch < len(ratings):
        # one fixed shuffle, so that every framework sees the same batches in the same order
        order = np.random.default_rng(SEED + 1).permutation(len(ratings))
        users, items, ratings = users[order], items[order], ratings[order]
    else:
        batch = None
    np.savez(
        path,
        users=users,
        items=items,
        ratings=ratings,
        n_users=n_users,
        n_items=n_items,
        batch_size=-1 if batch is None else batch,
    )
    steps = 1 if batch is None else -(-len(ratings) // batch)
    return {
        "n_ratings": int(len(ratings)),
        "n_users": int(n_users),
        "n_items": int(n_items),
        "batch_size": batch,
        "steps_per_epoch": steps,
        "source": source,
    }


def _lecture():
    from tinymf.data import load_lecture

    r = load_lecture()
    return r.user_idx, r.item_idx, r.rating, r.n_users, r.n_items, r.source


def _movielens(limit: int | None):
    folder = data_dir() / "ml-100k"
    path = next((folder / f for f in ("u.data", "u1.base") if (folder / f).is_file()), None)
    if path is None:
        raise MissingDataError(
            f"ml-100k: skipped, no u.data or u1.base in {folder} (MovieLens is never bundled)"
        )
    table = np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2), max_rows=limit)
    # ids as written (1-based) to contiguous indices, in sorted id order
    user_ids, users = np.unique(table[:, 0], return_inverse=True)
    item_ids, items = np.unique(table[:, 1], return_inverse=True)
    ratings = table[:, 2].astype(np.float32)
    return users, items, ratings, len(user_ids), len(item_ids), str(path)


def _synthetic(n: int, n_users: int, n_items: int):
    rng = np.random.default_rng(SEED)
    users = rng.integers(0, n_users, n, dtype=np.int64)
    items = rng.integers(0, n_items, n, dtype=np.int64)
    ratings = rng.integers(1, 6, n, dtype=np.int64).astype(np.float32)
    return users, items, ratings
