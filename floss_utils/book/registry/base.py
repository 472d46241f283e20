"""The building blocks of the chapter registry: a parameter (with its bounds), a cross-parameter
constraint, a chapter, and the parameters every chapter has."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

#: the run scales of every chapter, smallest first (the ``scale`` parameter).
SCALES = ("smoke", "book", "paper")

_INTERVAL = re.compile(r"^\s*([\[(])\s*(-inf|[-+0-9.e]+)\s*,\s*(inf|[-+0-9.e]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Param:
    """One chapter parameter.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"list[int]"`` or ``"list[float]"``.
        doc: one-line meaning (units included).
        presets: value per scale, for parameters implied by ``scale`` (default ``None`` in the
            notebook); empty for parameters with a fixed default.
        default: the notebook default for parameters not implied by the scale.
        choices: allowed values, if restricted.
        bounds: the interval every value (each element, for lists) must lie in, in interval
            notation: ``"[1, inf)"`` (at least 1), ``"(0, inf)"`` (positive), ``"[0, 1)"``;
            empty for no bounds. Checked by :func:`floss_utils.book.parameters.coerce`.
    """

    kind: str
    doc: str
    presets: Mapping[str, Any] = field(default_factory=dict)
    default: Any = None
    choices: tuple = ()
    bounds: str = ""

    def __post_init__(self) -> None:
        if self.bounds:
            self._interval()  # refuse a malformed interval when the registry is built

    def _interval(self) -> tuple[float, float, bool, bool]:
        m = _INTERVAL.match(self.bounds)
        if not m:
            raise ValueError(f"bounds {self.bounds!r}: write an interval such as '[0, 1)' or '(0, inf)'")
        lo, hi = float(m.group(2)), float(m.group(3))
        if lo > hi:
            raise ValueError(f"bounds {self.bounds!r}: empty interval")
        return lo, hi, m.group(1) == "[", m.group(4) == "]"

    def within_bounds(self, value: float) -> bool:
        """Whether one (scalar) value lies in :attr:`bounds` (always, without bounds)."""
        if not self.bounds or not isinstance(value, (int, float)):
            return True
        lo, hi, lo_closed, hi_closed = self._interval()
        above = value >= lo if lo_closed else value > lo
        below = value <= hi if hi_closed else value < hi
        return above and below

    def bounds_text(self) -> str:
        """:attr:`bounds` in words for messages: ``>= 1``, ``> 0``, ``in [0, 1)``."""
        lo, hi, lo_closed, hi_closed = self._interval()
        fmt = (lambda x: f"{int(x)}" if x == int(x) else f"{x:g}")
        if math.isinf(hi) and not math.isinf(lo):
            return (">= " if lo_closed else "> ") + fmt(lo)
        if math.isinf(lo) and not math.isinf(hi):
            return ("<= " if hi_closed else "< ") + fmt(hi)
        return f"in {self.bounds.strip()}"


@dataclass(frozen=True)
class Constraint:
    """A rule between parameters, checked once every parameter has its value.

    Attributes:
        text: the rule in words, shown when it is broken (``"every number of heads divides hidden"``).
        names: the parameters it involves (their values are shown with the message).
        holds: ``values -> bool`` on the chapter's resolved values.
    """

    text: str
    names: Sequence[str]
    holds: Callable[[Mapping[str, Any]], bool]


def common_params(chapter_id: str) -> dict[str, Param]:
    """The parameters every chapter has: scale, seed, device, dtype, output_dir."""
    return {
        "scale": Param("str", "smoke (seconds) | book (committed outputs, minutes on 2 CPU cores) | paper (the papers' configuration where they give one, else the book's largest; see floss params)",
                       default="book", choices=SCALES),
        "seed": Param("int", "base random seed; every experiment derives its own from it", default=0,
                      bounds="[0, inf)"),
        "device": Param("str", "'auto' (CUDA when present), 'cpu' or 'cuda'", default="auto"),
        "dtype": Param("str", "floating-point precision of the numerics", default="float64",
                       choices=("float32", "float64")),
        "output_dir": Param("str", "directory for results.json, tables and figures",
                            default=f"_output/{chapter_id}"),
    }


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book: its notebook, what it reproduces, its parameters and the rules
    between them."""

    id: str
    title: str
    reproduces: str
    minutes: Mapping[str, float]
    params: Mapping[str, Param]
    constraints: Sequence[Constraint] = ()

    @property
    def notebook(self) -> str:
        return f"book/{self.id}.ipynb"


def chapter(id: str, title: str, reproduces: str, minutes: Mapping[str, float], *,
            constraints: Sequence[Constraint] = (), **params: Param) -> Chapter:
    """A :class:`Chapter` with the common parameters followed by its own ``params``.

    ``minutes``: rough wall time per scale on a 2-core CPU (``paper``: on one GPU).
    A parameter implied by the scale has ``presets`` for all of smoke, book and paper, and
    every preset lies within the parameter's bounds and satisfies the constraints (a test
    checks it).
    """
    return Chapter(id, title, reproduces, minutes, {**common_params(id), **params}, tuple(constraints))


# ---- helpers for common constraints


def at_most(small: str, large: str, *, each: bool = False) -> Constraint:
    """``small <= large`` (``each``: every element of the list ``small``)."""
    if each:
        return Constraint(f"every value of {small} is at most {large}", (small, large),
                          lambda v: all(x <= v[large] for x in v[small]))
    return Constraint(f"{small} is at most {large}", (small, large), lambda v: v[small] <= v[large])


def less_than(small: str, large: str, *, each: bool = False) -> Constraint:
    """``small < large`` (``each``: every element of the list ``small``)."""
    if each:
        return Constraint(f"every value of {small} is less than {large}", (small, large),
                          lambda v: all(x < v[large] for x in v[small]))
    return Constraint(f"{small} is less than {large}", (small, large), lambda v: v[small] < v[large])
