"""Training on real rating files: splits, id maps, mini-batches, held-out error, the CLI.

Slow runs on MovieLens are opt-in: ``TINYMF_SLOW=1 pytest tests/test_training.py`` also runs
the tuned u1.base -> u1.test command in full (about 15 seconds on two cores; by default the
same data are trained at small scale only).
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

import tinymf
from tinymf import cli, data, models, training
from tinymf.data import DataError, Ratings

SLOW = os.environ.get("TINYMF_SLOW") == "1"

# The command whose u1.test score docs/real-data.md records; settings chosen on a validation
# split of u1.base (see that file), never on u1.test.
TUNED = [
    "--dim", "128", "--epochs", "6", "--lr", "0.005", "--eps", "1e-4", "--batch-size", "1024",
    "--reg", "0.05", "--seed", "0",
]  # fmt: skip


def ratings(users, items, values, source="test") -> Ratings:
    """A Ratings from parallel lists of ids, with sorted maps as read_long makes them."""
    u_ids, u_idx = np.unique(np.asarray(users, dtype=str), return_inverse=True)
    i_ids, i_idx = np.unique(np.asarray(items, dtype=str), return_inverse=True)
    return Ratings(u_ids.tolist(), i_ids.tolist(), u_idx, i_idx, values, source)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("tinymf: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


# -- scores ----------------------------------------------------------------------------------------


def test_rmse_and_mae_are_computed_in_float64_from_the_float32_values():
    pred = np.array([3.0, 4.5, 1.0], dtype=np.float32)
    true = np.array([4.0, 4.0, 2.0], dtype=np.float32)
    assert training.rmse(pred, true) == math.sqrt((1 + 0.25 + 1) / 3)
    assert training.mae(pred, true) == (1 + 0.5 + 1) / 3


def test_scores_refuse_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 predictions for 3 ratings"):
        training.rmse([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="no ratings"):
        training.mae([], [])


# -- splits and id maps ----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "fraction", "seed"), [(63, 0.2, 0), (80000, 0.1, 0), (7, 0.5, 3)])
def test_split_holds_out_what_torch_random_split_holds_out(n, fraction, seed):
    torch = pytest.importorskip("torch")
    users = [f"u{k % 13}" for k in range(n)]
    items = [f"i{k}" for k in range(n)]
    full = ratings(users, items, np.arange(n, dtype=np.float32))
    train, test = data.split(full, fraction, seed)

    parts = torch.utils.data.random_split(
        range(n), [1 - fraction, fraction], generator=torch.Generator().manual_seed(seed)
    )
    expected_train, expected_test = (sorted(parts[0].indices), sorted(parts[1].indices))
    # the rating is the entry's position in the file, so it names the entry
    assert train.rating.astype(int).tolist() == expected_train
    assert test.rating.astype(int).tolist() == expected_test


def test_split_parts_have_their_own_sorted_maps_and_keep_the_file_order():
    full = ratings(
        ["a", "a", "b", "c", "c", "c"], ["x", "y", "x", "z", "y", "x"], [1, 2, 3, 4, 5, 5]
    )
    train, test = data.split(full, 0.5, 1)
    for part in (train, test):
        assert part.users == sorted(part.users) and part.items == sorted(part.items)
        assert set(part.user_idx.tolist()) == set(range(part.n_users))
        assert set(part.item_idx.tolist()) == set(range(part.n_items))
        pairs = [
            (part.users[u], part.items[i])
            for u, i in zip(part.user_idx, part.item_idx, strict=True)
        ]
        all_pairs = [
            (full.users[u], full.items[i])
            for u, i in zip(full.user_idx, full.item_idx, strict=True)
        ]
        assert pairs == [p for p in all_pairs if p in pairs]  # file order
    assert len(train) + len(test) == len(full)


def test_split_is_repeatable_and_changes_with_the_seed():
    full = ratings([str(k % 5) for k in range(100)], [str(k) for k in range(100)], np.ones(100))
    a = data.split(full, 0.25, 7)[1].items
    assert data.split(full, 0.25, 7)[1].items == a
    assert data.split(full, 0.25, 8)[1].items != a


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_refuses_a_fraction_outside_zero_to_one(fraction):
    full = ratings(["a", "b"], ["x", "y"], [1, 2])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        data.split(full, fraction, 0)


def test_split_of_too_few_ratings_is_a_data_error():
    with pytest.raises(DataError, match="too few"):
        data.split(ratings(["a", "b"], ["x", "y"], [1, 2], "tiny.csv"), 0.1, 0)


def test_lookup_finds_ids_as_text_and_integers_as_numbers():
    assert data.lookup(["7", " 12", "07", "x", 3], ["3", "7", "12"]).tolist() == [1, 2, 1, -1, 0]
    assert data.lookup(["07", "b"], ["7", "a", "b"]).tolist() == [-1, 2]  # text ids: exact


def test_align_maps_a_test_file_through_the_training_maps(tmp_path):
    base = write(tmp_path, "base.csv", "user,item,rating\n10,5,4\n2,5,3\n10,7,1\n")
    test = write(tmp_path, "test.csv", "user,item,rating\n2,7,5\n99,5,2\n10,8,3\n")
    train, held = data.read_ratings(base), data.read_ratings(test)
    users, items = data.align(held, train)
    assert train.users == ["2", "10"] and train.items == ["5", "7"]
    assert users.tolist() == [0, -1, 1]
    assert items.tolist() == [1, 0, -1]


def test_u1_test_is_read_through_u1_base_maps(shared_data):
    import pandas as pd

    folder = shared_data / "ml-100k"
    base = data.read_ratings(folder / "u1.base")
    test = data.read_ratings(folder / "u1.test")
    users, items = data.align(test, base)

    raw_base = pd.read_csv(folder / "u1.base", sep="\t", header=None)
    raw_test = pd.read_csv(folder / "u1.test", sep="\t", header=None)
    known_items = set(raw_base[1])
    assert len(test) == 20000 and (users >= 0).all()
    assert int((items < 0).sum()) == int((~raw_test[1].isin(known_items)).sum())
    # every mapped index points back at the id written in u1.test
    ok = items >= 0
    assert [base.users[u] for u in users[:50]] == [str(v) for v in raw_test[0][:50]]
    assert np.array_equal(
        np.array(base.items, dtype=np.int64)[items[ok]], raw_test[1].to_numpy()[ok]
    )


def test_read_pairs_takes_named_columns_or_the_first_two(tmp_path):
    named = write(tmp_path, "named.csv", "rating,movieId,userId\n4,m1, u1\n5,m2,u2\n")
    assert data.read_pairs(named) == (["u1", "u2"], ["m1", "m2"])
    plain = write(tmp_path, "plain.tsv", "1\t31\t5\t881\n7\t2\t3\t882\n")
    assert data.read_pairs(plain) == (["1", "7"], ["31", "2"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("user,item\n", "no pairs after the header"),
        ("u1,i1\nu2\n", "row 2: expected a user and an item, got 1 field"),
        ("u1,i1\n ,i2\n", "row 2: the user id is empty"),
        ("", "the file is empty"),
    ],
)
def test_read_pairs_errors_name_the_file_and_row(tmp_path, text, fragment):
    path = write(tmp_path, "pairs.csv", text)
    with pytest.raises(DataError, match=re.escape(fragment)) as caught:
        data.read_pairs(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


# -- mini-batch training ------------------------------------------------------------------------


def test_batch_order_is_torch_randperm_cut_into_batches():
    torch = pytest.importorskip("torch")
    g = tinymf.random.Generator(5)
    ours = [list(b) for _ in range(2) for b in training.batch_order(10, 4, g)]
    tg = torch.Generator().manual_seed(5)
    theirs = [list(b) for _ in range(2) for b in torch.randperm(10, generator=tg).split(4)]
    assert ours == [[int(v) for v in b] for b in theirs]
    assert [b.tolist() for b in training.batch_order(5, None, None)] == [[0, 1, 2, 3, 4]]


def test_full_batch_in_file_order_is_the_lectures_loop_bit_for_bit():
    lecture = data.load_lecture()
    args = (lecture.user_idx, lecture.item_idx, lecture.rating, lecture.n_users, lecture.n_items)
    ref_model, ref_losses = models.fit(*args, epochs=30, lr=0.1, seed=21345)
    model, losses = training.fit_ratings(
        *args, dim=2, epochs=30, batch_size=None, lr=0.1, seed=21345, shuffle_seed=None
    )
    assert losses == ref_losses
    for name, value in models.parameters_numpy(ref_model).items():
        assert np.array_equal(models.parameters_numpy(model)[name].view(np.uint32),
                              value.view(np.uint32)), name  # fmt: skip


def test_penalty_is_the_mean_squared_length_of_the_batch_feature_rows():
    tinymf.manual_seed(0)
    for form in models.FORMS:
        model = models.MatrixFactorization(4, 3, dim=2, form=form)
        users, items = np.array([0, 3, 3]), np.array([2, 2, 0])
        w, m = model.user_features(), model.item_features()
        expected = np.mean((w[users] ** 2).sum(1) + (m[items] ** 2).sum(1))
        got = training.penalty(model, users, items).item()
        assert got == pytest.approx(expected, rel=1e-6)


def test_penalty_shrinks_the_features_and_leaves_training_deterministic():
    lecture = data.load_lecture()
    args = (lecture.user_idx, lecture.item_idx, lecture.rating, lecture.n_users, lecture.n_items)
    plain, _ = training.fit_ratings(*args, dim=2, epochs=40, batch_size=16, lr=0.05)
    held, _ = training.fit_ratings(*args, dim=2, epochs=40, batch_size=16, lr=0.05, reg=0.5)
    again, _ = training.fit_ratings(*args, dim=2, epochs=40, batch_size=16, lr=0.05, reg=0.5)
    assert np.linalg.norm(held.user_features()) < np.linalg.norm(plain.user_features())
    assert np.array_equal(held.user_features(), again.user_features())


def test_training_reports_each_batch_and_the_size_weighted_epoch_mean():
    lecture = data.load_lecture()
    seen = []
    model = models.MatrixFactorization(lecture.n_users, lecture.n_items)
    losses = training.train_minibatch(
        model,
        lecture.user_idx,
        lecture.item_idx,
        lecture.rating,
        epochs=2,
        batch_size=25,
        on_batch=lambda e, k, v: seen.append((e, k, v)),
    )
    assert [(e, k) for e, k, _ in seen] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    first = [v for e, _, v in seen if e == 0]
    assert losses[0] == pytest.approx((first[0] * 25 + first[1] * 25 + first[2] * 13) / 63)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch_size": 0}, "batch_size must be positive"), ({"reg": -1.0}, "reg must be")],
)
def test_training_refuses_bad_settings(kwargs, message):
    model = models.MatrixFactorization(2, 2)
    with pytest.raises(ValueError, match=message):
        training.train_minibatch(model, [0, 1], [1, 0], [3.0, 4.0], **kwargs)


# -- users and items never seen in training --------------------------------------------------------


def test_unseen_user_or_item_falls_back_to_biases_and_is_never_nan():
    tinymf.manual_seed(3)
    for form in models.FORMS:
        model = models.MatrixFactorization(3, 4, dim=2, form=form)
        users = np.array([0, 2, -1, 1, -1])
        items = np.array([1, 3, 2, -1, -1])
        pred = models.predict_with_fallback(model, users, items)
        assert pred.dtype == np.float32 and np.isfinite(pred).all()
        assert np.array_equal(pred[:2], model.predict(users[:2], items[:2]))

        b, c = model.user_bias(), model.item_bias()
        mean_b = tinymf.tensor(b).mean().item()
        mean_c = tinymf.tensor(c).mean().item()

        def expect(score):
            return np.float32(5 * tinymf.sigmoid(tinymf.tensor([score])).item())

        assert pred[2] == expect(np.float32(mean_b) + c[2])
        assert pred[3] == expect(b[1] + np.float32(mean_c))
        assert pred[4] == expect(np.float32(mean_b) + np.float32(mean_c))


def test_predict_with_fallback_refuses_indices_out_of_range():
    model = models.MatrixFactorization(3, 4)
    with pytest.raises(IndexError, match="user indices must lie in -1 .. 2"):
        models.predict_with_fallback(model, [3], [0])
    with pytest.raises(IndexError, match="item indices"):
        models.predict_with_fallback(model, [0], [-2])


# -- the fit command on held-out data -------------------------------------------------------------


def test_fit_split_reports_train_and_held_out_scores(capsys):
    code, out, err = run_cli(capsys, "fit", "--split", "0.2", "--epochs", "20", "--quiet")
    assert code == 0 and err == ""
    assert "held out: solo.csv (bundled) (held-out part of a 0.2 split, seed 0), 12 ratings" in out
    assert re.search(r"train RMSE \d\.\d{4}  MAE \d\.\d{4}  \(51 ratings\)", out)
    assert re.search(r"held out RMSE \d\.\d{4}  MAE \d\.\d{4}  \(12 ratings\)", out)


def test_fit_test_file_counts_pairs_the_model_never_saw(capsys, tmp_path):
    test = write(tmp_path, "test.csv", "user,item,rating\n옥순(IN),영식(IN),4\n새사람,영식(IN),3\n")
    code, out, _ = run_cli(capsys, "fit", "--test", test, "--epochs", "5")
    assert code == 0
    assert f"test: {test}, 2 ratings (1 with a user or item not in training)" in out
    assert re.search(r"test RMSE \d\.\d{4}  MAE \d\.\d{4}  \(2 ratings\)", out)


def test_fit_minibatch_options_are_reported_and_change_the_result(capsys):
    code, out, _ = run_cli(
        capsys, "fit", "--epochs", "3", "--batch-size", "16", "--reg", "0.1",
        "--weight-decay", "0.001", "--eps", "1e-6", "--shuffle-seed", "4",
    )  # fmt: skip
    assert code == 0
    assert (
        "trained 3 epochs of Adam (lr 0.1, batches of 16, shuffle seed 4, reg 0.1, "
        "weight decay 0.001, eps 1e-06), dim 2" in out
    )


def test_fit_progress_bar_is_off_when_stderr_is_not_a_terminal(capsys, shared_data):
    code, _, err = run_cli(
        capsys, "fit", shared_data / "ml-100k" / "u1.test", "--epochs", "1", "--batch-size", "512",
        "--dim", "4",
    )  # fmt: skip
    assert code == 0 and err == ""


class _Terminal:
    """A stderr that says it is a terminal and keeps what is written to it."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("quiet", [False, True])
def test_fit_progress_bar_shows_the_running_loss_on_a_terminal_unless_quiet(
    capsys, monkeypatch, quiet
):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    monkeypatch.setattr(cli._ProgressBar, "DELAY", 0.0)
    argv = ["fit", "--epochs", "2", "--batch-size", "20"] + (["--quiet"] if quiet else [])
    assert cli.main(argv) == 0
    shown = "".join(terminal.parts)
    if quiet:
        assert shown == ""
    else:
        assert "epoch 2, loss " in shown and "batch" in shown


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["fit", "--test", "missing.csv"], ["missing.csv: no such file"]),
        (["fit", "--batch-size", "8", "--compare-torch"], ["--compare-torch", "--batch-size"]),
        (["fit", "--reg", "0.1", "--compare-torch"], ["--reg"]),
    ],
)
def test_fit_errors_are_one_line_with_exit_code_2(capsys, argv, fragments):
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_fit_test_file_errors_are_one_line(capsys, tmp_path):
    bad = write(tmp_path, "bad.csv", "user,item,rating\na,b,lots\n")
    code, _, err = run_cli(capsys, "fit", "--test", bad)
    assert_one_line_error(code, err, str(bad), "row 1", "not a number")


def test_fit_split_of_too_few_ratings_is_one_line(capsys, tmp_path):
    tiny = write(tmp_path, "tiny.csv", "user,item,rating\na,x,1\nb,y,2\n")
    code, _, err = run_cli(capsys, "fit", tiny, "--split", "0.1")
    assert_one_line_error(code, err, str(tiny), "too few")


@pytest.mark.parametrize(
    "argv",
    [["fit", "--split", "1.5"], ["fit", "--split", "0.1", "--test", "x.csv"],
     ["fit", "--reg", "-1"], ["fit", "--batch-size", "0"]],
)  # fmt: skip
def test_fit_bad_options_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


# -- MovieLens -------------------------------------------------------------------------------------


def test_fit_on_u1_base_scores_u1_test_at_small_scale(capsys, shared_data):
    folder = shared_data / "ml-100k"
    code, out, _ = run_cli(
        capsys, "fit", folder / "u1.base", "--test", folder / "u1.test", "--dim", "8",
        "--epochs", "2", "--lr", "0.005", "--batch-size", "2048", "--reg", "0.1", "--quiet",
    )  # fmt: skip
    assert code == 0
    assert "943 users x 1650 items, 80000 ratings" in out
    assert "20000 ratings (32 with a user or item not in training)" in out
    test_rmse = float(re.search(r"test RMSE (\d\.\d+)", out).group(1))
    assert test_rmse < 1.05  # two short epochs already beat predicting the mean (1.154)


@pytest.mark.skipif(not SLOW, reason="the full tuned run (about 15 s) is opt-in: set TINYMF_SLOW=1")
def test_tuned_fit_on_u1_base_reaches_test_rmse_0_92(capsys, shared_data):
    folder = shared_data / "ml-100k"
    code, out, _ = run_cli(
        capsys, "fit", folder / "u1.base", "--test", folder / "u1.test", *TUNED, "--quiet"
    )
    assert code == 0
    test_rmse = float(re.search(r"test RMSE (\d\.\d+)", out).group(1))
    assert test_rmse <= 0.92  # 0.9126 measured (docs/real-data.md)
