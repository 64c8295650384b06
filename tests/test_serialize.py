"""Keeping what was learned: model files, their errors, the torch reference, the CLI."""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np
import pytest

import tinymf
from tinymf import cli, data, models, serialize
from tinymf.serialize import ModelFileError


def trained(form: str = "onehot", dim: int = 3):
    """A small model trained on the lecture's data, with the data it was trained on."""
    lecture = data.load_lecture()
    model, _ = models.fit(
        lecture.user_idx, lecture.item_idx, lecture.rating, lecture.n_users, lecture.n_items,
        dim=dim, epochs=20, seed=1, form=form,
    )  # fmt: skip
    return model, lecture


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def all_pairs(lecture):
    users = np.repeat(np.arange(lecture.n_users), lecture.n_items)
    items = np.tile(np.arange(lecture.n_items), lecture.n_users)
    return users, items


def rewrite(path, **changes) -> None:
    """Rewrite a model file with some entries replaced (None removes one)."""
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def meta_of(path) -> dict:
    with np.load(path) as archive:
        return json.loads(str(archive["meta"]))


def load_error(path) -> str:
    with pytest.raises(ModelFileError) as caught:
        serialize.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


# -- round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", models.FORMS)
def test_saved_model_loads_with_the_same_weights_ids_and_settings(tmp_path, form):
    model, lecture = trained(form)
    path = tmp_path / "model.npz"
    serialize.save(path, model, lecture.users, lecture.items, {"epochs": 20, "lr": 0.1})
    saved = serialize.load(path)

    assert saved.users == lecture.users and saved.items == lecture.items
    assert saved.settings == {"epochs": 20, "lr": 0.1}
    assert saved.model.form == form and saved.model.dim == 3
    ours, theirs = model.state_dict(), saved.model.state_dict()
    assert list(ours) == list(theirs) == list(models.PARAMETER_NAMES)
    for name in ours:
        assert np.array_equal(bits(ours[name].value), bits(theirs[name].value)), name
    users, items = all_pairs(lecture)
    assert np.array_equal(
        bits(saved.model.predict(users, items)), bits(model.predict(users, items))
    )


def test_loading_leaves_the_random_stream_where_it_was(tmp_path):
    model, lecture = trained()
    serialize.save(tmp_path / "m.npz", model, lecture.users, lecture.items)
    tinymf.manual_seed(99)
    expected = tinymf.rand(3).tolist()
    tinymf.manual_seed(99)
    serialize.load(tmp_path / "m.npz")
    assert tinymf.rand(3).tolist() == expected


def test_save_writes_exactly_the_path_given_with_ordinary_permissions(tmp_path):
    model, lecture = trained()
    path = tmp_path / "model.without.suffix"
    serialize.save(path, model, lecture.users, lecture.items)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.without.suffix"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_refuses_id_maps_of_the_wrong_size(tmp_path):
    model, lecture = trained()
    with pytest.raises(ValueError, match="8 user ids and 8 item ids"):
        serialize.save(tmp_path / "m.npz", model, lecture.users[:-1], lecture.items)


# -- atomic writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path, monkeypatch, interruption
):
    model, lecture = trained()
    path = tmp_path / "model.npz"
    serialize.save(path, model, lecture.users, lecture.items, {"run": 1})
    before = path.read_bytes()

    real_savez = np.savez

    def half_then_fail(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(100)  # half-written archive at the moment of the failure
        raise interruption

    monkeypatch.setattr(serialize.np, "savez", half_then_fail)
    with pytest.raises(type(interruption)):
        serialize.save(path, model, lecture.users, lecture.items, {"run": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert serialize.load(path).settings == {"run": 1}


# -- damaged, foreign and mismatched files ---------------------------------------------------------


@pytest.fixture
def saved_file(tmp_path):
    model, lecture = trained()
    path = tmp_path / "model.npz"
    serialize.save(path, model, lecture.users, lecture.items)
    return path


def test_missing_file_and_directory(tmp_path):
    assert "no such file" in load_error(tmp_path / "nothing.npz")
    assert "is a directory" in load_error(tmp_path)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.7, 0.99])
def test_truncated_file(saved_file, keep):
    raw = saved_file.read_bytes()
    saved_file.write_bytes(raw[: int(len(raw) * keep)])
    message = load_error(saved_file)
    assert "truncated" in message or "not a" in message


def test_corrupted_bytes_fail_the_archive_checksum(saved_file):
    raw = bytearray(saved_file.read_bytes())
    with zipfile.ZipFile(saved_file) as z:
        info = z.getinfo("l1.weight.npy")
    # flip a byte inside the stored array data (past its local header and .npy header)
    at = info.header_offset + 30 + len(info.filename) + 128 + 4
    raw[at] ^= 0xFF
    saved_file.write_bytes(bytes(raw))
    assert "damaged" in load_error(saved_file)


def test_text_file_and_single_array_are_not_model_files(tmp_path):
    text = tmp_path / "ratings.csv"
    text.write_text("user,item,rating\n1,2,3\n")
    assert "not a readable model file" in load_error(text)
    single = tmp_path / "array.npy"
    np.save(single, np.zeros(3, np.float32))
    assert "single NumPy array" in load_error(single)


def test_archive_without_the_entries_is_not_a_model_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    assert "not a tinymf model file (no meta, users, items, l1.weight" in load_error(path)


@pytest.mark.parametrize(
    ("meta_change", "fragment"),
    [
        ({"format": "something-else"}, "not a tinymf model file (format 'something-else')"),
        ({"version": 2}, "written by a newer tinymf (format version 2)"),
        ({"form": "dense"}, "unknown model form 'dense'"),
        ({"dim": 0}, "dim is 0, expected a positive whole number"),
        ({"n_users": 10}, "l1.weight has shape (3, 9), expected (3, 10)"),
    ],
)
def test_meta_that_does_not_fit_is_refused(saved_file, meta_change, fragment):
    meta = meta_of(saved_file) | meta_change
    rewrite(saved_file, meta=np.array(json.dumps(meta)))
    assert fragment in load_error(saved_file)


def test_meta_that_is_not_json(saved_file):
    rewrite(saved_file, meta=np.array("{not json"))
    assert "meta entry is not JSON text" in load_error(saved_file)


def test_weights_of_the_wrong_type_or_with_nan_are_refused(saved_file):
    with np.load(saved_file) as archive:
        w = archive["b2.weight"]
    rewrite(saved_file, **{"b2.weight": w.astype(np.float64)})
    assert "b2.weight is float64, expected float32" in load_error(saved_file)
    w = w.copy()
    w[0, 1] = np.nan
    rewrite(saved_file, **{"b2.weight": w})
    assert "b2.weight holds values that are not finite" in load_error(saved_file)


def test_id_maps_that_do_not_fit_are_refused(saved_file):
    with np.load(saved_file) as archive:
        users = archive["users"]
    rewrite(saved_file, users=users[:-1])
    assert "8 users ids for a model of 9 users" in load_error(saved_file)
    rewrite(saved_file, users=np.array(["a"] * 9))
    assert "users ids repeat" in load_error(saved_file)


# -- the torch reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", models.FORMS)
def test_state_dict_moves_into_the_reference_model_and_back_with_the_same_keys_and_shapes(form):
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("reference")
    model, lecture = trained(form)
    ref = reference.MatrixFactorization(lecture.n_users, lecture.n_items, dim=3, form=form)

    ours = model.state_dict()
    ref.load_state_dict({k: torch.from_numpy(v.value.copy()) for k, v in ours.items()})
    theirs = reference.state_dict_numpy(ref)
    assert list(theirs) == list(ours)
    assert {k: v.shape for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in ours.items()}

    tinymf.manual_seed(0)
    back = models.MatrixFactorization(lecture.n_users, lecture.n_items, dim=3, form=form)
    back.load_state_dict(theirs)
    for name, value in back.state_dict().items():
        assert np.array_equal(bits(value.value), bits(ours[name].value)), name


@pytest.mark.parametrize("form", models.FORMS)
def test_reference_loads_a_model_file_and_predicts_the_same_numbers(tmp_path, form):
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("reference")
    model, lecture = trained(form)
    path = tmp_path / "model.npz"
    serialize.save(path, model, lecture.users, lecture.items, {"note": "x"})

    ref, users, items, meta = reference.load_tinymf(path)
    assert users == lecture.users and items == lecture.items
    assert meta["settings"] == {"note": "x"} and meta["form"] == form
    u, i = all_pairs(lecture)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(u), torch.from_numpy(i)).numpy().reshape(-1)
    assert np.array_equal(bits(theirs), bits(serialize.load(path).model.predict(u, i)))


# -- the commands ----------------------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def predictions(out: str) -> dict[tuple[str, str], tuple[np.float32, str]]:
    lines = out.strip().splitlines()
    assert lines[0] == "user,item,prediction,basis"
    rows = {}
    for line in lines[1:]:
        user, item, value, basis = line.split(",")
        rows[user, item] = (np.float32(value), basis)
    return rows


def test_fit_save_then_predict_gives_the_trained_models_numbers(capsys, tmp_path):
    path = tmp_path / "lecture.npz"
    code, out, _ = run_cli(capsys, "fit", "--epochs", "30", "--dim", "3", "--save", path)
    assert code == 0 and f"model saved to {path}" in out

    lecture = data.load_lecture()
    model, _ = models.fit(
        lecture.user_idx, lecture.item_idx, lecture.rating, lecture.n_users, lecture.n_items,
        dim=3, epochs=30,
    )  # fmt: skip
    u, i = all_pairs(lecture)
    expected = model.predict(u, i)
    argv = []
    for k in range(len(u)):
        argv += [lecture.users[u[k]], lecture.items[i[k]]]
    code, out, err = run_cli(capsys, "predict", path, *argv)
    assert code == 0 and err == ""
    rows = predictions(out)
    for k in range(len(u)):
        value, basis = rows[lecture.users[u[k]], lecture.items[i[k]]]
        assert basis == "model"
        assert bits(np.array([value])) == bits(expected[k : k + 1])

    settings = serialize.load(path).settings
    assert settings["epochs"] == 30 and settings["dim"] == 3 and settings["lr"] == 0.1


def test_predict_reads_pairs_from_a_file_and_marks_unseen_ids(capsys, tmp_path):
    path = tmp_path / "m.npz"
    assert cli.main(["fit", "--epochs", "5", "--save", str(path)]) == 0
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("item,user\n영식(IN),옥순(IN)\n영식(IN),새사람\n새상품,하니(I)\nx,y\n")
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "predict", path, "--pairs", pairs)
    assert code == 0
    rows = predictions(out)
    assert [basis for _, basis in rows.values()] == [
        "model", "unseen user", "unseen item", "unseen user and item",
    ]  # fmt: skip
    assert all(np.isfinite(v) for v, _ in rows.values())


def test_fit_and_predict_on_movielens_ids(capsys, tmp_path, shared_data):
    folder = shared_data / "ml-100k"
    path = tmp_path / "u1.npz"
    code, _, _ = run_cli(
        capsys, "fit", folder / "u1.base", "--dim", "4", "--epochs", "1", "--batch-size",
        "4096", "--lr", "0.01", "--save", path, "--quiet",
    )  # fmt: skip
    assert code == 0
    # movie 599 is rated in u1.test only
    code, out, _ = run_cli(capsys, "predict", path, "1", "1", "943", "599", "944", "1")
    rows = predictions(out)
    assert [basis for _, basis in rows.values()] == ["model", "unseen item", "unseen user"]


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["predict", "{model}"], ["nothing to predict"]),
        (["predict", "{model}", "a"], ["1 ids given; they go in pairs"]),
        (["predict", "{model}", "a", "b", "--pairs", "p.csv"], ["not both"]),
        (["predict", "{model}", "--pairs", "{tmp}/none.csv"], ["none.csv: no such file"]),
        (["predict", "{tmp}/none.npz", "a", "b"], ["none.npz: no such file"]),
        (["predict", "{broken}", "a", "b"], ["broken.npz:", "truncated"]),
    ],
)
def test_predict_errors_are_one_line_with_exit_code_2(capsys, tmp_path, argv, fragments):
    model_path = tmp_path / "m.npz"
    assert cli.main(["fit", "--epochs", "2", "--save", str(model_path)]) == 0
    broken = tmp_path / "broken.npz"
    broken.write_bytes(model_path.read_bytes()[:500])
    capsys.readouterr()
    filled = [a.format(model=model_path, tmp=tmp_path, broken=broken) for a in argv]
    code, _, err = run_cli(capsys, *filled)
    assert code == 2 and err.startswith("tinymf: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment.format(tmp=tmp_path) in err, err


def test_fit_save_into_a_missing_directory_is_one_line(capsys, tmp_path):
    target = tmp_path / "no" / "such" / "m.npz"
    code, _, err = run_cli(capsys, "fit", "--epochs", "1", "--save", target)
    assert code == 2 and err.count("\n") == 1
    assert re.search(rf"{re.escape(str(target))}: cannot save the model: .+", err)
