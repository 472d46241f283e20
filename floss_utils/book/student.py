"""The student edition: copies of the chapters with the exercise solutions removed.

A solution in a chapter is the span from a markdown cell that opens it with the sphinx-exercise
gated directive (a line starting with three backticks and ``{solution-start}``) to the markdown
cell that closes it (``{solution-end}``), code cells in between included. The student copy keeps
everything else — narrative, code and its outputs, figures, the exercise statements; each
solution span is replaced by one markdown cell inviting the student to work.

Usage::

    from floss_utils.book.student import write_student_edition
    write_student_edition(["book/01_lyapunov_spectra.ipynb"], "student/")
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path
from typing import Iterable

import nbformat

__all__ = ["strip_solutions", "write_student_edition", "solution_leaks", "SolutionMarkupError"]

_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}\s*(\S+)?", re.MULTILINE)
_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}", re.MULTILINE)
PLACEHOLDER = "*Your solution here.* (The solution is in the instructor edition of the book.)"


class SolutionMarkupError(ValueError):
    """A solution-start without its solution-end (or the reverse)."""


def strip_solutions(nb: nbformat.NotebookNode, name: str = "notebook") -> tuple[nbformat.NotebookNode, int]:
    """Return a copy of ``nb`` without its solutions, and the number of solutions removed.

    Markdown cells are scanned marker by marker, so one cell may close a solution, state the
    next exercise and open its solution; the text outside solutions is kept.
    """
    out = nbformat.from_dict(nb)  # deep copy
    kept: list = []
    removed, inside = 0, False
    for cell in out.cells:
        if cell.cell_type != "markdown":
            if not inside:
                kept.append(cell)
            continue
        src = cell.source
        markers = sorted([(m.start(), "start", m) for m in _START.finditer(src)]
                         + [(m.start(), "end", m) for m in _END.finditer(src)], key=lambda x: x[0])
        if not markers:
            if not inside:
                kept.append(cell)
            continue
        pieces, pos = [], 0
        for at, kind, match in markers:
            if kind == "start":
                if inside:
                    raise SolutionMarkupError(f"{name}: solution-start inside an open solution")
                pieces.append(src[pos:at].rstrip())
                pieces.append(_placeholder(match.group(2) or ""))
                removed += 1
                inside = True
            else:
                if not inside:
                    raise SolutionMarkupError(f"{name}: solution-end without a solution-start")
                inside = False
            pos = _fence_end(src, match.end())
        if not inside:
            pieces.append(src[pos:].strip())
        text = "\n\n".join(p for p in pieces if p.strip())
        if text:
            kept.append(nbformat.v4.new_markdown_cell(text))
    if inside:
        raise SolutionMarkupError(f"{name}: solution-start without a solution-end")
    out.cells = kept
    for i, cell in enumerate(out.cells):  # fresh unique ids (nbformat >= 4.5)
        cell["id"] = f"student-{i:03d}"
    return out, removed


def solution_leaks(nb: nbformat.NotebookNode, name: str = "notebook") -> list[str]:
    """What the student copy of ``nb`` would miss: each problem as one sentence (empty: none).

    A static reading of the code, in cell order. Flagged: a code cell outside every solution that
    reads a name whose last binding (assignment, import, definition) was inside a solution - the
    student copy would raise ``NameError`` or see an older value - counting as read the names that
    the functions it calls read (functions defined outside the solutions, by name); a glue key set
    inside solution code (``glue`` or ``glue_number``) and shown by the markdown the student copy
    keeps, which would render as a missing reference; and a glue key inside solution code that is
    not a literal string (it cannot be checked). Not seen: state a solution changes without binding
    a name (a mutated object, a written file), reads through attributes or ``globals()``, and a
    read of a name that the reading cell itself binds anywhere (an argument, a later assignment),
    which counts as bound.
    """
    student, _ = strip_solutions(nb, name=name)
    last_binder: dict[str, tuple[bool, int]] = {}  # name -> (bound inside a solution, code cell)
    body_loads: dict[str, set[str]] = {}  # function defined outside the solutions -> names its body reads
    glued_inside, glued_outside = set(), set()
    problems = []
    for i, (src, inside) in enumerate(_code_cells(nb, name)):
        tree = _parse(src)
        stored, loaded = _names(tree)
        keys, dynamic = _glue_keys(tree)
        if inside:
            glued_inside |= keys
            if dynamic:
                problems.append(f"{name}: code cell {i}, inside a solution, glues a key that is not a literal string "
                                "(cannot be checked against the student copy)")
        else:
            glued_outside |= keys
            reads = loaded | {n for f in _called(tree) for n in body_loads.get(f, ())}
            for n in sorted(reads - stored):
                if last_binder.get(n, (False, 0))[0]:
                    problems.append(f"{name}: code cell {i} reads {n!r}, last bound inside a solution (code cell "
                                    f"{last_binder[n][1]}): the student copy would raise NameError or see another value")
            body_loads.update(_function_loads(tree))
        for n in stored:
            last_binder[n] = (inside, i)
    shown = {m.group(1) for c in student.cells if c.cell_type == "markdown"
             for m in re.finditer(r"\{glue(?::\w*)?\}`([^`:]+)", c.source)}
    for key in sorted(shown & (glued_inside - glued_outside)):
        problems.append(f"{name}: the student copy shows glue key {key!r}, glued only inside a solution")
    return problems


def _code_cells(nb: nbformat.NotebookNode, name: str) -> list[tuple[str, bool]]:
    """``(source, inside a solution)`` of every code cell, in order."""
    cells, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append((cell.source, inside))
        elif cell.cell_type == "markdown":
            markers = sorted([(m.start(), True) for m in _START.finditer(cell.source)]
                             + [(m.start(), False) for m in _END.finditer(cell.source)])
            for _, opens in markers:
                if opens == inside:
                    raise SolutionMarkupError(f"{name}: unbalanced solution markup")
                inside = opens
    return cells


def _parse(src: str) -> ast.Module:
    """The cell's Python, IPython magics and shell escapes left out."""
    return ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()))


def _names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names a cell binds (assignments, imports, definitions, arguments) and names it reads."""
    stored, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else stored).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stored |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stored.add(node.name)
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stored.add(node.name)
    return stored, loaded


def _glue_keys(tree: ast.Module) -> tuple[set[str], bool]:
    """Literal keys of the cell's ``glue(...)`` and ``glue_number(...)`` calls, and whether any call's
    key is not a literal string."""
    keys, dynamic = set(), False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("glue", "glue_number"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                keys.add(node.args[0].value)
            else:
                dynamic = True
    return keys, dynamic


def _called(tree: ast.Module) -> set[str]:
    """Names the cell calls directly (``f(...)``)."""
    return {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def _function_loads(tree: ast.Module) -> dict[str, set[str]]:
    """For each function the cell defines at its top level: the names its body reads."""
    return {node.name: _names(ast.Module(body=node.body, type_ignores=[]))[1]
            for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _fence_end(src: str, pos: int) -> int:
    """Position just after the closing fence of the directive whose opening ends at ``pos``."""
    closing = re.compile(r"^\s*(`{3,}|:{3,})\s*$", re.MULTILINE)
    m = closing.search(src, _line_end(src, pos))
    return len(src) if m is None else _line_end(src, m.end())


def _line_end(src: str, pos: int) -> int:
    """Position after the end of the line containing ``pos`` (skips the closing fence)."""
    nl = src.find("\n", pos)
    return len(src) if nl < 0 else nl + 1


def _placeholder(label: str) -> str:
    note = f"```{{admonition}} Your turn\n{PLACEHOLDER}\n```"
    return note if not label else f"<!-- solution to {label} removed -->\n{note}"


def write_student_edition(notebooks: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Write solution-free copies of ``notebooks`` into ``out_dir`` (same file names).

    Returns the written paths. Raises :class:`SolutionMarkupError` on unbalanced markup, and
    ``FileExistsError`` rather than overwrite a source notebook with its own student copy.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(Path, notebooks):
        target = out / path.name
        if target.resolve() == path.resolve():
            raise FileExistsError(f"refusing to overwrite the source {path} with its student copy")
        nb = nbformat.read(path, as_version=4)
        student, _ = strip_solutions(nb, name=str(path))
        nbformat.write(student, target)
        written.append(target)
    return written
