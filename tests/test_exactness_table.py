"""docs/exactness.md and the tests say the same thing about how exactly tinymf agrees.

Each row of the document's tables is an entry of an ``EXACTNESS`` dict in a test module
(or, for random numbers, a test in tests/test_random.py). A row that says "bit-equal" is
asserted bit-equal by its tests, and a row with a measured worst case is asserted with
exactly that number as its bound: the document cannot promise more, or less, than is tested.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import test_ops
import test_optim
import test_trajectories
from test_ops import BIT_EQUAL, Bound, Seam

DOC = Path(__file__).resolve().parents[1] / "docs" / "exactness.md"
RANDOM_TESTS = Path(__file__).resolve().parent / "test_random.py"

SECTIONS = {
    "Operations": test_ops.EXACTNESS,
    "Optimizers": test_optim.EXACTNESS,
    "Training the recommender": test_trajectories.EXACTNESS,
}
CELL = re.compile(
    r"^(?P<ulp>[0-9.e+-]+) ulp(?P<magnitude> of magnitude)?(?:; abs (?P<abs>[0-9.e+-]+))?$"
)


def tables() -> dict[str, dict[str, list[str]]]:
    """Section title -> row name -> its cells, for every table under a ``## `` heading."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("|") or section is None:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not cells or set(cells[0]) <= set("-: ") or cells[0] == "Operation":
            continue  # the separator and the header
        name = cells[0].strip("`")
        assert name not in out.setdefault(section, {}), f"{name!r} twice in {section!r}"
        out[section][name] = cells[1:]
    return out


def parse(cell: str):
    """A table cell back into what the tests assert: BIT_EQUAL or a Bound."""
    if cell == "bit-equal":
        return BIT_EQUAL
    match = CELL.match(cell)
    assert match, f"cannot read {cell!r}: write 'bit-equal' or 'N ulp[ of magnitude][; abs A]'"
    return Bound(
        ulp=float(match["ulp"]),
        abs=None if match["abs"] is None else float(match["abs"]),
        of="magnitude" if match["magnitude"] else "value",
    )


def columns(entry) -> tuple:
    """(with torch's kernels, with tinymf's NumPy kernels) for one EXACTNESS entry.

    A ``Seam`` entry is bit-equal once torch's vendor kernels are substituted; a plain bound
    holds either way (what differs is computed by torch itself, not by a vendor kernel).
    """
    if isinstance(entry, Seam):
        return BIT_EQUAL, entry.numpy
    return entry, entry


@pytest.mark.parametrize("section", SECTIONS)
def test_every_tested_entry_has_a_row_and_every_row_is_tested(section):
    rows = tables()[section]
    assert set(rows) == set(SECTIONS[section]), (
        f"in the document only: {sorted(set(rows) - set(SECTIONS[section]))}; "
        f"in the tests only: {sorted(set(SECTIONS[section]) - set(rows))}"
    )


@pytest.mark.parametrize("section", SECTIONS)
def test_each_row_states_exactly_what_its_tests_assert(section):
    rows = tables()[section]
    for name, entry in SECTIONS[section].items():
        cells = rows.get(name)
        assert cells is not None, f"{section}: no row for {name!r}"
        stated = (parse(cells[0]), parse(cells[1]))
        assert stated == columns(entry), f"{section} / {name}: document {stated}, tests {entry}"


def test_measured_bounds_state_a_number_for_each_measure_they_assert():
    for section, entries in SECTIONS.items():
        for name, entry in entries.items():
            for how in columns(entry):
                if how != BIT_EQUAL:
                    assert how.ulp is not None, f"{section} / {name}: no ulp bound"


def test_random_number_rows_are_bit_equal_at_both_levels_and_name_existing_tests():
    rows = tables()["Random numbers"]
    assert rows, "the random-number table is empty"
    defined = set(re.findall(r"^def (test_\w+)", RANDOM_TESTS.read_text(), re.MULTILINE))
    for name, cells in rows.items():
        assert cells[0] == cells[1] == "bit-equal", name
        named = set(re.findall(r"test_random\.py::(test_\w+)", cells[2]))
        assert named, f"{name}: name the test in tests/test_random.py that proves it"
        assert named <= defined, f"{name}: no such test {sorted(named - defined)}"


def test_the_document_parser_reads_what_it_is_given():
    assert parse("bit-equal") == BIT_EQUAL
    assert parse("3 ulp") == Bound(ulp=3.0)
    assert parse("5 ulp of magnitude") == Bound(ulp=5.0, of="magnitude")
    assert parse("4352 ulp; abs 2.384185791015625e-07") == Bound(4352.0, 2.384185791015625e-07)
    with pytest.raises(AssertionError, match="cannot read"):
        parse("about 1 ulp")
