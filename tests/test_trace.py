"""The step tracer: it shows what Adam really used, and torch's side is read honestly."""

import csv
import io
import json

import numpy as np
import pytest

import tinymf
from tinymf import trace as tr
from tinymf.cli import main
from tinymf.data import load_lecture
from tinymf.models import PARAMETER_NAMES, MatrixFactorization, fit, parameters_numpy

SHAPES = {"l1.weight": (2, 9), "b1.weight": (1, 9), "l2.weight": (2, 8), "b2.weight": (1, 8)}


def bits(a) -> bytes:
    return np.asarray(a, dtype=np.float32).tobytes()


def sqrt_kernels_differ(v: np.ndarray) -> np.ndarray:
    """Where tinymf's sqrt kernel and torch's (MKL's) disagree, element by element."""
    torch = pytest.importorskip("torch")
    return tinymf.arith.kernels.sqrt(v) != torch.sqrt(torch.from_numpy(v)).numpy()


@pytest.fixture(scope="module")
def tinymf_only():
    return tr.trace(3, compare_torch=False)


@pytest.fixture(scope="module")
def compared():
    pytest.importorskip("torch")
    return tr.trace(3, compare_torch=True)


# -- tinymf's side ---------------------------------------------------------------------------


def test_records_cover_every_parameter_and_step_in_the_lecture_order(tinymf_only):
    assert [(r.step, r.param) for r in tinymf_only] == [
        (step, name) for step in (1, 2, 3) for name in PARAMETER_NAMES
    ]
    for r in tinymf_only:
        assert r.shape == SHAPES[r.param]
        assert r.torch is None and r.torch_loss is None
        for q in tr.ARRAYS:
            assert r.tinymf[q].dtype == np.float32 and r.tinymf[q].shape == r.shape, q
        for q in tr.SCALARS:
            assert isinstance(r.tinymf[q], float), q


def test_first_value_is_the_seeded_initial_weight_and_each_after_is_the_next_value(tinymf_only):
    tinymf.manual_seed(21345)
    initial = parameters_numpy(MatrixFactorization(9, 8))
    by_key = {(r.step, r.param): r for r in tinymf_only}
    for name in PARAMETER_NAMES:
        assert bits(by_key[1, name].tinymf["value"]) == bits(initial[name])
        for step in (1, 2):
            assert bits(by_key[step, name].tinymf["after"]) == bits(
                by_key[step + 1, name].tinymf["value"]
            )


def test_value_plus_update_is_the_value_after_the_step(tinymf_only):
    # the update recorded is the very term Adam added, so one float32 addition gives `after`
    for r in tinymf_only:
        assert bits(r.tinymf["value"] + r.tinymf["update"]) == bits(r.tinymf["after"]), r.param


def test_traced_run_is_the_ordinary_training_run():
    traced = tr.trace(4, compare_torch=False)
    data = load_lecture()
    model, losses = fit(data.user_idx, data.item_idx, data.rating, 9, 8, epochs=4)
    assert [r.loss for r in traced if r.param == "l1.weight"] == losses
    final = {r.param: r.tinymf["after"] for r in traced if r.step == 4}
    for name, value in parameters_numpy(model).items():
        assert bits(final[name]) == bits(value), name


def test_bias_corrections_and_step_size_are_adams_formulas(tinymf_only):
    for r in tinymf_only:
        t = r.step
        assert r.tinymf["bias_correction1"] == 1 - 0.9**t
        assert r.tinymf["bias_correction2"] == 1 - 0.999**t
        assert r.tinymf["step_size"] == 0.1 / (1 - 0.9**t)


def test_without_torch_the_table_says_so_and_rows_have_no_torch_column(tinymf_only):
    text = tinymf_only.table()
    assert "torch not compared" in text
    assert "diff" not in text.split("torch not compared")[1]
    rows = tinymf_only.rows()
    assert all(row["torch"] is None and row["diff"] is None for row in rows)
    with pytest.raises(ValueError, match="without torch"):
        tinymf_only[0].diff("grad")


def test_rows_csv_and_json_hold_every_value_exactly(tinymf_only):
    rows = tinymf_only.rows()
    per_step = 1 + sum(int(np.prod(s)) * len(tr.ARRAYS) + len(tr.SCALARS) for s in SHAPES.values())
    assert len(rows) == 3 * per_step
    parsed = list(csv.DictReader(io.StringIO(tinymf_only.to_csv())))
    doc = json.loads(tinymf_only.to_json())
    assert len(parsed) == len(doc["rows"]) == len(rows)
    assert doc["settings"]["seed"] == 21345 and doc["settings"]["steps"] == 3
    frame = tinymf_only.to_frame()
    assert frame.shape == (len(rows), 8) and frame["tinymf"].tolist() == [r["tinymf"] for r in rows]

    by_key = {(r.step, r.param): r for r in tinymf_only}
    for row, from_csv, from_json in zip(rows, parsed, doc["rows"], strict=True):
        assert float(from_csv["tinymf"]) == row["tinymf"] == from_json["tinymf"]
        if row["param"] == "loss":
            continue
        record = by_key[row["step"], row["param"]].tinymf[row["quantity"]]
        if row["quantity"] in tr.SCALARS:
            assert row["tinymf"] == record
        else:
            idx = tuple(int(i) for i in row["index"].strip("[]").split(","))
            assert np.float32(row["tinymf"]).tobytes() == record[idx].tobytes()


def test_select_keeps_the_named_parameters_and_refuses_unknown_ones(tinymf_only):
    only = tinymf_only.select(params=["b2.weight"], steps=[2])
    assert [(r.step, r.param) for r in only] == [(2, "b2.weight")]
    assert only.settings == tinymf_only.settings
    with pytest.raises(ValueError, match="unknown parameter 'w'"):
        tinymf_only.select(params=["w"])


def test_ulp_distance_counts_float32_steps():
    one = np.float32(1.0)
    up = np.nextafter(one, np.float32(2))
    assert tr.ulp_distance(one, one) == 0
    assert tr.ulp_distance(one, up) == 1
    assert tr.ulp_distance(up, one) == 1
    tiny = np.float32(1e-45)  # the smallest subnormal: -tiny, 0, tiny are neighbours
    assert tr.ulp_distance(-tiny, tiny) == 2
    assert tr.ulp_distance(np.float32(-0.0), np.float32(0.0)) == 0


def test_num_prints_two_neighbouring_floats_differently():
    x = np.float32(0.1)
    assert tr.num(x) != tr.num(np.nextafter(x, np.float32(1)))
    assert tr.num(np.float32(4.6724537e-08)) == "4.6724537e-08"
    assert tr.num(np.float32(0.0)) == "0"


# -- torch's side ----------------------------------------------------------------------------


def test_torch_side_is_the_reference_run(compared):
    import reference

    data = load_lecture()
    model, losses = reference.fit(data.user_idx, data.item_idx, data.rating, 9, 8, epochs=3)
    assert [r.torch_loss for r in compared if r.param == "l1.weight"] == losses
    final = {r.param: r.torch["after"] for r in compared if r.step == 3}
    for name, value in reference.parameters_numpy(model).items():
        assert bits(final[name]) == bits(value), name


def test_torch_derived_update_is_exactly_what_its_step_added(compared):
    # update is derived from exp_avg and the derived denom; adding it to value must give the
    # parameter torch's own addcdiv_ produced, bit for bit, or the derivation would be wrong
    for r in compared:
        assert bits(r.torch["value"] + r.torch["update"]) == bits(r.torch["after"]), r.param


def test_first_step_differs_from_torch_only_where_the_sqrt_kernels_differ(compared):
    """The lecture's first step: loss, values, gradients and moments are bit-equal; the
    denominators differ exactly in the elements where tinymf's sqrt kernel and torch's MKL
    sqrt round differently (none, if the kernel reproduces MKL's)."""
    first = [r for r in compared if r.step == 1]
    assert first[0].loss == first[0].torch_loss
    for r in first:
        for q in ("value", "grad", "exp_avg", "exp_avg_sq"):
            assert r.differing(q) == 0, (r.param, q)
        for q in tr.SCALARS:
            assert r.tinymf[q] == r.torch[q], (r.param, q)
        differ = sqrt_kernels_differ(r.tinymf["exp_avg_sq"])
        assert np.array_equal(r.ulps("denom") != 0, differ), r.param
        assert r.ulps("denom").max(initial=0) <= 1


def test_with_torch_kernels_every_difference_is_zero_for_five_steps():
    pytest.importorskip("torch")
    exact = tr.trace(5, torch_kernels=True)
    assert exact.compared and len(exact) == 5 * 4
    assert tr.differences(exact) == dict.fromkeys(tr.ARRAYS, 0)
    for r in exact:
        assert r.loss == r.torch_loss
        assert all(r.tinymf[q] == r.torch[q] for q in tr.SCALARS)
    assert "bit-equal: all 18 elements of every column" in exact.table()


def test_the_table_shows_both_sides_and_the_difference_in_ulps(compared):
    text = compared.select(params=["b2.weight"], steps=[1]).table()
    assert "torch 2." in text and "kernels" in text
    assert "denom~" in text and "update~" in text  # derived torch columns are marked
    lines = text.splitlines()
    element = next(i for i, line in enumerate(lines) if line.lstrip().startswith("[0,0]"))
    assert "tinymf" in lines[element]
    assert lines[element + 1].split()[0] == "torch"
    assert lines[element + 2].split()[0] == "diff"
    assert "of 8 elements" in text or "bit-equal: all 8" in text


def test_differences_only_hides_bit_equal_elements(compared):
    text = compared.select(params=["b1.weight"], steps=[1]).table(differences_only=True)
    shown = [line for line in text.splitlines() if line.lstrip().startswith("[")]
    r = compared.select(params=["b1.weight"], steps=[1])[0]
    differing = {idx for idx in np.ndindex(r.shape) if any(r.ulps(q)[idx] for q in tr._SHOWN)}
    assert len(shown) == len(differing)


def test_large_parameters_show_a_few_elements_and_say_how_many_more(tinymf_only):
    text = tinymf_only.select(params=["l1.weight"], steps=[1]).table(max_elements=5)
    assert len([line for line in text.splitlines() if line.lstrip().startswith("[")]) == 5
    assert "... 13 more elements not shown" in text
    assert "more elements" not in tinymf_only.table()


# -- the command -----------------------------------------------------------------------------


def test_cli_trace_prints_a_table_for_one_parameter(capsys):
    assert main(["trace", "--no-torch", "--param", "b2.weight", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "b2.weight (1, 8)" in out and "l1.weight" not in out
    assert "step 2:" in out


def test_cli_trace_writes_csv_and_json(tmp_path, capsys):
    target = tmp_path / "trace.csv"
    assert main(["trace", "--no-torch", "--format", "csv", "--output", str(target)]) == 0
    assert f"trace written to {target}" in capsys.readouterr().out
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert rows[0]["quantity"] == "loss" and len(rows) == 1 + 51 * 7 + 4 * 3

    assert main(["trace", "--no-torch", "--format", "json", "--param", "b1.weight"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {row["param"] for row in doc["rows"]} == {"loss", "b1.weight"}


def test_cli_trace_with_torch_kernels_shows_only_zero_differences(capsys):
    pytest.importorskip("torch")
    assert main(["trace", "--torch-kernels", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "sqrt torch.sqrt, matmul torch.matmul (--torch-kernels)" in out
    assert " ulp" not in out.replace("(ulp)", "")
    assert out.count("bit-equal: all") == 8


def test_cli_trace_torch_kernels_without_torch_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(tr, "torch_available", lambda: False)
    assert main(["trace", "--torch-kernels"]) == 2
    assert "--torch-kernels needs torch" in capsys.readouterr().err


def test_level_note_speaks_only_when_torch_runs_another_kernel_level():
    assert tr.level_note("AVX2", "avx2") is None
    assert tr.level_note("DEFAULT", "default") is None
    note = tr.level_note("AVX512", "avx2")
    assert note is not None and "ATEN_CPU_CAPABILITY=avx2" in note


def test_cli_compare_torch_pins_torch_to_tinymfs_level_and_is_bit_equal_with_mkl_replay(
    mkl_replay,
):
    # a fresh process with no level set, as a user runs it: on an AVX-512 CPU torch would
    # otherwise pick kernels whose bits tinymf does not reproduce
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    args = ["fit", "--compare-torch", "--kernels", "mkl-replay", "--quiet"]
    out = subprocess.run(
        [sys.executable, "-m", "tinymf", *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    report = out.stdout[out.stdout.index("largest difference from torch") :]
    assert "note:" not in out.stdout
    for name, shape in SHAPES.items():
        assert f"{name}  max |diff| 0  (0 of {np.prod(shape)} elements" in report, report
