"""The building blocks of the chapter registry: a parameter, a chapter, the common parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

SCALES = ("smoke", "book", "paper")


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
    """

    kind: str
    doc: str
    presets: Mapping[str, Any] = field(default_factory=dict)
    default: Any = None
    choices: tuple = ()


def common_params(chapter_id: str) -> dict[str, Param]:
    """The parameters every chapter has: scale, seed, device, dtype, output_dir."""
    return {
        "scale": Param("str", "smoke (seconds) | book (committed outputs, minutes on 2 CPU cores) | paper (the sources' sizes)",
                       default="book", choices=SCALES),
        "seed": Param("int", "base random seed; every experiment derives its own from it", default=0),
        "device": Param("str", "'auto' (CUDA when present), 'cpu' or 'cuda'", default="auto"),
        "dtype": Param("str", "floating-point precision of the numerics", default="float64",
                       choices=("float32", "float64")),
        "output_dir": Param("str", "directory for results.json, tables and figures",
                            default=f"_output/{chapter_id}"),
    }


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book: its notebook, what it reproduces and its parameters."""

    id: str
    title: str
    reproduces: str
    minutes: Mapping[str, float]
    params: Mapping[str, Param]

    @property
    def notebook(self) -> str:
        return f"book/{self.id}.ipynb"


def chapter(id: str, title: str, reproduces: str, minutes: Mapping[str, float], **params: Param) -> Chapter:
    """A :class:`Chapter` with the common parameters followed by its own ``params``.

    ``minutes``: rough wall time per scale on a 2-core CPU (``paper``: on one GPU).
    A parameter implied by the scale has ``presets`` for all of smoke, book and paper.
    """
    return Chapter(id, title, reproduces, minutes, {**common_params(id), **params})
