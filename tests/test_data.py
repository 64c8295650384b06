"""Reading rating tables: the lecture's wide file, MovieLens-style long files, and bad input."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tinymf.data import (
    DataError,
    Ratings,
    lecture_path,
    load_lecture,
    read_long,
    read_ratings,
    read_wide,
)

SOLO_SHA256 = "7dfba2c9d9c838d2e072ae75af878805fd274a492fa91df3860929c6f95a2069"
USERS = [
    "옥순(IN)",
    "영자(IN)",
    "정숙(IS)",
    "영숙(IS)",
    "순자(EN)",
    "현숙(EN)",
    "서연(ES)",
    "보람(ES)",
]
USERS += ["하니(I)"]
ITEMS = [
    "영식(IN)",
    "영철(IN)",
    "영호(IS)",
    "광수(IS)",
    "상철(EN)",
    "영수(EN)",
    "규빈(ES)",
    "다호(ES)",
]


def write(tmp_path: Path, name: str, text: str, newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def refused(read, path: Path, *fragments: str) -> str:
    """The one-line DataError ``read(path)`` raises, checked to name the file and fragments."""
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------
# The bundled lecture file.


def test_bundled_solo_csv_is_the_published_file_byte_for_byte():
    assert hashlib.sha256(lecture_path().read_bytes()).hexdigest() == SOLO_SHA256


def test_lecture_file_holds_63_ratings_from_9_users_on_8_items():
    ratings = read_wide(lecture_path())
    assert (len(ratings), ratings.n_users, ratings.n_items) == (63, 9, 8)
    assert ratings.users == USERS
    assert ratings.items == ITEMS
    assert ratings.user_idx.dtype == np.int64 and ratings.item_idx.dtype == np.int64
    assert ratings.rating.dtype == np.float32


def test_lecture_file_has_nine_missing_cells_in_row_major_order():
    ratings = load_lecture()
    assert ratings.missing() == [
        (0, 0), (1, 7), (2, 5), (3, 2), (4, 1), (5, 6), (7, 3), (7, 7), (8, 2),
    ]  # fmt: skip


def test_short_boram_row_leaves_its_last_cell_missing():
    ratings = load_lecture()
    boram, daho = USERS.index("보람(ES)"), ITEMS.index("다호(ES)")
    assert (boram, daho) in ratings.missing()
    assert int(np.sum(ratings.user_idx == boram)) == 6


def test_stray_spaces_around_values_are_ignored():
    table = load_lecture().table()
    assert table.loc["옥순(IN)", "영철(IN)"] == np.float32(4.02)  # written " 4.02"
    assert table.loc["보람(ES)", "영수(EN)"] == np.float32(4.0)  # written " 4.  "
    assert table.loc["서연(ES)", "상철(EN)"] == np.float32(3.5)  # written " 3.5 "


def test_lecture_ratings_are_the_lectures_stack_order_and_float32_bits():
    df_view = pd.read_csv(lecture_path(), index_col=0)
    stacked = df_view.stack().dropna()
    ratings = load_lecture()
    assert [ratings.users[u] for u in ratings.user_idx] == list(stacked.index.get_level_values(0))
    assert [ratings.items[i] for i in ratings.item_idx] == list(stacked.index.get_level_values(1))
    # the lecture: torch.tensor(df_train['y']).float(), a float64 -> float32 rounding
    assert ratings.rating.tobytes() == stacked.to_numpy().astype(np.float32).tobytes()


def test_table_is_the_wide_view_with_nan_where_unrated():
    table = load_lecture().table()
    df_view = pd.read_csv(lecture_path(), index_col=0)
    assert list(table.index) == USERS and list(table.columns) == ITEMS
    assert table.isna().to_numpy().sum() == 9
    assert (table.isna() == df_view.isna()).all().all()
    assert np.array_equal(table.to_numpy(), df_view.to_numpy().astype(np.float32), equal_nan=True)


def test_load_lecture_names_the_bundled_file_as_its_source():
    assert load_lecture().source == "solo.csv (bundled)"
    assert read_wide(lecture_path()).source == str(lecture_path())


def test_read_ratings_reads_the_lecture_file_as_wide():
    ratings = read_ratings(lecture_path())
    assert ratings.rating.tobytes() == load_lecture().rating.tobytes()


# --------------------------------------------------------------------------------------------
# Long files.


def test_read_long_reads_tab_separated_u_data_style_in_file_order(tmp_path):
    path = write(
        tmp_path,
        "u.data",
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
        "196\t377\t4\t891717743\n",
    )
    ratings = read_long(path)
    assert ratings.users == ["22", "186", "196"]  # numeric order, not text order
    assert ratings.items == ["242", "302", "377"]
    assert ratings.user_idx.tolist() == [2, 1, 0, 2]
    assert ratings.item_idx.tolist() == [0, 1, 2, 2]
    assert ratings.rating.tolist() == [3.0, 3.0, 1.0, 4.0]
    assert ratings.rating.dtype == np.float32


def test_read_long_reads_ratings_csv_with_crlf_line_ends(tmp_path):
    path = write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n"
        "10,3,0.5,964982224\n",
        newline="\r\n",
    )
    ratings = read_long(path)
    assert (ratings.users, ratings.items) == (["1", "10"], ["1", "3"])
    assert ratings.user_idx.tolist() == [0, 0, 1]
    assert ratings.item_idx.tolist() == [0, 1, 1]
    assert ratings.rating.tolist() == [4.0, 4.5, 0.5]


def test_read_long_remaps_text_ids_with_gaps_to_sorted_contiguous_indices(tmp_path):
    path = write(
        tmp_path, "likes.csv", "user,item,rating\nzoe,m9,4\nbob,m10,2.5\nzoe,m10,1\nann,m9,5\n"
    )
    ratings = read_long(path)
    assert ratings.users == ["ann", "bob", "zoe"]
    assert ratings.items == ["m10", "m9"]  # text order: the ids are not all integers
    assert ratings.user_idx.tolist() == [2, 1, 2, 0]
    assert ratings.item_idx.tolist() == [1, 0, 0, 1]
    assert [ratings.users[u] for u in ratings.user_idx] == ["zoe", "bob", "zoe", "ann"]


def test_read_long_finds_recognised_column_names_in_any_order(tmp_path):
    path = write(
        tmp_path, "shop.csv", "Stars,note,Product ID,customer_id\n5,great,p1,c7\n3,ok,p2,c7\n"
    )
    ratings = read_long(path)
    assert (ratings.users, ratings.items) == (["c7"], ["p1", "p2"])
    assert ratings.rating.tolist() == [5.0, 3.0]


def test_read_long_strips_spaces_around_ids_and_ratings(tmp_path):
    path = write(tmp_path, "spaced.csv", "user,item,rating\n 1 , a , 4.5 \n1,b, 2\n")
    ratings = read_long(path)
    assert (ratings.users, ratings.items) == (["1"], ["a", "b"])
    assert ratings.rating.tolist() == [4.5, 2.0]


def test_read_long_reads_a_headerless_comma_file_as_user_item_rating(tmp_path):
    path = write(tmp_path, "plain.csv", "3,7,4\n1,7,2.5\n")
    ratings = read_long(path)
    assert (ratings.users, ratings.items) == (["1", "3"], ["7"])
    assert ratings.user_idx.tolist() == [1, 0]


def test_read_ratings_tells_long_files_from_wide_ones(tmp_path):
    tab = write(tmp_path, "u.data", "1\t2\t3\t0\n")
    named = write(tmp_path, "named.csv", "userId,movieId,rating\n1,2,3\n")
    plain = write(tmp_path, "plain.csv", "1,2,3\n")
    wide = write(tmp_path, "wide.csv", "name,a,b\nx,1,\ny,,2\n")
    assert [len(read_ratings(p)) for p in (tab, named, plain)] == [1, 1, 1]
    ratings = read_ratings(wide)
    assert (ratings.users, ratings.items, ratings.missing()) == (
        ["x", "y"],
        ["a", "b"],
        [(0, 1), (1, 0)],
    )


def test_ratings_reports_its_size():
    ratings = load_lecture()
    assert isinstance(ratings, Ratings)
    assert "63 ratings" in repr(ratings) and "9 users x 8 items" in repr(ratings)


# --------------------------------------------------------------------------------------------
# The real MovieLens files (never bundled: their license forbids it).


def test_read_long_reads_movielens_100k_u_data(shared_data):
    path = shared_data / "ml-100k" / "u.data"
    ratings = read_long(path)
    assert (len(ratings), ratings.n_users, ratings.n_items) == (100_000, 943, 1682)
    counts = np.unique(ratings.rating, return_counts=True)
    assert counts[0].tolist() == [1, 2, 3, 4, 5]
    assert counts[1].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ratings.users[:3] == ["1", "2", "3"] and ratings.users[-1] == "943"
    raw = pd.read_csv(path, sep="\t", header=None)
    assert [int(ratings.users[u]) for u in ratings.user_idx] == raw[0].tolist()
    assert [int(ratings.items[i]) for i in ratings.item_idx] == raw[1].tolist()


def test_read_long_reads_movielens_latest_small_ratings_csv(shared_data):
    path = shared_data / "ml-latest-small" / "ratings.csv"
    ratings = read_ratings(path)
    assert (len(ratings), ratings.n_users, ratings.n_items) == (100_836, 610, 9724)
    assert np.unique(ratings.rating).tolist() == [k / 2 for k in range(1, 11)]
    raw = pd.read_csv(path)
    assert ratings.rating.tobytes() == raw["rating"].to_numpy().astype(np.float32).tobytes()
    assert [int(ratings.items[i]) for i in ratings.item_idx] == raw["movieId"].tolist()


@pytest.mark.parametrize("name", ["ml-100k/u.data", "ml-latest-small/ratings.csv"])
def test_read_long_reads_100k_ratings_well_under_a_second(shared_data, name):
    read_long(shared_data / name)  # pandas' first import is not the reader's cost
    start = time.perf_counter()
    read_long(shared_data / name)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------------------------
# Bad input: one-line DataError naming the file and the row; nothing dropped or guessed.


@pytest.mark.parametrize("read", [read_wide, read_long, read_ratings])
def test_missing_file_is_refused(tmp_path, read):
    refused(read, tmp_path / "nowhere.csv", "no such file")


@pytest.mark.parametrize("read", [read_wide, read_long, read_ratings])
def test_empty_file_is_refused(tmp_path, read):
    refused(read, write(tmp_path, "empty.csv", ""), "empty")
    refused(read, write(tmp_path, "blank.csv", "\n  \n"), "empty")


def test_wide_non_numeric_rating_names_row_user_and_item(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\ny,3,abc\n")
    refused(read_wide, path, "row 2", "'y'", "'b'", "'abc' is not a number")


def test_long_non_numeric_rating_names_the_row(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,4\n1,2,4\n2,1,four\n")
    refused(read_long, path, "row 3", "'four' is not a number")


def test_long_rating_spelled_with_underscores_is_not_a_number(tmp_path):
    # Python's float() reads "1_0" as 10.0; no CSV tool does.
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,1_0\n")
    refused(read_long, path, "row 1", "'1_0' is not a number")


def test_wide_duplicate_user_rows_are_refused_naming_both(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\ny,3,4\nx,5,6\n")
    refused(read_wide, path, "rows 1 and 3", "'x'")


def test_wide_duplicate_item_columns_are_refused_naming_both(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b,a\nx,1,2,3\n")
    refused(read_wide, path, "'a'", "columns 2 and 4")


def test_long_duplicate_pair_is_refused_naming_both_rows(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,4\n2,1,3\n1,1,5\n")
    refused(read_long, path, "rows 1 and 3", "user '1'", "item '1'")


def test_long_duplicate_pair_is_found_through_respaced_ids(tmp_path):
    path = write(tmp_path, "r.data", "1\t1\t4\n 1\t1 \t5\n")
    refused(read_long, path, "rows 1 and 2")


@pytest.mark.parametrize("literal", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_long_non_finite_rating_is_refused(tmp_path, literal):
    path = write(tmp_path, "r.csv", f"user,item,rating\n1,1,4\n1,2,{literal}\n")
    refused(read_long, path, "row 2", f"{literal!r} is not finite")


def test_long_rating_too_large_for_a_float_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,1e999\n")
    refused(read_long, path, "row 1", "'1e999'")


@pytest.mark.parametrize("literal", ["inf", "NaN"])
def test_wide_literal_non_finite_rating_is_refused_but_an_empty_cell_is_missing(tmp_path, literal):
    path = write(tmp_path, "w.csv", f",a,b\nx,1,\ny,2,{literal}\n")
    refused(read_wide, path, "row 2", "'y'", "'b'", "not finite")
    fine = read_wide(write(tmp_path, "ok.csv", ",a,b\nx,1,\ny,2,3\n"))
    assert fine.missing() == [(0, 1)]


def test_wide_user_row_without_any_rating_is_refused(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\ny, ,\nz,3,4\n")
    refused(read_wide, path, "row 2", "'y'", "no rating")


def test_wide_label_only_row_is_refused(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\ny\n")
    refused(read_wide, path, "row 2", "'y'", "no rating")


def test_wide_item_column_without_any_rating_is_refused(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b,c\nx,1,,2\ny,3,,4\n")
    refused(read_wide, path, "'b'", "no rating")


def test_wide_row_longer_than_the_header_is_refused(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\ny,3,4,5\n")
    refused(read_wide, path, "row 2", "'y'", "3 values", "2 items")


def test_wide_empty_user_label_is_refused(tmp_path):
    path = write(tmp_path, "w.csv", ",a,b\nx,1,2\n ,3,4\n")
    refused(read_wide, path, "row 2", "user label is empty")


def test_wide_header_without_rows_is_refused(tmp_path):
    refused(read_wide, write(tmp_path, "w.csv", ",a,b\n"), "no data rows")


def test_long_empty_rating_cell_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,4\n1,2,\n")
    refused(read_long, path, "row 2", "rating is empty")


def test_long_short_row_is_refused(tmp_path):
    path = write(tmp_path, "r.data", "1\t1\t4\t0\n1\t2\n")
    refused(read_long, path, "row 2", "rating is empty")


def test_long_empty_user_id_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n1,1,4\n,2,3\n")
    refused(read_long, path, "row 2", "user id is empty")


def test_long_one_number_spelled_two_ways_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "user,item,rating\n7,1,4\n07,2,3\n")
    refused(read_long, path, "rows 1 and 2", "user id 7", "'07'")


def test_long_header_missing_the_rating_column_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "userId,movieId,timestamp\n1,1,964982703\n")
    refused(read_long, path, "one rating column")


def test_long_header_only_is_refused(tmp_path):
    refused(read_long, write(tmp_path, "r.csv", "userId,movieId,rating\n"), "no data rows")


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(",caf\xe9\nx,1\n".encode("latin-1"))
    refused(read_wide, path, "not UTF-8")
