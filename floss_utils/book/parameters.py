"""A chapter's parameters: reading, typing and checking them — the one validator.

Every way into a chapter goes through :func:`validate` and :func:`resolve`:
``floss run`` and ``floss sweep`` (every grid point) before any kernel starts, and the
chapter's own first cell (:func:`floss_utils.book.chapters.configure`) inside the kernel. A
value is checked for its type, its allowed choices, its bounds (declared in the registry,
:class:`~floss_utils.book.registry.base.Param`) and, once every parameter has its value (the
override, else the scale's preset, else the default), the chapter's cross-parameter
constraints (:class:`~floss_utils.book.registry.base.Constraint`, e.g. "every number of heads
divides hidden"). Every problem is reported at once, in one :class:`ParameterError`.

Also here: parsing ``-p NAME VALUE`` strings (:func:`parse_value`), ``--grid NAME=V1,V2``
(:func:`parse_grid`), and reading a notebook's ``parameters`` cell (:func:`parameters_cell`,
:func:`describe`).
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import math
import numbers
import re
import tokenize
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .registry import Chapter, Param

__all__ = [
    "ParameterError",
    "report",
    "parse_value",
    "split_values",
    "parse_grid",
    "coerce",
    "check_names",
    "constraint_problems",
    "validate",
    "resolve",
    "check_device",
    "parameters_cell",
    "describe",
]


class ParameterError(ValueError):
    """An unknown, ill-typed, out-of-bounds or inconsistent chapter parameter (or a malformed
    ``-p``/``--grid`` value), refused before anything runs."""


def report(chapter: Chapter, problems: Sequence[str]) -> ParameterError:
    """One :class:`ParameterError` naming the chapter and listing ``problems``."""
    if len(problems) == 1:
        return ParameterError(f"{chapter.id}: {problems[0]}")
    return ParameterError(f"{chapter.id}: {len(problems)} problems:\n  " + "\n  ".join(problems))


# ------------------------------------------------------------------------ strings -> values


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False}


def parse_value(text: str, kind: str, name: str = "value") -> Any:
    """A ``-p NAME VALUE`` string as a Python value for a parameter of type ``kind``.

    Values are Python literals (``ast.literal_eval``: ``200``, ``0.5``, ``[1, 2.5]``,
    ``'cpu'``, ``None``); tuples become lists. Fallbacks: for ``str`` parameters any text is
    taken as the string itself (``-p device cpu``), for ``bool`` ``true``/``false``/``yes``/
    ``no`` in any case. ``None`` means "the default, or what the scale implies".
    The type itself is checked by :func:`coerce`.
    """
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if kind == "str":
            return text
        if kind == "bool" and stripped.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[stripped.lower()]
        hint = " (write lists in brackets, e.g. [1, 2])" if kind.startswith("list[") else ""
        raise ParameterError(f"parameter {name!r}: cannot read {text!r} as a {kind}{hint}") from None
    if kind == "str" and value is not None and not isinstance(value, str):
        return text  # -p output_tag 123 is the string "123"
    if isinstance(value, tuple):
        value = list(value)
    return value


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` on the commas outside brackets and quotes: ``[1,2],[3]`` -> 2 values."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    parts = [p.strip() for p in parts]
    if depth != 0 or quote or any(p == "" for p in parts):
        raise ParameterError(f"cannot split {text!r} into comma-separated values")
    return parts


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["NAME=V1,V2", ...]`` -> ``{NAME: ["V1", "V2"]}`` (values still strings), in order."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ParameterError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        if name in grid:
            raise ParameterError(f"--grid {name} given twice")
        grid[name] = split_values(values)
    return grid


# ------------------------------------------------------------------------ one value


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays -> Python numbers and lists (``.tolist()``)."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
        return value.tolist()
    return value


def _scalar(kind: str, v: Any) -> Any:
    """``v`` as a value of the scalar ``kind``, or a :class:`ParameterError` saying why not."""
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ParameterError(f"must be an int, got {type(v).__name__} {v!r}")
        return int(v)
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ParameterError(f"must be a number, got {type(v).__name__} {v!r}")
        if not math.isfinite(v):
            raise ParameterError(f"must be finite, got {v!r}")
        return float(v)
    if kind == "str":
        if not isinstance(v, str):
            raise ParameterError(f"must be a string, got {type(v).__name__} {v!r}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise ParameterError(f"must be True or False, got {v!r}")
        return v
    raise AssertionError(f"unknown parameter kind {kind}")


def coerce(chapter: Chapter, name: str, value: Any, *, text: bool = True) -> Any:
    """``value`` (a Python value, or with ``text`` a ``-p`` string) as parameter ``name`` of ``chapter``:
    typed (ints become floats for float parameters, tuples lists, numpy scalars Python ones),
    and checked against the parameter's choices and bounds. ``None`` passes through (it means
    "the default, or what the scale implies").

    Raises:
        ParameterError: one problem, naming the parameter.
    """
    p = chapter.params[name]
    where = f"parameter {name!r}"
    if text and isinstance(value, str) and p.kind != "str":
        value = parse_value(value, p.kind, name)
    if value is None:
        return None
    value = _plain(value)
    try:
        if p.kind.startswith("list["):
            inner = p.kind[5:-1]
            if not isinstance(value, (list, tuple)) or isinstance(value, str):
                raise ParameterError(f"must be a list of {inner}, got {type(value).__name__} {value!r}"
                                     f" (write a list in brackets, e.g. [{value!r}])")
            if len(value) == 0:
                raise ParameterError("must not be empty")
            out: Any = [_scalar(inner, v) for v in value]
            items = out
        else:
            out = _scalar(p.kind, value)
            items = [out]
    except ParameterError as exc:
        raise ParameterError(f"{where} {exc}") from None
    if p.choices and out not in p.choices:
        raise ParameterError(f"{where} must be one of {list(p.choices)}, got {out!r}")
    bad = [v for v in items if not p.within_bounds(v)]
    if bad:
        each = "every value " if p.kind.startswith("list[") else ""
        got = bad[0] if len(bad) == 1 else bad
        raise ParameterError(f"{where}: {each}must be {p.bounds_text()}, got {got!r}")
    return out


def check_names(chapter: Chapter, names: Iterable[str], reserved: Mapping[str, str] | None = None) -> list[str]:
    """Problems with parameter ``names``: unknown ones (with the closest known name) and
    ``reserved`` ones (``{name: what to do instead}``, e.g. ``output_dir`` for ``floss run``)."""
    problems = []
    for name in names:
        if reserved and name in reserved:
            problems.append(f"parameter {name!r} is set by the runner: {reserved[name]}")
        elif name not in chapter.params:
            close = difflib.get_close_matches(name, list(chapter.params), n=1)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; `floss params {chapter.id}` lists them")
    return problems


# ------------------------------------------------------------------------ the whole set


def resolve(chapter: Chapter, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every parameter for typed ``overrides``: the override, else the scale's
    preset, else the default (``None`` overrides count as not given)."""
    scale = overrides.get("scale") or chapter.params["scale"].default
    values = {}
    for name, p in chapter.params.items():
        v = overrides.get(name)
        values[name] = v if v is not None else (p.presets[scale] if p.presets else p.default)
    return values


def constraint_problems(chapter: Chapter, values: Mapping[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """The chapter's cross-parameter constraints that ``values`` (every parameter, resolved)
    break, each with the values it involves; constraints naming a parameter in ``skip`` (one
    whose given value was refused) are not judged."""
    skip = set(skip)
    problems = []
    for c in chapter.constraints:
        if skip & set(c.names):
            continue
        if not c.holds(values):
            shown = ", ".join(f"{n}={values[n]!r}" for n in c.names)
            problems.append(f"{c.text} (got {shown})")
    return problems


def validate(chapter: Chapter, overrides: Mapping[str, Any], *, text: bool = True,
             reserved: Mapping[str, str] | None = None, constraints: bool = True) -> dict[str, Any]:
    """Check every name and value of ``overrides`` and the chapter's constraints on the values
    they resolve to; return the typed overrides.

    ``overrides`` hold Python values or, with ``text``, ``-p`` strings (parsed with
    :func:`parse_value`; a notebook's values are never text); ``None`` means "not given". ``reserved`` names are refused with their message.
    ``constraints=False`` leaves the cross-parameter constraints to the caller (a sweep checks
    them per grid point, :func:`floss_utils.book.sweeps.expand_grid`).

    Raises:
        ParameterError: every problem at once — unknown names (with the closest known one),
            wrong types, values outside the allowed choices or bounds, broken constraints.
    """
    problems = check_names(chapter, overrides, reserved)
    typed: dict[str, Any] = {}
    bad = set()
    for name, raw in overrides.items():
        if name not in chapter.params or (reserved and name in reserved):
            continue
        try:
            typed[name] = coerce(chapter, name, raw, text=text)
        except ParameterError as exc:
            problems.append(str(exc))
            bad.add(name)
    if constraints:  # between well-typed values only: a rule naming a refused value is not judged
        problems += constraint_problems(chapter, resolve(chapter, typed), skip=bad)
    if problems:
        raise report(chapter, problems)
    return typed


def check_device(device: str | None, *, local: bool) -> None:
    """Refuse a device string torch cannot parse (and, for a local run, CUDA where there is none)."""
    if device is None or device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(f"parameter 'device': {device!r} is not a torch device ({exc})") from None
    if local and dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"parameter 'device': {device!r} requested but CUDA is not available here")


# ------------------------------------------------------------------------ the parameters cell


def parameters_cell(notebook: str | Path) -> dict[str, tuple[Any, str]]:
    """``{name: (default, comment)}`` from a notebook's cell tagged ``parameters``.

    The cell holds ``name = <literal>  # meaning`` lines (a test enforces it); a value that is
    not a literal is returned as its source text.
    """
    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
             and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{notebook}: expected one cell tagged 'parameters', found {len(cells)}")
    src = cells[0]["source"]
    source = "".join(src) if isinstance(src, list) else src
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    out: dict[str, tuple[Any, str]] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                value = ast.literal_eval(stmt.value)
            except ValueError:
                value = ast.get_source_segment(source, stmt.value)
            out[stmt.targets[0].id] = (value, comments.get(stmt.lineno, ""))
    return out


def describe(notebook: str | Path | None, chapter: Chapter) -> tuple[list[dict[str, Any]], list[str]]:
    """Every parameter of ``chapter`` (registry + the notebook's parameters cell) and any
    disagreement between the two; ``notebook=None`` (no checkout of the book): the registry
    alone, nothing compared.

    Returns ``(rows, problems)``: one row per parameter with ``name``, ``kind``, ``default``
    (``None`` for scale-implied ones), ``presets`` (per scale, or ``{}``), ``choices``,
    ``bounds`` (text, or ``""``) and ``meaning`` (the notebook's comment, else the registry's
    doc); ``problems`` lists names or defaults on which the notebook and the registry disagree.
    """
    compare = notebook is not None
    cell = parameters_cell(notebook) if compare else {}
    problems = []
    for name in cell:
        if name not in chapter.params:
            problems.append(f"{name!r} is in the notebook's parameters cell but not in the registry")
    rows = []
    for name, p in chapter.params.items():
        if name not in cell:
            if compare:
                problems.append(f"{name!r} is in the registry but not in the notebook's parameters cell")
            value, comment = (None, "")
        else:
            value, comment = cell[name]
            expected = None if p.presets else p.default
            if value != expected or type(value) is not type(expected):
                problems.append(f"{name!r}: notebook default {value!r} != registry {expected!r}")
        meaning = comment or p.doc
        if p.presets:
            meaning = re.sub(r"\s*\(None: from scale\)\s*$", "", meaning)
        rows.append({"name": name, "kind": p.kind, "default": None if p.presets else p.default,
                     "presets": dict(p.presets), "choices": list(p.choices),
                     "bounds": p.bounds_text() if p.bounds else "", "meaning": meaning})
    return rows, problems
