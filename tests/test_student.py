"""The student edition: solutions removed, everything else kept, and the copies still run."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import BOOK_DIR, chapter_params
from floss_utils.book.student import SolutionMarkupError, strip_solutions, write_student_edition


def _nb(*cells):
    nb = new_notebook()
    nb.cells = list(cells)
    return nb


EXERCISE = "```{exercise}\n:label: ex-a\nCompute 2 + 2.\n```"
START = "Some intro.\n\n```{solution-start} ex-a\n:class: dropdown\n```\n\nIt is four."
END = "```{solution-end}\n```\n\nText after the solution."


def test_solution_span_is_removed_and_the_rest_kept():
    nb = _nb(new_code_cell("x = 1"), new_markdown_cell(EXERCISE), new_markdown_cell(START),
             new_code_cell("assert 2 + 2 == 4  # SOLUTION CODE"), new_markdown_cell(END),
             new_code_cell("y = x + 1"))
    student, removed = strip_solutions(nb)
    text = "\n".join(c.source for c in student.cells)
    assert removed == 1
    assert "SOLUTION CODE" not in text and "It is four" not in text and "solution-start" not in text
    assert "Compute 2 + 2" in text and "Some intro." in text and "Text after the solution." in text
    assert [c.source for c in student.cells if c.cell_type == "code"] == ["x = 1", "y = x + 1"]
    assert "Your turn" in text
    nbformat.validate(student)
    # the original is untouched
    assert any("SOLUTION CODE" in c.source for c in nb.cells)


def test_solution_opened_and_closed_in_one_cell():
    one = "```{solution-start} ex-a\n:class: dropdown\n```\nSecret.\n```{solution-end}\n```\nAfter."
    student, removed = strip_solutions(_nb(new_markdown_cell(EXERCISE), new_markdown_cell(one)))
    text = "\n".join(c.source for c in student.cells)
    assert removed == 1 and "Secret" not in text and "After." in text


@pytest.mark.parametrize("cells", [
    [new_markdown_cell(START)],  # never closed
    [new_markdown_cell(END)],  # never opened
    [new_markdown_cell(START), new_markdown_cell(START)],  # nested
])
def test_unbalanced_markup_is_refused(cells):
    with pytest.raises(SolutionMarkupError):
        strip_solutions(_nb(*cells))


def test_refuses_to_overwrite_the_source(tmp_path: Path):
    src = tmp_path / "ch.ipynb"
    nbformat.write(_nb(new_code_cell("x = 1")), src)
    with pytest.raises(FileExistsError):
        write_student_edition([src], tmp_path)


def _code_checked_solutions(nb) -> int:
    """Code cells inside solutions that assert something (``check(...)``, ``check_if_testable(...)``
    or ``assert``)."""
    inside, count = False, 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in re.finditer(r"\{solution-(start|end)\}", cell.source):
                inside = m.group(1) == "start"
        elif inside and (re.search(r"\bcheck(_if_testable)?\(", cell.source) or "assert " in cell.source):
            count += 1
    return count


def test_code_checked_solutions_are_counted():
    nb = _nb(new_markdown_cell(EXERCISE), new_markdown_cell(START), new_code_cell("check(True, 'ok')"),
             new_markdown_cell(END), new_code_cell("assert True  # outside any solution"))
    assert _code_checked_solutions(nb) == 1
    nb = _nb(new_markdown_cell(EXERCISE), new_markdown_cell(START), new_code_cell("check_if_testable(n > 3, ok, 'x')"),
             new_markdown_cell(END))
    assert _code_checked_solutions(nb) == 1


@pytest.mark.slow
@pytest.mark.parametrize("nb_path", chapter_params())
def test_student_copy_of_each_chapter_has_no_solutions_and_runs(nb_path: Path, tmp_path: Path):
    original = nbformat.read(nb_path, as_version=4)
    n_solutions = sum(c.source.count("{solution-start}") for c in original.cells if c.cell_type == "markdown")
    n_exercises = sum(c.source.count("{exercise}") for c in original.cells if c.cell_type == "markdown")
    assert 2 <= n_exercises <= 4 and n_solutions == n_exercises, "each chapter has 2-4 exercises, each with a solution"
    assert _code_checked_solutions(original) >= 1, "at least one exercise per chapter is checked by code"
    (copy,) = write_student_edition([nb_path], tmp_path / "student")
    student = nbformat.read(copy, as_version=4)
    assert not any("{solution-start}" in c.source or "{solution-end}" in c.source for c in student.cells)
    assert sum(c.source.count("{exercise}") for c in student.cells) == n_exercises
    # the copy still runs, at smoke scale, without the solution cells
    papermill.execute_notebook(str(copy), str(tmp_path / "executed.ipynb"),
                               parameters={"scale": "smoke", "output_dir": str(tmp_path / "out")},
                               kernel_name="python3", cwd=str(BOOK_DIR), progress_bar=False)
