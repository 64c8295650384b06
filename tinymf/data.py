"""Reading rating tables: the lecture's wide layout and the long MovieLens-style layout.

Both readers return :class:`Ratings`: one observed rating per entry, as contiguous user and
item indices plus the original ids. Bad input raises :class:`DataError` with a one-line message
naming the file and the row; nothing is dropped, filled in or guessed silently.

Row numbers in messages count data rows from 1: the header line and blank lines do not count.

Values are parsed to float64 (correctly rounded) and then rounded once to float32: the path of
the lecture's ``pd.read_csv`` followed by ``torch.tensor(...).float()``, so the ratings carry the
lecture's float32 bits (the tests check this on the bundled file and on MovieLens).

pandas is imported inside the functions that need it (:func:`read_long`, :meth:`Ratings.table`),
so importing this module needs NumPy only.
"""

from __future__ import annotations

import csv
import importlib.resources
import itertools
import math
import pathlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import os

    import pandas

__all__ = [
    "DataError",
    "Ratings",
    "align",
    "lecture_path",
    "load_lecture",
    "lookup",
    "read_long",
    "read_pairs",
    "read_ratings",
    "read_wide",
    "split",
    "subset",
]

# A decimal number as people write it in a rating table; Python's float() also accepts "1_0",
# which no CSV tool reads as ten, so the accepted syntax is spelled out here.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?\d+")

# Header names read_long recognises, compared after lower-casing and dropping everything that is
# not a letter or digit (so "userId", "user_id" and "User ID" are all "userid").
USER_COLUMNS = ("user", "userid", "users", "uid", "customer", "customerid", "reviewer")
ITEM_COLUMNS = ("item", "itemid", "items", "iid", "movie", "movieid", "product", "productid")
RATING_COLUMNS = ("rating", "ratings", "score", "stars", "rate")


class DataError(ValueError):
    """A rating file that cannot be read as it stands; the message names the file and the row."""


@dataclass(eq=False)
class Ratings:
    """Observed ratings: entry ``k`` says user ``user_idx[k]`` gave item ``item_idx[k]`` the
    rating ``rating[k]``.

    ``users[u]`` and ``items[i]`` are the ids as written in the file (surrounding spaces
    stripped); the indices are contiguous, ``0 .. n_users - 1`` and ``0 .. n_items - 1``.
    """

    users: list[str]
    items: list[str]
    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    source: str

    def __post_init__(self) -> None:
        self.user_idx = np.asarray(self.user_idx, dtype=np.int64)
        self.item_idx = np.asarray(self.item_idx, dtype=np.int64)
        self.rating = np.asarray(self.rating, dtype=np.float32)
        n = len(self.rating)
        if self.user_idx.shape != (n,) or self.item_idx.shape != (n,):
            raise ValueError("user_idx, item_idx and rating must be 1-d and of equal length")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.rating)

    def __repr__(self) -> str:
        return (
            f"Ratings({len(self)} ratings, {self.n_users} users x {self.n_items} items, "
            f"from {self.source})"
        )

    def table(self) -> pandas.DataFrame:
        """The wide users x items table (float32, NaN where unrated), ids as labels."""
        import pandas as pd

        full = np.full((self.n_users, self.n_items), np.nan, dtype=np.float32)
        full[self.user_idx, self.item_idx] = self.rating
        return pd.DataFrame(full, index=list(self.users), columns=list(self.items))

    def missing(self) -> list[tuple[int, int]]:
        """The (user, item) index pairs with no rating, in row-major order."""
        rated = np.zeros((self.n_users, self.n_items), dtype=bool)
        rated[self.user_idx, self.item_idx] = True
        return [(int(u), int(i)) for u, i in zip(*np.nonzero(~rated), strict=True)]


def lecture_path() -> pathlib.Path:
    """Where the lecture's ``solo.csv``, shipped inside the package, lies on disk."""
    resource = importlib.resources.files("tinymf") / "data" / "solo.csv"
    return pathlib.Path(str(resource))


def load_lecture() -> Ratings:
    """The lecture's 63 ratings (9 women x 8 men), in the lecture's ``df_view.stack()`` order."""
    return _read_wide(lecture_path(), "solo.csv (bundled)")


def read_ratings(path: str | os.PathLike[str]) -> Ratings:
    """Read a rating file in either layout, telling them apart by the first non-blank line.

    The file is long (:func:`read_long`) when that line contains a tab, names a user, an item
    and a rating column (see :func:`read_long`), or consists of numbers only (a headerless
    ``user,item,rating`` row). Otherwise it is wide (:func:`read_wide`): the line is a header of
    item labels after the user-label column, as in the lecture's ``solo.csv``.
    """
    name = str(path)
    first = _first_line(pathlib.Path(path), name)
    if "\t" in first:
        return read_long(path)
    fields = next(csv.reader([first]))
    if _header_roles(fields) is not None:
        return read_long(path)
    if all(_NUMBER.fullmatch(f.strip()) for f in fields):
        return read_long(path)
    return read_wide(path)


def read_wide(path: str | os.PathLike[str]) -> Ratings:
    """Read the lecture's layout: a users x items table with an empty cell for "not rated".

    The first column holds the user labels, the header row the item labels (its first cell,
    the label column's name, is ignored). Values may carry stray spaces (``" 4.02"``,
    ``"4.  "``), and a row may stop early: its missing trailing cells are unrated. Ratings
    come out row by row, left to right, skipping empty cells, which is the order of the
    lecture's ``df_view.stack()`` once its NaN entries are dropped.

    Refused with :class:`DataError`: a cell that is not a number (``inf`` and ``nan`` written
    out included; leave the cell empty instead), a repeated user or item label, a row longer
    than the header, and a user row or item column without a single rating.
    """
    return _read_wide(pathlib.Path(path), str(path))


def _read_wide(path: pathlib.Path, name: str) -> Ratings:
    rows = _csv_rows(path, name)
    header, body = rows[0], rows[1:]
    items = [cell.strip() for cell in header[1:]]
    if not items:
        raise DataError(f"{name}: the header names no item columns")
    for j, item in enumerate(items):
        if not item:
            raise DataError(f"{name}: header column {j + 2} has no item label")
    _no_duplicates(name, items, "the header names item {label} twice (columns {a} and {b})", 2)
    if not body:
        raise DataError(f"{name}: no data rows after the header")

    users: list[str] = []
    user_idx: list[int] = []
    item_idx: list[int] = []
    values: list[float] = []
    for r, cells in enumerate(body):
        label = cells[0].strip()
        where = f"{name}: row {r + 1} ({label!r})"
        if not label:
            raise DataError(f"{name}: row {r + 1}: the user label is empty")
        if len(cells) - 1 > len(items):
            raise DataError(
                f"{where}: {len(cells) - 1} values but the header names {len(items)} items"
            )
        before = len(values)
        for j, cell in enumerate(cells[1:]):
            text = cell.strip()
            if not text:
                continue
            cell_at = f"{where}, column {items[j]!r}"
            values.append(_parse_rating(text, cell_at, " (leave the cell empty if unrated)"))
            user_idx.append(r)
            item_idx.append(j)
        if len(values) == before:
            raise DataError(f"{where}: the row has no rating at all")
        users.append(label)
    _no_duplicates(name, users, "rows {a} and {b} both have the user label {label}", 1)

    rated = np.zeros(len(items), dtype=bool)
    rated[item_idx] = True
    if not rated.all():
        j = int(np.flatnonzero(~rated)[0])
        raise DataError(f"{name}: item column {items[j]!r} has no rating at all")

    return Ratings(
        users=users,
        items=items,
        user_idx=np.array(user_idx, dtype=np.int64),
        item_idx=np.array(item_idx, dtype=np.int64),
        rating=np.array(values, dtype=np.float64).astype(np.float32),
        source=name,
    )


def read_long(path: str | os.PathLike[str]) -> Ratings:
    """Read one rating per line: user, item, rating (and any further columns, ignored).

    Accepted shapes:

    - MovieLens ``u.data``: tab-separated, no header, ``user item rating timestamp``.
    - MovieLens ``ratings.csv``: header ``userId,movieId,rating,timestamp`` (CRLF is fine).
    - Any comma- or tab-separated file with a header naming a user, an item and a rating
      column. Names are compared lower-cased with non-alphanumerics removed; recognised are
      user: ``user, userid, users, uid, customer, customerid, reviewer``; item: ``item, itemid,
      items, iid, movie, movieid, product, productid``; rating: ``rating, ratings, score,
      stars, rate``. Other columns are ignored.
    - A headerless comma-separated file whose first three columns are user, item, rating.

    The first line is a header when one of its fields is a recognised name. Ids may be
    integers or text, with gaps; they map to contiguous indices in sorted order (by value when
    every id in the column is an integer, as text otherwise), and ``users``/``items`` keep the
    ids as written. Entries keep the file's row order.

    Refused with :class:`DataError`: an empty cell, a rating that is not a finite number, a
    (user, item) pair rated twice (both rows named), and an integer id written two ways
    (``7`` and ``07``).
    """
    import pandas as pd

    path = pathlib.Path(path)
    name = str(path)
    first = _first_line(path, name)
    sep = "\t" if "\t" in first else ","
    fields = first.split("\t") if sep == "\t" else next(csv.reader([first]))
    roles = _header_roles(fields)
    if roles is None:
        if any(_normalise(f) in _KNOWN for f in fields):
            raise DataError(
                f"{name}: the header {first.strip()!r} must name exactly one user, one item "
                f"and one rating column (e.g. userId,movieId,rating)"
            )
        if len(fields) < 3:
            raise DataError(
                f"{name}: row 1: {len(fields)} fields; a headerless file needs user, item, rating"
            )
        header, where = None, {"user": 0, "item": 1, "rating": 2}
    else:
        header, where = 0, {role: j for j, role in roles.items()}
    usecols = sorted(where.values())

    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=header,
            usecols=usecols,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8-sig",
            engine="c",
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (byte {e.start})") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{name}: {_one_line(str(e))}") from None
    if len(frame) == 0:
        raise DataError(f"{name}: no data rows")

    # Short rows leave NaN even with na_filter off; an absent cell is an empty one.
    frame = frame.fillna("")

    def column(role: str) -> np.ndarray:
        return frame.iloc[:, usecols.index(where[role])].to_numpy(dtype=object)

    rating = _parse_rating_column(column("rating"), name)
    users, user_idx = _ids(column("user"), name, "user")
    items, item_idx = _ids(column("item"), name, "item")

    key = user_idx * len(items) + item_idx
    order = np.argsort(key, kind="stable")
    same = key[order[1:]] == key[order[:-1]]
    if same.any():
        second = int(order[1:][same].min())
        first_row = int(np.flatnonzero(key == key[second])[0])
        raise DataError(
            f"{name}: rows {first_row + 1} and {second + 1} both rate user "
            f"{users[user_idx[second]]!r}, item {items[item_idx[second]]!r}"
        )

    return Ratings(users, items, user_idx, item_idx, rating, source=name)


def _parse_rating(text: str, where: str, hint: str = "") -> float:
    """One rating cell (already stripped) as a finite float, or a DataError saying why not."""
    if _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
        raise DataError(f"{where}: rating {text!r} is too large to be a number")
    if _NON_FINITE.fullmatch(text):
        raise DataError(f"{where}: rating {text!r} is not finite{hint}")
    raise DataError(f"{where}: rating {text!r} is not a number")


def _parse_rating_column(texts: np.ndarray, name: str) -> np.ndarray:
    """A column of rating strings as float32 (via float64, rounding once).

    A rating file repeats a handful of distinct values, so each distinct string is parsed once;
    the first bad one in order of appearance is also the first bad row.
    """
    import pandas as pd

    codes, distinct = pd.factorize(texts)
    values = np.empty(len(distinct), dtype=np.float64)
    for k, text in enumerate(distinct.tolist()):
        text = text.strip()
        where = f"{name}: row {_first_row(codes, k) + 1}"
        if not text:
            raise DataError(f"{where}: the rating is empty")
        values[k] = _parse_rating(text, where)
    return values[codes].astype(np.float32)


def _ids(texts: np.ndarray, name: str, role: str) -> tuple[list[str], np.ndarray]:
    """Sorted distinct ids of one column (stripped) and each row's index into them.

    Ids sort by value when every one is an integer, as text otherwise. Work happens on the
    distinct strings, so a 100k-row file costs one hash pass.
    """
    import pandas as pd

    codes, distinct = pd.factorize(texts)
    stripped = [text.strip() for text in distinct.tolist()]
    for k, text in enumerate(stripped):
        if not text:
            raise DataError(f"{name}: row {_first_row(codes, k) + 1}: the {role} id is empty")

    # Spaces around an id are not part of it: " 7" and "7" are one id.
    key = _sort_key(stripped)
    ids = sorted(dict.fromkeys(stripped), key=key)  # ties (7, 07) stay in order of appearance
    if key is int:
        _refuse_respelled_ids(ids, stripped, codes, name, role)
    position = {text: k for k, text in enumerate(ids)}
    rank = np.array([position[text] for text in stripped], dtype=np.int64)
    return ids, rank[codes]


def _sort_key(ids: list[str]):
    """Numeric order when every id is an integer, text order otherwise."""
    if all(_INTEGER.fullmatch(text) for text in ids):
        return int
    return str


def _refuse_respelled_ids(
    ids: list[str], stripped: list[str], codes: np.ndarray, name: str, role: str
) -> None:
    """Refuse ids that are one number spelled two ways ("7" and "07") rather than guess."""
    for a, b in itertools.pairwise(ids):
        if int(a) == int(b):
            row_a = _first_row(codes, stripped.index(a))
            row_b = _first_row(codes, stripped.index(b))
            raise DataError(
                f"{name}: rows {row_a + 1} and {row_b + 1} write {role} id {int(a)} in two "
                f"ways ({a!r} and {b!r})"
            )


def _first_row(codes: np.ndarray, k: int) -> int:
    return int(np.flatnonzero(codes == k)[0])


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.strip().lower())


_KNOWN = {
    **dict.fromkeys(USER_COLUMNS, "user"),
    **dict.fromkeys(ITEM_COLUMNS, "item"),
    **dict.fromkeys(RATING_COLUMNS, "rating"),
}


def _header_roles(fields: list[str]) -> dict[int, str] | None:
    """Column position -> role when the fields name exactly one user, item and rating column."""
    roles: dict[int, str] = {}
    for j, field in enumerate(fields):
        role = _KNOWN.get(_normalise(field))
        if role is not None:
            if role in roles.values():
                return None
            roles[j] = role
    return roles if len(roles) == 3 else None


def _first_line(path: pathlib.Path, name: str) -> str:
    """The first non-blank line, after checking the file exists, is text and is not empty."""
    if not path.exists():
        raise DataError(f"{name}: no such file")
    if not path.is_file():
        raise DataError(f"{name}: not a file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for line in f:
                if line.strip():
                    return line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (byte {e.start})") from None
    raise DataError(f"{name}: the file is empty")


def _csv_rows(path: pathlib.Path, name: str) -> list[list[str]]:
    """All non-blank rows of a comma-separated file, the header first."""
    _first_line(path, name)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{name}: {_one_line(str(e))}") from None
    return rows


def _no_duplicates(name: str, labels: list[str], message: str, offset: int) -> None:
    seen: dict[str, int] = {}
    for k, label in enumerate(labels):
        if label in seen:
            text = message.format(label=repr(label), a=seen[label] + offset, b=k + offset)
            raise DataError(f"{name}: {text}")
        seen[label] = k


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- held-out ratings: splits, and ids mapped through another file's maps ---------------------


def subset(data: Ratings, rows, source: str | None = None) -> Ratings:
    """The entries at ``rows`` (kept in file order), re-indexed to the ids they still use.

    Users and items with no entry left drop out, and the rest keep their relative order, so
    the maps stay sorted as :func:`read_long` sorts them.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64).reshape(-1))
    user_idx, item_idx = data.user_idx[rows], data.item_idx[rows]
    users_kept, user_new = np.unique(user_idx, return_inverse=True)
    items_kept, item_new = np.unique(item_idx, return_inverse=True)
    return Ratings(
        users=[data.users[k] for k in users_kept.tolist()],
        items=[data.items[k] for k in items_kept.tolist()],
        user_idx=user_new.reshape(-1),
        item_idx=item_new.reshape(-1),
        rating=data.rating[rows],
        source=data.source if source is None else source,
    )


def split(data: Ratings, test_fraction: float, seed: int) -> tuple[Ratings, Ratings]:
    """A seeded random split into (train, test) with ``test_fraction`` of the entries held out.

    Which entries go where is what ``torch.utils.data.random_split(range(n), [1 - f, f],
    generator=torch.Generator().manual_seed(seed))`` picks: the part sizes are floored and
    the remainder handed out one at a time starting with the training part, and the parts are
    consecutive runs of ``torch.randperm(n)``. Each part keeps the file's order and gets its
    own maps (:func:`subset`); map the test part through the training maps with :func:`align`.
    """
    from .random import Generator, randperm

    if not 0 < test_fraction < 1:
        raise ValueError(
            f"the test fraction must lie strictly between 0 and 1, got {test_fraction}"
        )
    n = len(data)
    sizes = [math.floor(n * frac) for frac in (1 - test_fraction, test_fraction)]
    for k in range(n - sum(sizes)):
        sizes[k % 2] += 1
    if min(sizes) == 0:
        raise DataError(
            f"{data.source}: {n} ratings are too few to hold out {test_fraction:g} of them"
        )
    order = randperm(n, Generator(seed))
    where = f"{test_fraction:g} split, seed {seed}"
    train = subset(data, order[: sizes[0]], f"{data.source} (training part of a {where})")
    test = subset(data, order[sizes[0] :], f"{data.source} (held-out part of a {where})")
    return train, test


def lookup(ids, known: list[str]) -> np.ndarray:
    """Each id's index in ``known`` (a :class:`Ratings` map), or -1 where it is not there.

    Ids are compared as text with surrounding spaces stripped; when every known id is an
    integer, ids are compared as integers, so ``"07"`` finds ``"7"``.
    """
    texts = [str(v).strip() for v in ids]
    position = {text: k for k, text in enumerate(known)}
    numeric = None
    if known and _sort_key(list(known)) is int:
        numeric = {int(text): k for k, text in enumerate(known)}
    out = np.full(len(texts), -1, dtype=np.int64)
    for j, text in enumerate(texts):
        k = position.get(text)
        if k is None and numeric is not None and _INTEGER.fullmatch(text):
            k = numeric.get(int(text))
        if k is not None:
            out[j] = k
    return out


def align(data: Ratings, like: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s entries as (user, item) indices into ``like``'s maps; -1 for an unknown id.

    This is how a test file is read against a model trained on another file (MovieLens'
    ``u1.base`` and ``u1.test``): the test file's own indices mean nothing to the model.
    """
    user_map = lookup(data.users, like.users)
    item_map = lookup(data.items, like.items)
    return user_map[data.user_idx], item_map[data.item_idx]


def read_pairs(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(user ids, item ids) from a comma- or tab-separated file of user, item pairs.

    A first line naming a user and an item column (as :func:`read_long` recognises them) is
    a header and picks those columns; otherwise the first two columns are user and item, so a
    rating file such as ``u1.test`` is accepted as it is (further columns are ignored).
    """
    path = pathlib.Path(path)
    name = str(path)
    first = _first_line(path, name)
    sep = "\t" if "\t" in first else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [row for row in csv.reader(f, delimiter=sep) if any(c.strip() for c in row)]
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{name}: {_one_line(str(e))}") from None

    roles = {_KNOWN.get(_normalise(field)): j for j, field in enumerate(rows[0])}
    if "user" in roles and "item" in roles:
        cols, rows = (roles["user"], roles["item"]), rows[1:]
        if not rows:
            raise DataError(f"{name}: no pairs after the header")
    else:
        cols = (0, 1)
    users: list[str] = []
    items: list[str] = []
    for r, row in enumerate(rows):
        if len(row) <= max(cols):
            raise DataError(
                f"{name}: row {r + 1}: expected a user and an item, got {len(row)} field(s)"
            )
        user, item = row[cols[0]].strip(), row[cols[1]].strip()
        if not user or not item:
            raise DataError(
                f"{name}: row {r + 1}: the {'user' if not user else 'item'} id is empty"
            )
        users.append(user)
        items.append(item)
    return users, items
