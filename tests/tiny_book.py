"""A tiny test-only chapter (tests/fixtures/tiny/book/tiny.ipynb) for the ``floss`` runner tests.

Its notebook imports no torch and runs in about a second; it squares ``x``, fails when
``x == fail_at``, and when ``x == hold_at`` writes a half-finished ``results.json`` and waits
while ``hold_file`` exists (so a test can interrupt it mid-run).
"""

from __future__ import annotations

from pathlib import Path

from floss_utils.book.registry import Param, chapter
from floss_utils.book.runs import Book

TINY_ROOT = Path(__file__).resolve().parent / "fixtures" / "tiny"

TINY = chapter(
    "tiny",
    "A tiny test chapter",
    "nothing (a test fixture)",
    {"smoke": 0.01, "book": 0.01, "paper": 0.01},
    x=Param("float", "the input value", {"smoke": 1.0, "book": 2.0, "paper": 3.0}),
    fail_at=Param("float", "raise an error when x equals this", default=-1.0),
    hold_at=Param("float", "when x equals this, wait while hold_file exists (after writing partial outputs)",
                  default=-1.0),
    hold_file=Param("str", "path of the hold file", default=""),
)

BOOK = Book(root=TINY_ROOT, chapters={TINY.id: TINY})
