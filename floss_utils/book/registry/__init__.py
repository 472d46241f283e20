"""The registry of the book's chapters: id, title, what each reproduces, its parameters.

One module per part of the book; each defines ``CHAPTERS``, a list of
:class:`~floss_utils.book.registry.base.Chapter` in reading order. The notebooks' parameters cells
mirror these entries (a test checks that they agree).
"""

from __future__ import annotations

from .base import SCALES, Chapter, Constraint, Param, at_most, chapter, common_params, less_than
from . import part1_foundations
from . import part2_curse_of_memory
from . import part3_flossing
from . import part4_synthesis
from . import tools

__all__ = ["CHAPTERS", "SCALES", "Chapter", "Constraint", "Param", "at_most", "chapter", "common_params", "less_than"]

#: every chapter of the book by id, in reading order (Parts I-IV, then the tools).
#:
#: :meta hide-value:
CHAPTERS: dict[str, Chapter] = {
    c.id: c
    for part in (part1_foundations, part2_curse_of_memory, part3_flossing, part4_synthesis, tools)
    for c in part.CHAPTERS
}
