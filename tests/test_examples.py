"""The example scripts run as a learner runs them and print the lecture's numbers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import lecture_expected as expected

ROOT = Path(__file__).resolve().parents[1]
FOUR = re.compile(r"-?\d+\.\d{4}(?!\d)")  # a number as torch prints it, 4 decimals


def run_example(name: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def between(text: str, start: str, end: str | None = None) -> str:
    """The text after the first ``start`` and before the next ``end``."""
    assert start in text, start
    rest = text.split(start, 1)[1]
    if end is None:
        return rest
    assert end in rest, end
    return rest.split(end, 1)[0]


def flat(nested) -> list[str]:
    if isinstance(nested, dict):
        return [
            v
            for key in ("l1.weight", "b1.weight", "l2.weight", "b2.weight")
            for v in flat(nested[key])
        ]
    if isinstance(nested, list):
        return [v for item in nested for v in flat(item)]
    return [nested]


@pytest.fixture(scope="module")
def lecture_output() -> str:
    pytest.importorskip("pandas")
    return run_example("lecture.py")


def test_section_b_prints_the_three_compatibilities_and_the_table(lecture_output):
    b = between(lecture_output, "B. Fit / Predict", "C. dataframe")
    assert "tensor([[4.1190]])" in b
    assert "tensor([[0.7086]])" in b
    assert "tensor([[4.9560]])" in b
    table = between(b, "W @ M.T + (b1 + b2.T) =")
    assert FOUR.findall(table)[-72:] == flat(expected.COMPATIBILITY)


def test_section_c_prints_the_lectures_shapes_and_dtypes(lecture_output):
    c = between(lecture_output, "C. dataframe", "D. step1~4")
    lines = [line for line in c.splitlines() if ".shape:" in line]

    def neutral(line: str) -> str:
        return " ".join(re.sub(r"\b(torch|tinymf)\.", "", line).split())

    assert [neutral(x) for x in lines] == [neutral(x) for x in expected.C_PRINTS]


def test_section_d_prints_the_lectures_weights_gradients_and_first_step(lecture_output):
    d = between(lecture_output, "D. step1~4", "E. 코드정리")
    assert FOUR.findall(between(d, "(미분전)", "(미분후)")) == flat(expected.D_INITIAL)
    assert FOUR.findall(between(d, "(미분후)", "update")) == flat(expected.D_GRAD)
    assert FOUR.findall(between(d, "update", "zero_grad")) == flat(expected.D_AFTER_STEP)
    assert between(d, "zero_grad").strip(" =\n") == "(None, None, None, None)"


def test_section_e_prints_the_lectures_yhat_after_100_epochs(lecture_output):
    e = between(lecture_output, "E. 코드정리", "F. 모형의 해석")
    assert "tensor([[4.0965, 4.0200]," in e
    assert FOUR.findall(e) == flat(expected.E_YHAT_Y)
    assert "grad_fn=<SliceBackward0>" in e


def test_section_g_prints_the_lectures_yhat_for_seed_8(lecture_output):
    g = between(lecture_output, "G. 모형의 해석")
    tensor = between(g, "tensor(", "grad_fn")
    assert tensor.startswith("[[4.0386, 4.0200],")
    assert FOUR.findall(tensor) == flat(expected.G_YHAT_Y)


def test_sections_f_and_g_print_the_feature_tables_row_by_row(lecture_output):
    # which pairs the tables list, in the lecture's order; their 6-decimal values are
    # compared with the lecture in tests/test_lecture.py
    tables = (("F. 모형의 해석", expected.F_FEATURES), ("G. 모형의 해석", expected.G_FEATURES))
    for section, rows in tables:
        text = between(lecture_output, section)
        printed = re.findall(r"^(\d+)\s+(\S+)\s+(\S+)\s+-?\d", text, flags=re.MULTILINE)
        pairs = [(int(i), w, m) for i, w, m in printed][: len(rows)]
        assert pairs == [(i, w, m) for i, w, m, *_ in rows]


@pytest.fixture(scope="module")
def tour_output() -> str:
    return run_example("trace_tour.py")


def test_trace_tour_explains_backward_in_the_lectures_order(tour_output):
    assert (
        "visiting order: MseLossBackward0 -> MulBackward0 -> SigmoidBackward0 -> AddBackward0 "
        "-> MmBackward0 -> AddBackward0 -> MmBackward0 -> ViewBackward0 -> SumBackward1 "
        "-> MulBackward0 -> MmBackward0 -> MmBackward0"
    ) in tour_output
    assert "l1.weight.grad after explain(): None" in tour_output
    assert "#1  MseLossBackward0  output ()" in tour_output


def test_trace_tour_traces_a_step_and_with_torchs_kernels_finds_no_difference(tour_output):
    assert "b2.weight (1, 8)" in tour_output
    assert "step 1: loss before the step 2.7547417" in tour_output
    try:
        import torch  # noqa: F401

        import reference  # noqa: F401
    except ImportError:
        assert "torch is not installed" in tour_output
        return
    part3 = between(tour_output, "== 3.", "== rows")
    columns = ("value", "grad", "exp_avg", "exp_avg_sq", "denom", "update", "after")
    zero = ", ".join(f"'{q}': 0" for q in columns)
    assert "{" + zero + "}" in part3
