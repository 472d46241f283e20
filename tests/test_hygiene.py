"""Notebook hygiene: a committed chapter looks like a clean "restart and run all".

Re-implements the checks of the shared tools/check_notebooks.py (without depending on it) and
adds the book's own: the table of contents and the notebooks agree, and a chapter's
``parameters`` cell holds nothing but assignments of literals (what papermill can override).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from conftest import BOOK_DIR, REPO_ROOT, chapter_notebooks, chapter_params, toc_entries

pytestmark = pytest.mark.hygiene

MACHINE_PATH = re.compile(r"(/root/|/tmp/|/home/[^/\s]+/)")
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _code_cells(nb_path: Path) -> list[dict]:
    nb = json.loads(nb_path.read_text())
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def notebook_problems(nb_path: Path) -> list[str]:
    """Hygiene problems of one notebook, one message each (empty when it is clean)."""
    try:
        code = _code_cells(nb_path)
    except (OSError, json.JSONDecodeError) as exc:
        return [f"unreadable notebook: {exc}"]
    if not code:
        return ["no code cells"]
    problems: list[str] = []
    if not any("parameters" in _tags(c) for c in code):
        problems.append("no cell tagged 'parameters'")
    if any("injected-parameters" in _tags(c) for c in code):
        problems.append("a papermill 'injected-parameters' cell: commit `make execute` output, not a papermill run")
    counts = [c.get("execution_count") for c in code if _source(c).strip()]
    if any(n is None for n in counts):
        problems.append(f"{sum(n is None for n in counts)} code cell(s) never executed")
    elif counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts {counts[:6]}... are not 1..n (not a clean run-all)")
    for i, cell in enumerate(code):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"code cell {i}: error output {out.get('ename')}: {out.get('evalue')}")
            data = out.get("data", {})
            if "image/svg+xml" in data:
                problems.append(f"code cell {i}: SVG output (nbval compares SVG text; use PNG)")
            text = _text(out.get("text", "")) + "".join(_text(data.get(m, "")) for m in TEXT_MIMES)
            match = MACHINE_PATH.search(text)
            if match:
                problems.append(f"code cell {i}: output shows a machine-specific path {match.group(0)!r}")
    return problems


def test_toc_lists_chapters():
    assert chapter_notebooks(), "_toc.yml lists no chapter notebook"


@pytest.mark.parametrize("entry", toc_entries())
def test_toc_entry_exists(entry: str):
    sources = [REPO_ROOT / f"{entry}{suffix}" for suffix in (".ipynb", ".md")]
    present = [p.name for p in sources if p.exists()]
    assert len(present) == 1, f"_toc.yml entry {entry!r}: expected one of .ipynb/.md, found {present}"


def test_every_notebook_is_in_toc():
    """A notebook missing from _toc.yml would be silently skipped by the build."""
    listed = {p.resolve() for p in chapter_notebooks()}
    stray = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in BOOK_DIR.rglob("*.ipynb")
        if not {".ipynb_checkpoints", "_output", "_build"} & set(p.relative_to(BOOK_DIR).parts)
        and p.resolve() not in listed
    ]
    assert not stray, f"notebooks under book/ that _toc.yml does not list: {stray}"


@pytest.mark.parametrize("nb_path", chapter_params())
def test_notebook_hygiene(nb_path: Path):
    assert nb_path.exists(), f"{nb_path} is listed in _toc.yml but missing"
    problems = notebook_problems(nb_path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("nb_path", chapter_params())
def test_parameters_cell_is_literal_assignments(nb_path: Path):
    cells = [c for c in _code_cells(nb_path) if "parameters" in _tags(c)]
    assert len(cells) == 1, f"expected exactly one cell tagged 'parameters', found {len(cells)}"
    tree = ast.parse(_source(cells[0]))
    values: dict[str, object] = {}
    names: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
            targets = [t.id for t in stmt.targets]
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            targets = [stmt.target.id]
        else:
            pytest.fail(f"line {stmt.lineno}: only `name = <literal>` belongs in the parameters cell")
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError:
            pytest.fail(f"line {stmt.lineno}: {', '.join(targets)} is not assigned a plain literal")
        names.extend(targets)
        values.update(dict.fromkeys(targets, value))
    assert names, "the parameters cell assigns nothing"
    assert "scale" in names, "every chapter takes a `scale` parameter (smoke/book/paper)"
    assert "output_dir" in names, "every chapter takes an `output_dir` parameter"
    assert values["scale"] == "book", "committed outputs are the book scale: scale = \"book\""
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"parameters assigned twice: {sorted(duplicates)}"
