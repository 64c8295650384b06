"""Pictures of what the recommender learned: loss, latent features, fit, completed table.

Each function returns a matplotlib ``Figure`` (made without pyplot, so nothing global
changes and no window opens; a notebook shows a returned figure inline), and
:func:`save_all` writes the four PNGs ``tinymf fit --plot DIR`` makes.

The lecture's people have Korean names, so the text is set in NanumGothic, which the
``koreanize-matplotlib`` package ships (``pip install "tinymf[plot]"``). The font file is
found by path and registered with matplotlib's font manager; the package itself is never
imported, because importing it restyles every plot in the process. DejaVu Sans backs it up
for the few glyphs NanumGothic lacks, such as the minus sign matplotlib puts on tick labels.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "FONT_REQUIREMENT",
    "FontNotFoundError",
    "completed_table",
    "hangul_font_path",
    "latent_features",
    "loss_curve",
    "predicted_vs_true",
    "save_all",
]

FONT_PACKAGE = "koreanize_matplotlib"
FONT_REQUIREMENT = "koreanize-matplotlib>=0.1.1"
FONT_FILE = "NanumGothic.ttf"
FALLBACK_FAMILY = "DejaVu Sans"  # bundled with matplotlib

USER_COLOR, ITEM_COLOR, PREDICTED_COLOR = "#1f77b4", "#ff7f0e", "#d62728"
MAX_LABELLED_POINTS = 80
MAX_ANNOTATED_CELLS = 400
MAX_SCATTER_POINTS = 2000


class FontNotFoundError(RuntimeError):
    """The font the plots need for Korean names is not installed."""


def hangul_font_path() -> Path:
    """Where NanumGothic lies, inside the installed ``koreanize-matplotlib`` package."""
    spec = importlib.util.find_spec(FONT_PACKAGE)  # finds the package without running it
    folders = [] if spec is None else list(spec.submodule_search_locations or [])
    for folder in folders:
        path = Path(folder) / "fonts" / FONT_FILE
        if path.is_file():
            return path
    raise FontNotFoundError(
        f"the plots need a font with Korean letters ({FONT_FILE}), which the "
        f"'{FONT_REQUIREMENT}' package ships; install it with: "
        "pip install -c constraints.txt 'tinymf[plot]'"
    )


_registered: dict[Path, str] = {}


def _font_family() -> list[str]:
    """Register NanumGothic with matplotlib once; the family list with its fallback."""
    from matplotlib import font_manager

    path = hangul_font_path()
    if path not in _registered:
        font_manager.fontManager.addfont(str(path))
        _registered[path] = font_manager.FontProperties(fname=str(path)).get_name()
    return [_registered[path], FALLBACK_FAMILY]


def _font():
    """Font properties for text that may hold Korean (tick labels, annotations)."""
    from matplotlib.font_manager import FontProperties

    return FontProperties(family=_font_family())


def _rc() -> dict:
    # NanumGothic has no U+2212 minus sign; an ASCII one needs no fallback font
    return {
        "font.family": _font_family(),
        "axes.unicode_minus": False,
        "figure.dpi": 100,
        "savefig.dpi": 120,
    }


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


# -- the four pictures -----------------------------------------------------------------------


def loss_curve(losses: Sequence[float], title: str | None = None) -> Figure:
    """The training loss per epoch (log scale: it falls by orders of magnitude)."""
    import matplotlib
    from matplotlib import ticker

    losses = np.asarray(losses, dtype=np.float64)
    if losses.size == 0:
        raise ValueError("loss_curve needs at least one loss")
    with matplotlib.rc_context(_rc()):
        fig = _figure((7, 4.2))
        ax = fig.add_subplot()
        epochs = np.arange(1, losses.size + 1)
        ax.plot(epochs, losses, color=USER_COLOR, lw=2)
        ax.set_yscale("log")
        # plain-text tick labels: the default ones are mathtext, which has no font fallback
        ax.yaxis.set_major_formatter(ticker.LogFormatter())
        ax.yaxis.set_minor_formatter(
            ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4))
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE loss (before the epoch's step)")
        ax.set_title(title or f"training loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
        ax.grid(True, which="both", alpha=0.3)
        ax.annotate(
            f"{losses[-1]:.4f}",
            (epochs[-1], losses[-1]),
            textcoords="offset points",
            xytext=(-4, 8),
            ha="right",
        )
    return fig


def latent_features(data, model) -> Figure:
    """Each person's learned 2-D latent features: users and items in one labelled scatter.

    People with similar features sit close together; a user and an item that lie in the same
    direction from the origin have a large dot product, so a high predicted rating.
    """
    import matplotlib

    users, items = np.asarray(model.user_features()), np.asarray(model.item_features())
    dim = users.shape[1]
    if dim < 2:
        raise ValueError("latent_features plots two features; this model has one")
    font = _font()
    with matplotlib.rc_context(_rc()):
        fig = _figure((8, 6.5))
        ax = fig.add_subplot()
        ax.axhline(0, color="#999999", lw=0.8)
        ax.axvline(0, color="#999999", lw=0.8)
        ax.scatter(
            users[:, 0],
            users[:, 1],
            s=60,
            color=USER_COLOR,
            marker="o",
            label=f"users ({len(users)})",
        )
        ax.scatter(
            items[:, 0],
            items[:, 1],
            s=70,
            color=ITEM_COLOR,
            marker="^",
            label=f"items ({len(items)})",
        )
        if len(users) + len(items) <= MAX_LABELLED_POINTS:
            names = [str(n) for n in data.users] + [str(n) for n in data.items]
            colors = [USER_COLOR] * len(users) + [ITEM_COLOR] * len(items)
            points = np.concatenate([users[:, :2], items[:, :2]])
            for name, (x, y), color, offset in zip(
                names, points, colors, _label_offsets(ax, fig, points, names), strict=True
            ):
                ax.annotate(
                    name,
                    (x, y),
                    textcoords="offset points",
                    xytext=offset,
                    fontproperties=font,
                    fontsize=10,
                    color=color,
                    va="bottom",
                    ha="left",
                )
        ax.set_xlabel("latent feature 1")
        ax.set_ylabel("latent feature 2")
        more = "" if dim == 2 else f" (the first two of {dim})"
        ax.set_title(f"learned latent features{more}")
        ax.legend(loc="best", prop=font)
        ax.grid(True, alpha=0.3)
    return fig


def _label_offsets(ax, fig, points: np.ndarray, names: list[str]) -> list[tuple[float, float]]:
    """Offsets (in points) that keep the labels of nearby dots off each other and the dots.

    Greedy: each label tries the right of its dot, then the left, a line lower or higher at a
    time, until its box clears the dots and the labels already placed. Sizes are estimated
    from the font size (10 pt), which is close enough to untangle a cluster.
    """
    ax.margins(0.12)
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width_in, height_in = fig.get_size_inches()
    # the axes take roughly 85% of the figure each way; 72 points to the inch
    sx = 0.85 * width_in * 72 / (x1 - x0)
    sy = 0.85 * height_in * 72 / (y1 - y0)
    line, dot = 12.0, 5.0
    at = [((x - x0) * sx, (y - y0) * sy) for x, y in points]
    taken = [(px - dot, py - dot, px + dot, py + dot) for px, py in at]
    offsets = []
    for (px, py), name in zip(at, names, strict=True):
        wide = sum(10.0 if ord(c) > 0x2E80 else 6.0 for c in name)
        candidates = [
            (dx, -line / 2 + k * line)
            for k in (0, 1, -1, 2, -2, 3, -3)
            for dx in (dot + 2, -(dot + 2) - wide)
        ]
        for dx, dy in candidates:
            box = (px + dx, py + dy, px + dx + wide, py + dy + line)
            if not any(_overlap(box, other) for other in taken):
                break
        else:
            dx, dy = candidates[0]
            box = (px + dx, py + dy, px + dx + wide, py + dy + line)
        taken.append(box)
        offsets.append((dx, dy))
    return offsets


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def predicted_vs_true(data, model) -> Figure:
    """Every observed rating against the model's prediction for it; the diagonal is perfect."""
    import matplotlib

    pred = np.asarray(model.predict(data.user_idx, data.item_idx), dtype=np.float64)
    true = np.asarray(data.rating, dtype=np.float64)
    rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
    lo = min(true.min(), pred.min(), 0.0)
    hi = max(true.max(), pred.max(), 5.0)
    with matplotlib.rc_context(_rc()):
        fig = _figure((6, 6))
        ax = fig.add_subplot()
        ax.plot([lo, hi], [lo, hi], color="#999999", lw=1, ls="--", label="prediction = rating")
        levels = np.unique(true)
        if len(true) > MAX_SCATTER_POINTS and len(levels) <= 12:
            # thousands of ratings on a few levels: a dot cloud hides how many sit where,
            # a box per level (middle half, whiskers to the 5th and 95th percentiles) shows it
            spacing = float(np.diff(levels).min()) if len(levels) > 1 else 1.0
            ax.boxplot(
                [pred[true == v] for v in levels],
                positions=levels,
                widths=0.35 * spacing,
                whis=(5, 95),
                showfliers=False,
                manage_ticks=False,
                patch_artist=True,
                boxprops={"facecolor": "#cfe2f3", "edgecolor": USER_COLOR},
                medianprops={"color": PREDICTED_COLOR},
            )
            ax.plot(
                [],
                [],
                color=USER_COLOR,
                lw=6,
                alpha=0.4,
                label=f"{len(true)} observed ratings, per level",
            )
        else:
            ax.scatter(
                true,
                pred,
                s=30,
                color=USER_COLOR,
                alpha=0.8,
                label=f"{len(true)} observed ratings",
            )
        ax.set_xlim(lo - 0.1, hi + 0.1)
        ax.set_ylim(lo - 0.1, hi + 0.1)
        ax.set_aspect("equal")
        ax.set_xlabel("rating in the data")
        ax.set_ylabel("model's prediction")
        ax.set_title(f"predicted vs true ratings (RMSE {rmse:.4f})")
        ax.legend(loc="upper left")
        ax.grid(True, alpha=0.3)
    return fig


def completed_table(data, model) -> Figure:
    """The rating table with its empty cells filled by the model's predictions.

    Observed cells show the rating from the data; predicted cells are outlined and marked
    ``*``. Colour is the rating, 0 to 5.
    """
    import matplotlib
    from matplotlib.patches import Rectangle

    n_users, n_items = data.n_users, data.n_items
    users = np.repeat(np.arange(n_users), n_items)
    items = np.tile(np.arange(n_items), n_users)
    grid = np.asarray(model.predict(users, items), dtype=np.float64).reshape(n_users, n_items)
    observed = np.zeros((n_users, n_items), dtype=bool)
    observed[data.user_idx, data.item_idx] = True
    table = grid.copy()
    table[data.user_idx, data.item_idx] = data.rating
    font = _font()

    with matplotlib.rc_context(_rc()):
        # a cell per rating while the names fit; a fixed-size picture of a large table
        width = min(4 + 0.9 * n_items, 12)
        height = min(2.5 + 0.55 * n_users, 10)
        fig = _figure((width, height))
        ax = fig.add_subplot()
        vmax = max(5.0, float(np.nanmax(table)))
        image = ax.imshow(table, cmap="YlGnBu", vmin=0.0, vmax=vmax, aspect="auto")
        fig.colorbar(image, ax=ax, label="rating", shrink=0.8)
        annotated = n_users * n_items <= MAX_ANNOTATED_CELLS
        if annotated:
            for u in range(n_users):
                for i in range(n_items):
                    value = table[u, i]
                    dark = value > 0.6 * vmax
                    text = f"{value:.2f}" if observed[u, i] else f"{value:.2f}*"
                    ax.text(
                        i,
                        u,
                        text,
                        ha="center",
                        va="center",
                        fontsize=10,
                        color="white" if dark else "black",
                    )
                    if not observed[u, i]:
                        ax.add_patch(
                            Rectangle(
                                (i - 0.5, u - 0.5),
                                1,
                                1,
                                fill=False,
                                edgecolor=PREDICTED_COLOR,
                                lw=2.5,
                            )
                        )
        if n_users <= MAX_LABELLED_POINTS and n_items <= MAX_LABELLED_POINTS:
            ax.set_xticks(
                np.arange(n_items),
                labels=[str(x) for x in data.items],
                fontproperties=font,
                rotation=45,
                ha="right",
            )
            ax.set_yticks(
                np.arange(n_users), labels=[str(x) for x in data.users], fontproperties=font
            )
        else:
            ax.set_xlabel(f"{n_items} items")
            ax.set_ylabel(f"{n_users} users")
        missing = int((~observed).sum())
        how = (
            "outlined, marked *; the other cells are the data"
            if annotated
            else "at this size unmarked"
        )
        ax.set_title(f"completed rating table: {missing} empty cells predicted ({how})")
    return fig


def save_all(data, model, losses: Sequence[float], directory: str | Path) -> list[Path]:
    """Write ``loss.png``, ``features.png``, ``predictions.png`` and ``table.png``.

    The folder is created if needed; returns the paths written.
    """
    import matplotlib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "loss.png": loss_curve(losses),
        "predictions.png": predicted_vs_true(data, model),
        "table.png": completed_table(data, model),
    }
    if np.asarray(model.user_features()).shape[1] >= 2:
        figures["features.png"] = latent_features(data, model)
    written = []
    with matplotlib.rc_context(_rc()):
        for name, fig in figures.items():
            path = directory / name
            fig.savefig(path)
            written.append(path)
    return written
