"""The plots: four PNGs that are really drawn, with every Korean name in a real glyph."""

import importlib.util
import io
import logging
import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from tinymf import plots  # noqa: E402
from tinymf.cli import main  # noqa: E402
from tinymf.data import load_lecture  # noqa: E402
from tinymf.models import fit  # noqa: E402

needs_font = pytest.mark.skipif(
    importlib.util.find_spec(plots.FONT_PACKAGE) is None,
    reason=f"the Hangul font package is not installed ({plots.FONT_REQUIREMENT})",
)

NAMES = ("loss.png", "predictions.png", "table.png", "features.png")


@pytest.fixture(scope="module")
def lecture():
    data = load_lecture()
    model, losses = fit(data.user_idx, data.item_idx, data.rating, data.n_users, data.n_items)
    return data, model, losses


def glyph_problems(records, caught) -> list[str]:
    """Every complaint matplotlib makes about a character it could not draw.

    Text drawing warns ``Glyph ... missing from font(s)``; mathtext logs ``... does not have
    a glyph for ...``. Either means an empty box in the picture.
    """
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    return [m for m in messages if "glyph" in m.lower()]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def drawn(lecture, tmp_path_factory):
    """save_all once, with every warning and log record it caused, and the settings around it."""
    data, model, losses = lecture
    handler = _Records()
    logger = logging.getLogger("matplotlib")
    logger.addHandler(handler)
    rc_before = dict(matplotlib.rcParams)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written = plots.save_all(data, model, losses, tmp_path_factory.mktemp("plots"))
    finally:
        logger.removeHandler(handler)
    return {
        "written": written,
        "problems": glyph_problems(handler.records, caught),
        "rc_changed": dict(matplotlib.rcParams) != rc_before,
        "font_package_imported": "koreanize_matplotlib" in sys.modules,
    }


@needs_font
def test_save_all_writes_four_pngs_with_no_missing_glyph(drawn):
    assert sorted(p.name for p in drawn["written"]) == sorted(NAMES)
    assert drawn["problems"] == []
    for path in drawn["written"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path.name
        assert path.stat().st_size > 20_000, path.name


@needs_font
def test_the_pngs_are_drawn_not_blank(drawn):
    from matplotlib.image import imread

    for path in drawn["written"]:
        rgb = (imread(path)[..., :3] * 255).astype(np.uint32)
        not_white = np.any(rgb < 242, axis=-1).mean()
        colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).size
        assert not_white > 0.03, (path.name, not_white)
        assert colours > 50, (path.name, colours)


@needs_font
def test_plots_leave_matplotlibs_settings_alone(drawn):
    assert not drawn["rc_changed"]
    # the font package restyles every plot when imported, so it is located, never imported
    assert not drawn["font_package_imported"]


@needs_font
def test_korean_names_are_set_in_nanumgothic(lecture):
    from matplotlib.font_manager import findfont

    data, model, _ = lecture
    fig = plots.completed_table(data, model)
    ax = fig.axes[0]
    labels = ax.get_yticklabels() + ax.get_xticklabels()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(data.users)
    for label in labels:
        assert findfont(label.get_fontproperties()).endswith(plots.FONT_FILE)

    fig = plots.latent_features(data, model)
    names = [t for t in fig.axes[0].texts if t.get_text() in data.users + data.items]
    assert len(names) == data.n_users + data.n_items
    assert all(findfont(t.get_fontproperties()).endswith(plots.FONT_FILE) for t in names)


@needs_font
def test_the_glyph_check_would_catch_empty_boxes():
    """The check above can fail: Korean text in matplotlib's default font is reported."""
    from matplotlib.figure import Figure

    fig = Figure()
    fig.text(0.5, 0.5, "옥순(IN)", family="DejaVu Sans")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    assert glyph_problems([], caught)


@needs_font
def test_completed_table_marks_exactly_the_empty_cells(lecture):
    from matplotlib.patches import Rectangle

    data, model, _ = lecture
    ax = plots.completed_table(data, model).axes[0]
    outlined = {
        (round(p.get_y() + 0.5), round(p.get_x() + 0.5))
        for p in ax.patches
        if isinstance(p, Rectangle) and not p.get_fill()
    }
    assert outlined == set(data.missing())
    starred = [t.get_text() for t in ax.texts if t.get_text().endswith("*")]
    assert len(starred) == len(data.missing()) == 9
    observed = {f"{r:.2f}" for r in data.rating}
    plain = {t.get_text() for t in ax.texts if not t.get_text().endswith("*")}
    assert plain <= observed


@needs_font
def test_large_tables_get_boxes_per_rating_level_and_no_cell_labels():
    from tinymf.data import Ratings

    rng = np.random.default_rng(0)
    n_users, n_items, n = 120, 90, 3000
    cells = rng.choice(n_users * n_items, size=n, replace=False)
    data = Ratings(
        users=[f"u{k}" for k in range(n_users)],
        items=[f"i{k}" for k in range(n_items)],
        user_idx=cells // n_items,
        item_idx=cells % n_items,
        rating=rng.integers(1, 6, size=n).astype(np.float32),
        source="synthetic",
    )
    model, _ = fit(data.user_idx, data.item_idx, data.rating, n_users, n_items, epochs=2)

    ax = plots.predicted_vs_true(data, model).axes[0]
    assert len(ax.collections) == 0  # no 3000-dot cloud
    assert len([p for p in ax.patches if p.get_facecolor()[:3] != (1, 1, 1)]) == 5  # boxes

    ax = plots.completed_table(data, model).axes[0]
    assert len(ax.texts) == 0 and ax.get_xlabel() == "90 items"
    assert "at this size unmarked" in ax.get_title()


def test_loss_curve_needs_a_loss():
    with pytest.raises(ValueError, match="at least one"):
        plots.loss_curve([])


def test_missing_font_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(plots.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(plots.FontNotFoundError, match="koreanize-matplotlib.*pip install"):
        plots.hangul_font_path()


# -- the command -----------------------------------------------------------------------------


@needs_font
def test_cli_fit_plot_writes_the_pngs(tmp_path, capsys):
    target = tmp_path / "out"
    assert main(["fit", "--epochs", "20", "--plot", str(target)]) == 0
    assert f"plots written to {target}" in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES)


def test_cli_fit_plot_without_the_font_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(plots.importlib.util, "find_spec", lambda name: None)
    assert main(["fit", "--epochs", "2", "--plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinymf: error: --plot:") and err.count("\n") == 1
    assert "tinymf[plot]" in err
