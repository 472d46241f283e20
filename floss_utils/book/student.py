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

import re
from pathlib import Path
from typing import Iterable

import nbformat

__all__ = ["strip_solutions", "write_student_edition", "SolutionMarkupError"]

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
