"""The student edition: solutions removed, everything else kept, and the copies still run."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import BOOK_DIR, chapter_params
from floss_utils.book.student import SolutionMarkupError, solution_leaks, strip_solutions, write_student_edition


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


def test_solution_leaks_finds_a_name_bound_only_in_a_solution():
    leaky = _nb(new_code_cell("import numpy as np\nx = 1"), new_markdown_cell(EXERCISE), new_markdown_cell(START),
                new_code_cell("y = np.sqrt(x)\nfrom math import tau"), new_markdown_cell(END),
                new_code_cell("z = y + x + tau\nf = lambda w: w"))
    problems = solution_leaks(leaky, "leaky")
    assert len(problems) == 2 and "'tau'" in problems[0] and "'y'" in problems[1], problems
    # bound again outside the solution before it is read: the student copy has it
    fixed = _nb(*leaky.cells[:-1], new_code_cell("y = 2\ntau = 6.28\nz = y + x + tau"))
    assert solution_leaks(fixed) == []


def test_solution_leaks_finds_a_rebinding_and_a_read_through_a_function():
    sol = [new_markdown_cell(EXERCISE), new_markdown_cell(START), new_code_cell("x = 2"), new_markdown_cell(END)]
    # bound outside, rebound inside the solution, read after it: the student copy would see the old value
    rebound = _nb(new_code_cell("x = 1"), *sol, new_code_cell("print(x)"))
    assert len(solution_leaks(rebound)) == 1 and "'x', last bound inside a solution" in solution_leaks(rebound)[0]
    # a function defined before the solution reads x when it is called after it
    deferred = _nb(new_code_cell("def f():\n    return x + 1"), *sol, new_code_cell("y = f()"))
    assert len(solution_leaks(deferred)) == 1 and "'x'" in solution_leaks(deferred)[0]
    # rebound outside after the solution: fine
    assert solution_leaks(_nb(new_code_cell("x = 1"), *sol, new_code_cell("x = 3"), new_code_cell("print(x)"))) == []


def test_solution_leaks_finds_a_glue_key_set_only_in_a_solution():
    cells = [new_markdown_cell(EXERCISE), new_markdown_cell(START), new_code_cell("glue_number('ch_x', 3.0, 2)"),
             new_markdown_cell(END)]
    shown = _nb(*cells, new_markdown_cell("The answer is {glue:text}`ch_x`."))
    assert solution_leaks(shown) == ["notebook: the student copy shows glue key 'ch_x', glued only inside a solution"]
    hidden = _nb(*cells[:-1], new_markdown_cell(END.replace("Text after", "The answer {glue}`ch_x`, after")))
    assert "{glue}`ch_x`" in strip_solutions(hidden)[0].cells[-1].source  # kept by the copy: flagged
    assert len(solution_leaks(hidden)) == 1
    inside = _nb(*cells[:2], new_markdown_cell("{glue}`ch_x`"), *cells[2:])  # shown inside the solution only
    assert solution_leaks(inside) == []
    # a key that is not a literal cannot be checked against the student copy's markdown: flagged
    dynamic = _nb(*cells[:2], new_code_cell("k = 'x'\nglue(f'ch_{k}', 1)"), cells[3])
    assert len(solution_leaks(dynamic)) == 1 and "not a literal string" in solution_leaks(dynamic)[0]


@pytest.mark.parametrize("nb_path", chapter_params())
def test_student_copy_of_each_chapter_has_no_solutions_and_needs_none(nb_path: Path, tmp_path: Path):
    """Each chapter's student copy: no solution left, every exercise kept, at least one solution
    checked by code, and nothing outside the solutions depends on them (``solution_leaks``: a static
    reading; one chapter's copy is also executed, below)."""
    original = nbformat.read(nb_path, as_version=4)
    n_solutions = sum(c.source.count("{solution-start}") for c in original.cells if c.cell_type == "markdown")
    n_exercises = sum(c.source.count("{exercise}") for c in original.cells if c.cell_type == "markdown")
    assert 2 <= n_exercises <= 4 and n_solutions == n_exercises, "each chapter has 2-4 exercises, each with a solution"
    assert _code_checked_solutions(original) >= 1, "at least one exercise per chapter is checked by code"
    (copy,) = write_student_edition([nb_path], tmp_path / "student")
    student = nbformat.read(copy, as_version=4)
    assert not any("{solution-start}" in c.source or "{solution-end}" in c.source for c in student.cells)
    assert sum(c.source.count("{exercise}") for c in student.cells) == n_exercises
    assert solution_leaks(original, nb_path.name) == []


@pytest.mark.slow
def test_a_student_copy_runs(tmp_path: Path):
    """One chapter's student copy (chapter 2: the cheapest) runs at smoke scale without its solution
    cells: the end-to-end check behind the static one above (every chapter also runs whole at smoke
    scale in test_smoke.py, solutions included)."""
    (copy,) = write_student_edition([BOOK_DIR / "02_exponents_to_gradients.ipynb"], tmp_path / "student")
    papermill.execute_notebook(str(copy), str(tmp_path / "executed.ipynb"),
                               parameters={"scale": "smoke", "output_dir": str(tmp_path / "out")},
                               kernel_name="python3", cwd=str(BOOK_DIR), progress_bar=False)
