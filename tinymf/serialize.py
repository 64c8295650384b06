"""Saving a trained recommender with its id maps, and loading it back.

A model file is a NumPy ``.npz`` archive (no pickled objects), so NumPy alone reads it, and
so does ``reference.load_tinymf`` for the torch twin. It holds:

- ``l1.weight``, ``b1.weight``, ``l2.weight``, ``b2.weight``: the model's ``state_dict()``,
  float32, in the shapes torch's modules use (``Linear``: out x in; ``Embedding``: n x dim);
- ``users``, ``items``: the original ids, position = index the model uses;
- ``meta``: JSON text with the format name and version, the model's form and sizes, and the
  settings it was trained with (whatever the caller passes, e.g. the command's options).

The archive is written to a temporary file beside the target and moved over it with
``os.replace``, so an interrupted save leaves the old file (or none), never half a file.
Loading checks everything it relies on and raises :class:`ModelFileError`, one line naming the
file, for anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .models import FORMS, PARAMETER_NAMES, MatrixFactorization
from .random import get_rng_state, set_rng_state

__all__ = ["FORMAT", "VERSION", "ModelFileError", "Saved", "load", "save"]

FORMAT = "tinymf-matrix-factorization"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be loaded as it stands; the message names the file."""


@dataclass
class Saved:
    """A loaded model with its id maps and the settings saved with it."""

    model: MatrixFactorization
    users: list[str]
    items: list[str]
    settings: dict[str, Any] = field(default_factory=dict)


def parameter_shapes(form: str, n_users: int, n_items: int, dim: int) -> dict[str, tuple]:
    """The shape of each weight for a model of this form and size."""
    if form == "onehot":
        return {
            "l1.weight": (dim, n_users),
            "b1.weight": (1, n_users),
            "l2.weight": (dim, n_items),
            "b2.weight": (1, n_items),
        }
    return {
        "l1.weight": (n_users, dim),
        "b1.weight": (n_users, 1),
        "l2.weight": (n_items, dim),
        "b2.weight": (n_items, 1),
    }


def save(
    path: str | os.PathLike[str],
    model: MatrixFactorization,
    users: list[str],
    items: list[str],
    settings: dict[str, Any] | None = None,
) -> None:
    """Write the model, its id maps and ``settings`` (JSON-serialisable) to ``path``, atomically."""
    if len(users) != model.n_users or len(items) != model.n_items:
        raise ValueError(
            f"{len(users)} user ids and {len(items)} item ids for a model of "
            f"{model.n_users} users and {model.n_items} items"
        )
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "form": model.form,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "dim": model.dim,
        "settings": dict(settings or {}),
    }
    arrays = {name: t.value for name, t in model.state_dict().items()}
    arrays["users"] = np.array([str(u) for u in users], dtype=np.str_)
    arrays["items"] = np.array([str(i) for i in items], dtype=np.str_)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))

    target = pathlib.Path(path)
    directory = target.parent if str(target.parent) else pathlib.Path(".")
    # a fresh name beside the target (same file system, so os.replace is atomic), created
    # the way open() creates files, so the model file gets the usual permissions
    tmp = directory / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        # a failed or interrupted save must not leave its temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str]) -> Saved:
    """Read a file written by :func:`save`; :class:`ModelFileError` if it is not one."""
    name = str(path)
    arrays = read_arrays(path)

    meta = _meta(arrays, name)
    form, dims = meta["form"], (meta["n_users"], meta["n_items"], meta["dim"])
    shapes = parameter_shapes(form, *dims)
    state = {}
    for key, shape in shapes.items():
        value = arrays[key]
        if value.dtype != np.float32:
            raise ModelFileError(f"{name}: {key} is {value.dtype}, expected float32")
        if value.shape != shape:
            raise ModelFileError(
                f"{name}: {key} has shape {value.shape}, expected {shape} for "
                f"{dims[0]} users, {dims[1]} items, dim {dims[2]} ({form} form)"
            )
        if not np.isfinite(value).all():
            raise ModelFileError(f"{name}: {key} holds values that are not finite")
        state[key] = value
    users, items = _ids(arrays, "users", dims[0], name), _ids(arrays, "items", dims[1], name)

    # building the model draws initial weights; keep the caller's random stream as it was
    rng = get_rng_state()
    try:
        model = MatrixFactorization(dims[0], dims[1], dim=dims[2], form=form)
    finally:
        set_rng_state(rng)
    model.load_state_dict(state)
    return Saved(model, users, items, meta["settings"])


def read_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of a model file, read fully (so a damaged member fails here, not later)."""
    name = str(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{name}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"{name}: is a directory, not a model file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{name}: a single NumPy array, not a tinymf model file")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(
            f"{name}: not a tinymf model file, or a truncated or damaged one ({_line(exc)})"
        ) from None
    except ValueError as exc:
        raise ModelFileError(f"{name}: not a readable model file ({_line(exc)})") from None
    except OSError as exc:
        raise ModelFileError(f"{name}: cannot read: {exc.strerror or _line(exc)}") from None
    missing = [k for k in ("meta", "users", "items", *PARAMETER_NAMES) if k not in arrays]
    if missing:
        raise ModelFileError(f"{name}: not a tinymf model file (no {', '.join(missing)})")
    return arrays


def _meta(arrays: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    raw = arrays["meta"]
    try:
        meta = json.loads(str(raw.item()))
    except (ValueError, TypeError):
        raise ModelFileError(f"{name}: its meta entry is not JSON text") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name}: its meta entry is not a JSON object")
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{name}: not a tinymf model file (format {meta.get('format')!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{name}: unknown format version {version!r}")
    if version > VERSION:
        raise ModelFileError(
            f"{name}: written by a newer tinymf (format version {version}); this one reads "
            f"version {VERSION}"
        )
    if meta.get("form") not in FORMS:
        raise ModelFileError(f"{name}: unknown model form {meta.get('form')!r}")
    for key in ("n_users", "n_items", "dim"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelFileError(f"{name}: {key} is {value!r}, expected a positive whole number")
    if not isinstance(meta.get("settings", {}), dict):
        raise ModelFileError(f"{name}: its settings are not a mapping")
    meta.setdefault("settings", {})
    return meta


def _ids(arrays: dict[str, np.ndarray], key: str, n: int, name: str) -> list[str]:
    ids = arrays[key]
    if ids.dtype.kind != "U" or ids.ndim != 1:
        raise ModelFileError(f"{name}: {key} is not a list of ids")
    if ids.size != n:
        raise ModelFileError(f"{name}: {ids.size} {key} ids for a model of {n} {key}")
    out = ids.tolist()
    if len(set(out)) != len(out):
        raise ModelFileError(f"{name}: {key} ids repeat")
    return out


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
