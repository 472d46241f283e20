"""Run chapters with new parameters: validation, one run into a directory, sweeps of a grid.

The engine behind the ``floss`` command (:mod:`floss_utils.cli`), usable from Python too.

* :class:`Book` says where the notebooks are and which chapters exist (the registry by default;
  tests pass a tiny chapter of their own).
* :func:`parse_value`, :func:`validate` turn ``-p NAME VALUE`` strings into checked values,
  with the same type rules as :func:`floss_utils.chapters.configure` — before anything runs.
* :func:`run` executes one chapter through papermill into a directory: the executed notebook,
  ``results.json``, ``figures/*.png`` and ``run.json`` (parameters, scale, seed, package
  versions, git commit, device, timestamps, wall time, status, error).
* :func:`sweep` runs the cartesian product of a grid, one subdirectory per point, on local
  worker processes or on a Dask distributed cluster, skipping points already complete, and
  collects ``sweep.csv`` (one row per point) and ``failures.csv``.

Completeness is atomic: a run directory is complete exactly when its ``run.json`` says
``"status": "ok"``, and ``run.json`` is always written to a temporary file and renamed into
place, after every other output, so an interrupted run is never taken as done.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import difflib
import fcntl
import hashlib
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .registry import CHAPTERS, SCALES, Chapter, Param

__all__ = [
    "Book",
    "RunError",
    "ParameterError",
    "parse_value",
    "split_values",
    "parse_grid",
    "validate",
    "resolve",
    "point_name",
    "is_complete",
    "run",
    "sweep",
    "SweepResult",
    "collect",
    "package_versions",
    "git_commit",
    "rerun_command",
]

RUN_JSON = "run.json"
SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"
FAILURES_CSV = "failures.csv"
KERNEL = "python3"
VERSIONED_PACKAGES = ("floss_utils", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
                      "papermill", "nbclient", "ipykernel", "dask", "distributed")
# parameters the runner sets itself; everything else may be overridden with -p
_RESERVED = {"output_dir": "use --out DIR"}


class RunError(Exception):
    """Bad input to the runner (unknown chapter, refused output directory, bad grid...)."""


class ParameterError(RunError, ValueError):
    """An unknown or ill-typed parameter, refused before anything runs."""


# -------------------------------------------------------------------------------------- the book


def _find_root() -> Path:
    env = os.environ.get("FLOSS_BOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "_toc.yml").is_file() and (here / "book").is_dir():
        return here
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "_toc.yml").is_file() and (d / "book").is_dir():
            return d
    return here


@dataclass(frozen=True)
class Book:
    """Where the chapter notebooks live (``root/book/<id>.ipynb``) and their registry entries."""

    root: Path
    chapters: Mapping[str, Chapter] = field(default_factory=lambda: CHAPTERS)

    @classmethod
    def default(cls) -> "Book":
        """The checkout this package belongs to (or ``$FLOSS_BOOK_ROOT``, or one above the
        current directory) with the registry :data:`floss_utils.registry.CHAPTERS`."""
        return cls(_find_root(), CHAPTERS)

    def chapter(self, chapter_id: str) -> Chapter:
        """The registry entry of ``chapter_id``; unknown ids are refused with the closest one."""
        if chapter_id in self.chapters:
            return self.chapters[chapter_id]
        close = difflib.get_close_matches(chapter_id, list(self.chapters), n=1, cutoff=0.4)
        # also accept a unique prefix such as "01"
        prefixed = [c for c in self.chapters if c.startswith(chapter_id)]
        if len(prefixed) == 1 and chapter_id:
            return self.chapters[prefixed[0]]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(f"unknown chapter {chapter_id!r}{hint}; `floss list` shows them: "
                       f"{', '.join(self.chapters)}")

    def notebook(self, chapter: Chapter) -> Path:
        path = self.root / chapter.notebook
        if not path.is_file():
            raise RunError(f"chapter {chapter.id}: notebook {path} not found (is {self.root} a "
                           "checkout of the book? set FLOSS_BOOK_ROOT or run from inside one)")
        return path

    @property
    def cwd(self) -> Path:
        """Where chapters execute (``book/``, as in the tests and ``make execute``)."""
        return self.root / "book"


# ---------------------------------------------------------------------- the parameters cell


def parameters_cell(notebook: str | Path) -> dict[str, tuple[Any, str]]:
    """``{name: (default, comment)}`` from a notebook's cell tagged ``parameters``.

    The cell holds ``name = <literal>  # meaning`` lines (a test enforces it); a value that is
    not a literal is returned as its source text.
    """
    import io
    import tokenize

    nb = json.loads(Path(notebook).read_text())
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
             and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise RunError(f"{notebook}: expected one cell tagged 'parameters', found {len(cells)}")
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


def describe(book: Book, chapter: Chapter) -> tuple[list[dict[str, Any]], list[str]]:
    """Every parameter of ``chapter`` (registry + parameters cell) and any disagreement.

    Returns ``(rows, problems)``: one row per parameter with ``name``, ``kind``, ``default``
    (``None`` for scale-implied ones), ``presets`` (per scale, or ``{}``), ``choices`` and
    ``meaning`` (the notebook's comment, else the registry's doc); ``problems`` lists names or
    defaults on which the notebook and the registry disagree.
    """
    cell = parameters_cell(book.notebook(chapter))
    problems = []
    for name in cell:
        if name not in chapter.params:
            problems.append(f"{name!r} is in the notebook's parameters cell but not in the registry")
    rows = []
    for name, p in chapter.params.items():
        if name not in cell:
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
                     "presets": dict(p.presets), "choices": list(p.choices), "meaning": meaning})
    return rows, problems


# ------------------------------------------------------------------------------ values, validation


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False}


def parse_value(text: str, kind: str, name: str = "value") -> Any:
    """A ``-p NAME VALUE`` string as a Python value for a parameter of type ``kind``.

    Values are Python literals (``ast.literal_eval``: ``200``, ``0.5``, ``[1, 2.5]``,
    ``'cpu'``, ``None``); tuples become lists. Fallbacks: for ``str`` parameters any text is
    taken as the string itself (``-p device cpu``), for ``bool`` ``true``/``false``/``yes``/
    ``no`` in any case. ``None`` means "the default, or what the scale implies".
    The type itself is checked by :func:`validate`.
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
        raise RunError(f"cannot split {text!r} into comma-separated values")
    return parts


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["NAME=V1,V2", ...]`` -> ``{NAME: ["V1", "V2"]}`` (values still strings), in order."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise RunError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        if name in grid:
            raise RunError(f"--grid {name} given twice")
        grid[name] = split_values(values)
    return grid


def _check_names(chapter: Chapter, names: Iterable[str]) -> list[str]:
    problems = []
    for name in names:
        if name in _RESERVED:
            problems.append(f"parameter {name!r} is set by the runner: {_RESERVED[name]}")
        elif name not in chapter.params:
            close = difflib.get_close_matches(name, list(chapter.params), n=1)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; `floss params {chapter.id}` lists them")
    return problems


def _coerce(chapter: Chapter, name: str, raw: Any) -> Any:
    from .chapters import ParameterError as _CfgError, _coerce as _chapter_coerce

    p = chapter.params[name]
    value = parse_value(raw, p.kind, name) if isinstance(raw, str) else raw
    if value is None:
        return None
    try:
        return _chapter_coerce(chapter.id, name, p, value)
    except _CfgError as exc:
        msg = str(exc).removeprefix(f"{chapter.id}: ")
        if p.kind.startswith("list[") and not isinstance(value, list):
            msg += f" (write a list in brackets, e.g. [{value!r}])"
        raise ParameterError(msg) from None


def validate(chapter: Chapter, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check every name and value of ``overrides`` (strings are parsed with :func:`parse_value`).

    Returns the typed values (ints become floats for float parameters, tuples lists...);
    raises one :class:`ParameterError` listing every problem: an unknown name (with the
    closest known one), a wrong type (saying which), a value outside the allowed choices.
    """
    problems = _check_names(chapter, overrides)
    out: dict[str, Any] = {}
    for name, raw in overrides.items():
        if name not in chapter.params or name in _RESERVED:
            continue
        try:
            out[name] = _coerce(chapter, name, raw)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise ParameterError(f"{chapter.id}: " + "; ".join(problems) if len(problems) == 1 else
                             f"{chapter.id}: {len(problems)} problems:\n  " + "\n  ".join(problems))
    return out


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


def resolve(chapter: Chapter, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every parameter for validated ``overrides``: the override, else the scale's
    preset, else the default (what :func:`~floss_utils.chapters.configure` will compute)."""
    scale = overrides.get("scale") or chapter.params["scale"].default
    values = {}
    for name, p in chapter.params.items():
        v = overrides.get(name)
        values[name] = v if v is not None else (p.presets[scale] if p.presets else p.default)
    return values


# ------------------------------------------------------------------------------ run records


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (``None`` when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"commit": sha, "dirty": None if status is None else bool(status)}


def is_complete(directory: str | Path, overrides: Mapping[str, Any] | None = None) -> bool:
    """Whether ``directory`` holds a finished, successful run (``run.json`` status ``ok``),
    with exactly ``overrides`` if given."""
    rec = _read_json(Path(directory) / RUN_JSON)
    if not rec or rec.get("status") != "ok":
        return False
    return overrides is None or rec.get("overrides") == json.loads(json.dumps(dict(overrides)))


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def make_task(book: Book, chapter: Chapter, overrides: Mapping[str, Any], out: Path,
              point: str | None = None) -> dict[str, Any]:
    """Everything a worker needs to run one chapter (plain JSON: it travels to Dask workers)."""
    return {
        "chapter": chapter.id,
        "title": chapter.title,
        "notebook": str(book.notebook(chapter).resolve()),
        "cwd": str(book.cwd.resolve()),
        "root": str(book.root.resolve()),
        "out": str(Path(out).resolve()),
        "overrides": dict(overrides),
        "parameters": resolve(chapter, overrides),
        "point": point,
        "command": rerun_command(chapter.id, overrides, out),
    }


def rerun_command(chapter_id: str, overrides: Mapping[str, Any], out: str | Path) -> str:
    """The ``floss run`` command line that repeats a run with ``overrides`` into ``out``."""
    import shlex

    args = ["floss", "run", chapter_id]
    for name, value in overrides.items():
        if name == "scale":
            args += ["--scale", str(value)]
        elif name == "device":
            args += ["--device", str(value)]
        else:
            args += ["-p", name, value if isinstance(value, str) else repr(value)]
    return shlex.join([*args, "--out", str(out)])


def execute(task: Mapping[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Execute one chapter as described by ``task`` (see :func:`make_task`) and record it.

    Writes ``run.json`` with status ``running`` first, then runs papermill (cwd = ``book/``)
    into ``<out>/<chapter>.ipynb`` with ``output_dir = <out>``, then rewrites ``run.json``
    with status ``ok`` or ``failed`` (and the failing cell's error) — last, atomically.
    ``KeyboardInterrupt`` records status ``interrupted`` and propagates.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = Path(task["out"])
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "chapter": task["chapter"],
        "title": task.get("title"),
        "status": "running",
        "error": None,
        "point": task.get("point"),
        "overrides": task["overrides"],
        "parameters": task["parameters"],
        "scale": task["parameters"].get("scale"),
        "seed": task["parameters"].get("seed"),
        "device": None,
        "device_requested": task["parameters"].get("device"),
        "command": task.get("command"),
        "notebook": Path(task["notebook"]).name,
        "versions": package_versions(),
        "git": git_commit(Path(task["root"])),
        "host": platform.node(),
        "worker": task.get("worker"),
        "started": _now(),
        "finished": None,
        "wall_s": None,
        "outputs": {},
    }
    _write_json_atomic(out / RUN_JSON, record)
    start = time.perf_counter()
    executed = out / Path(task["notebook"]).name
    try:
        papermill.execute_notebook(
            task["notebook"], str(executed),
            parameters={**task["overrides"], "output_dir": str(out)},
            kernel_name=KERNEL, cwd=task["cwd"], progress_bar=progress, log_output=False,
        )
        record["status"] = "ok"
    except PapermillExecutionError as exc:
        record["status"] = "failed"
        record["error"] = f"cell {exc.exec_count}: {exc.ename}: {_strip_ansi(str(exc.evalue))}"
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        record["error"] = "interrupted"
        raise
    except Exception as exc:  # kernel died, notebook unreadable...
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {_strip_ansi(str(exc))}"
    finally:
        record["wall_s"] = round(time.perf_counter() - start, 3)
        record["finished"] = _now()
        results = _read_json(out / "results.json")
        if results:
            record["parameters"] = results.get("parameters", record["parameters"])
            record["device"] = results.get("device")
        if record["status"] == "ok" and not results:
            record["status"] = "failed"
            record["error"] = "the chapter ran but wrote no results.json into output_dir"
        record["outputs"] = {
            "notebook": executed.name if executed.exists() else None,
            "results": "results.json" if results else None,
            "figures": sorted(p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png")),
        }
        _write_json_atomic(out / RUN_JSON, record)  # last: marks the run complete (or not)
    return record


# ------------------------------------------------------------------------------ directories


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def prepare_run_dir(directory: Path, chapter_id: str) -> None:
    """Accept ``directory`` for a single run of ``chapter_id``: new, empty, or an earlier run of
    the same chapter (replaced). Anything else is refused, never overwritten."""
    if directory.exists() and not directory.is_dir():
        raise RunError(f"--out {directory}: exists and is not a directory")
    entries = _entries(directory)
    if not entries:
        return
    if SWEEP_JSON in entries:
        owner = (_read_json(directory / SWEEP_JSON) or {}).get("chapter")
        raise RunError(f"--out {directory}: holds a sweep of {owner}; refusing to run into it "
                       "(choose another directory)")
    rec = _read_json(directory / RUN_JSON)
    if rec is None:
        raise RunError(f"--out {directory}: not empty and not a floss run directory "
                       f"({len(entries)} entries); refusing to overwrite it")
    if rec.get("chapter") != chapter_id:
        raise RunError(f"--out {directory}: holds a run of {rec.get('chapter')}, not {chapter_id}; "
                       "refusing to overwrite it (choose another directory)")
    _clear(directory)


def _clear(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# ------------------------------------------------------------------------------ single run


def run(book: Book, chapter_id: str, overrides: Mapping[str, Any], out: str | Path,
        *, progress: bool = True) -> dict[str, Any]:
    """Validate ``overrides``, then execute the chapter into ``out``; returns the run record.

    Raises :class:`ParameterError`/:class:`RunError` before anything runs on bad input.
    The record's ``status`` is ``ok`` or ``failed`` (with ``error``).
    """
    chapter = book.chapter(chapter_id)
    values = validate(chapter, overrides)
    check_device(values.get("device"), local=True)
    out = Path(out)
    prepare_run_dir(out, chapter.id)
    return execute(make_task(book, chapter, values, out), progress=progress)


# ------------------------------------------------------------------------------ sweeps


_SAFE = re.compile(r"^[A-Za-z0-9._+-]+$")


def _render(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return ",".join(_render(v) for v in value)
    return str(value)


def point_name(values: Mapping[str, Any]) -> str:
    """A readable, filesystem-safe directory name for a grid point: ``gain=0.5__seed=1``.

    Values that do not render safely (strings with odd characters, long lists) get a short
    hash of the exact values appended, so names stay unique.
    """
    parts, lossy = [], False
    for name, value in values.items():
        text = _render(value)
        if not _SAFE.match(text.replace(",", "")):
            text, lossy = re.sub(r"[^A-Za-z0-9._+,-]+", "-", text).strip("-") or "x", True
        parts.append(f"{name}={text}")
    name = "__".join(parts)
    if len(name) > 100:
        name, lossy = name[:100], True
    if lossy:
        digest = hashlib.sha1(json.dumps(dict(values), sort_keys=True).encode()).hexdigest()[:8]
        name = f"{name}__{digest}"
    return name


@dataclass
class SweepResult:
    """What :func:`sweep` did: its directory, points, statuses and the collected tables."""

    directory: Path
    points: list[dict[str, Any]]
    table: Path | None = None
    failures: Path | None = None
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(p["status"] == status for p in self.points)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(p["status"] == "ok" for p in self.points)


@contextlib.contextmanager
def _point_lock(lock_path: Path, on_wait: Callable[[], None] | None = None):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)  # another process is running this point: wait
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cancel_check(cancel: Callable[[], bool] | str | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if callable(cancel):
        return cancel
    from distributed import Event  # a Dask cluster-wide event, set by the driver on Ctrl-C

    event, last = Event(cancel), [0.0, False]

    def check() -> bool:
        now = time.monotonic()
        if now - last[0] > 1.0:
            last[0] = now
            try:
                last[1] = event.is_set()
            except Exception:  # scheduler gone: the driver is gone too
                last[1] = True
        return last[1]

    return check


def _dask_worker() -> str | None:
    """The address of the Dask worker running the current task, if any."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:  # not inside a Dask task
        return None


def run_point(task: Mapping[str, Any], cancel: Callable[[], bool] | str | None = None) -> dict[str, Any]:
    """Run one sweep point in a child process, unless it is already complete.

    Holds an exclusive lock on the point while it works (a point still running elsewhere is
    waited for, never run twice at once), clears any half-written leftovers, and runs
    ``python -m floss_utils.runner`` on the task. ``cancel`` (a callable, or the name of a
    Dask ``Event``) stops the child; the point is then recorded ``interrupted``.
    Returns ``{"point", "status", "error", "skipped", "wall_s"}``.
    """
    out = Path(task["out"])
    lock = out.parent / ".locks" / f"{out.name}.lock"
    should_stop = _cancel_check(cancel)
    with _point_lock(lock):
        if is_complete(out, task["overrides"]):
            rec = _read_json(out / RUN_JSON) or {}
            return {"point": task["point"], "status": "ok", "error": None, "skipped": True,
                    "wall_s": rec.get("wall_s")}
        if should_stop():
            return {"point": task["point"], "status": "interrupted", "error": "not run (sweep interrupted)",
                    "skipped": False, "wall_s": None}
        if out.exists():
            _clear(out)
        out.mkdir(parents=True, exist_ok=True)
        task = {**task, "worker": _dask_worker()}
        env = {**os.environ, "TQDM_DISABLE": os.environ.get("TQDM_DISABLE", "1")}
        start = time.perf_counter()
        with open(out / "run.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "floss_utils.runner"], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=task["cwd"])
            proc.stdin.write(json.dumps(dict(task)).encode())
            proc.stdin.close()
            stopped = False
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if not stopped and should_stop():
                        stopped = True
                        proc.send_signal(signal.SIGINT)  # papermill shuts its kernel down
                        try:
                            proc.wait(timeout=15)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        break
        wall = round(time.perf_counter() - start, 3)
        rec = _read_json(out / RUN_JSON) or {"chapter": task["chapter"], "overrides": task["overrides"],
                                             "parameters": task["parameters"], "point": task["point"]}
        if stopped or rec.get("status") == "interrupted":
            status, error = "interrupted", "interrupted"
        elif rec.get("status") in ("ok", "failed"):
            status, error = rec["status"], rec.get("error")
        else:  # the child died without recording an outcome
            tail = _strip_ansi((out / "run.log").read_text(errors="replace"))[-800:].strip()
            status, error = "failed", f"the run's process exited with code {proc.returncode}: {tail}"
        if rec.get("status") != status:
            rec.update(status=status, error=error, finished=_now(), wall_s=wall)
            _write_json_atomic(out / RUN_JSON, rec)
        return {"point": task["point"], "status": status, "error": error, "skipped": False, "wall_s": wall}


def prepare_sweep_dir(directory: Path, chapter_id: str, fixed: Mapping[str, Any]) -> None:
    """Accept ``directory`` for a sweep of ``chapter_id`` with ``fixed`` overrides: new, empty or
    the same sweep (resumed; its grid may grow). Anything else is refused, never overwritten."""
    if directory.exists() and not directory.is_dir():
        raise RunError(f"--out {directory}: exists and is not a directory")
    entries = _entries(directory)
    if not entries:
        return
    if RUN_JSON in entries:
        rec = _read_json(directory / RUN_JSON) or {}
        raise RunError(f"--out {directory}: holds a single run of {rec.get('chapter')}; refusing to "
                       "sweep into it (choose another directory)")
    meta = _read_json(directory / SWEEP_JSON)
    if meta is None:
        raise RunError(f"--out {directory}: not empty and not a floss sweep directory "
                       f"({len(entries)} entries); refusing to overwrite it")
    if meta.get("chapter") != chapter_id:
        raise RunError(f"--out {directory}: holds a sweep of {meta.get('chapter')}, not {chapter_id}; "
                       "refusing to overwrite it (choose another directory)")
    if meta.get("fixed") != json.loads(json.dumps(dict(fixed))):
        raise RunError(f"--out {directory}: holds a sweep of {chapter_id} with other fixed settings "
                       f"{meta.get('fixed')} (this one: {dict(fixed)}); choose another directory")


def expand_grid(chapter: Chapter, grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Validate every grid value and return the cartesian product, one dict per point."""
    if not grid:
        raise RunError("a sweep needs at least one --grid NAME=V1,V2,...")
    problems = _check_names(chapter, grid)
    typed: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if name not in chapter.params or name in _RESERVED:
            continue
        typed[name] = []
        for raw in values:
            try:
                typed[name].append(_coerce(chapter, name, raw))
            except ParameterError as exc:
                problems.append(str(exc))
        rendered = [json.dumps(v) for v in typed[name]]
        dupes = sorted({r for r in rendered if rendered.count(r) > 1})
        if dupes:
            problems.append(f"--grid {name}: repeated value(s) {', '.join(dupes)}")
    if problems:
        raise ParameterError(f"{chapter.id}: " + "; ".join(problems) if len(problems) == 1 else
                             f"{chapter.id}: {len(problems)} problems:\n  " + "\n  ".join(problems))
    names = list(typed)
    return [dict(zip(names, combo)) for combo in itertools.product(*(typed[n] for n in names))]


def _unique(values: Sequence[Any]) -> list[Any]:
    seen, out = set(), []
    for v in values:
        key = json.dumps(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


MAX_LIST = 16


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Scalars of a results tree as ``{"a.b": v}``; a short list of scalars (at most
    :data:`MAX_LIST`) gives one column per element (``"rate.0"``, ``"rate.1"``...); longer or
    nested lists stay in each point's ``results.json``."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    elif (isinstance(value, list) and len(value) <= MAX_LIST
          and all(v is None or isinstance(v, (bool, int, float, str)) for v in value)):
        for i, v in enumerate(value):
            out[f"{prefix}.{i}"] = v


def collect(directory: str | Path, points: Sequence[Mapping[str, Any]], grid_names: Sequence[str]) -> tuple[Path, Path | None]:
    """Write ``sweep.csv`` (one row per point: point, status, the grid values, wall_s, every
    scalar of ``results.json`` flattened with dots, error) and ``failures.csv`` (or remove a
    stale one). Returns their paths (``None`` when nothing failed)."""
    import pandas as pd

    directory = Path(directory)
    rows, failures = [], []
    for p in points:
        rec = _read_json(directory / p["point"] / RUN_JSON) or {}
        row: dict[str, Any] = {"point": p["point"], "status": p["status"]}
        for name in grid_names:
            v = p["values"][name]
            row[name] = json.dumps(v) if isinstance(v, list) else v
        row["wall_s"] = rec.get("wall_s")
        results = _read_json(directory / p["point"] / "results.json") if p["status"] == "ok" else None
        if results:
            flat: dict[str, Any] = {}
            _flatten("", results.get("results", {}), flat)
            row.update({k: v for k, v in flat.items() if k not in row})
        row["error"] = p.get("error")
        rows.append(row)
        if p["status"] != "ok":
            failures.append({"point": p["point"], "status": p["status"],
                             **{n: row[n] for n in grid_names}, "error": p.get("error")})
    table = directory / SWEEP_CSV
    tmp = directory / f".{SWEEP_CSV}.tmp"
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in frame.columns if c != "error"] + ["error"]]  # the error last
    frame.to_csv(tmp, index=False)
    os.replace(tmp, table)
    fail_path = directory / FAILURES_CSV
    if failures:
        pd.DataFrame(failures).to_csv(fail_path, index=False)
        return table, fail_path
    fail_path.unlink(missing_ok=True)
    return table, None


def sweep(book: Book, chapter_id: str, grid: Mapping[str, Sequence[Any]], out: str | Path, *,
          fixed: Mapping[str, Any] | None = None, workers: int = 2, scheduler: str | None = None,
          progress: bool = True, on_point: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    """Run ``chapter_id`` at every point of the cartesian product of ``grid``.

    ``grid``: ``{name: [values]}`` (strings are parsed like ``-p`` values); ``fixed``: overrides
    shared by every point (``scale``, ``device``...). Every name and value is validated before
    anything runs. Each point runs in ``out/<point_name>/`` (a complete :func:`run` directory);
    points already complete are skipped, failed or interrupted ones are run again. Runs on
    ``workers`` local processes, or on the Dask cluster at ``scheduler`` (every worker needs
    this environment and ``out`` on a shared filesystem). Ctrl-C stops the running points
    (recorded ``interrupted``; rerun the same sweep to resume).
    """
    chapter = book.chapter(chapter_id)
    fixed_values = validate(chapter, dict(fixed or {}))
    overlap = sorted(set(fixed_values) & set(grid))
    if overlap:
        raise ParameterError(f"{chapter.id}: {', '.join(overlap)} both fixed (-p) and swept (--grid)")
    points = expand_grid(chapter, grid)
    check_device(fixed_values.get("device"), local=scheduler is None)
    if workers < 1:
        raise RunError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    prepare_sweep_dir(out, chapter.id, fixed_values)
    client = _connect(scheduler) if scheduler else None  # before writing anything
    try:
        return _run_sweep(book, chapter, grid, points, fixed_values, out, workers, client, progress, on_point)
    finally:
        if client is not None:
            client.close()


def _run_sweep(book, chapter, grid, points, fixed_values, out, workers, client, progress, on_point) -> SweepResult:
    names = [point_name(v) for v in points]
    if len(set(names)) != len(names):  # cannot happen with distinct values; kept as a guard
        names = [f"{n}__{i}" for i, n in enumerate(names)]
    out.mkdir(parents=True, exist_ok=True)
    meta = _read_json(out / SWEEP_JSON) or {"chapter": chapter.id, "kind": "sweep", "fixed": fixed_values,
                                            "created": _now()}
    meta["updated"] = _now()
    meta["grid"] = {k: _unique([p[k] for p in points]) for k in grid}
    meta["points"] = sorted(set(meta.get("points", [])) | set(names))
    _write_json_atomic(out / SWEEP_JSON, meta)

    tasks = [make_task(book, chapter, {**fixed_values, **values}, out / name, point=name)
             for values, name in zip(points, names)]
    by_name = {t["point"]: v for t, v in zip(tasks, points)}
    results: dict[str, dict[str, Any]] = {}
    interrupted = False

    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=f"sweep {chapter.id}", unit="point", disable=None if progress else True,
               file=sys.stderr)

    def done(res: dict[str, Any]) -> None:
        results[res["point"]] = res
        bar.update(1)
        bar.set_postfix(ok=sum(r["status"] == "ok" for r in results.values()),
                        failed=sum(r["status"] == "failed" for r in results.values()), refresh=False)
        if on_point:
            on_point(res)

    try:
        if client is not None:
            interrupted = _sweep_dask(tasks, client, done)
        else:
            interrupted = _sweep_local(tasks, workers, done)
    finally:
        bar.close()
    records = []
    for t in tasks:
        r = results.get(t["point"]) or {"point": t["point"], "status": "interrupted" if interrupted else "failed",
                                         "error": "not run (sweep interrupted)" if interrupted else "no result",
                                         "skipped": False}
        records.append({**r, "values": by_name[t["point"]]})
    table, failures = collect(out, records, list(grid))
    return SweepResult(out, records, table, failures, interrupted)


def _sweep_local(tasks: list[dict[str, Any]], workers: int, done: Callable[[dict[str, Any]], None]) -> bool:
    """Run the tasks on ``workers`` threads, each waiting on a child process; True if interrupted."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floss-point")
    futures = {pool.submit(run_point, t, stop.is_set): t for t in tasks}
    delivered: set[str] = set()

    def deliver(fut) -> None:
        point = futures[fut]["point"]
        try:
            res = fut.result()
        except Exception as exc:  # a bug in the runner itself, not in the chapter
            res = {"point": point, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "skipped": False}
        delivered.add(point)
        done(res)

    try:
        for fut in as_completed(futures):
            deliver(fut)
    except KeyboardInterrupt:
        stop.set()  # running points stop their child processes; queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in futures:
            if fut.done() and not fut.cancelled() and futures[fut]["point"] not in delivered:
                deliver(fut)
        return True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return False


def _connect(scheduler: str):
    """A Dask client of the scheduler at ``scheduler`` (timeout: ``distributed.comm.timeouts.connect``)."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is in requirements.txt
        raise RunError("--scheduler needs Dask distributed: pip install dask distributed") from exc
    try:
        return Client(scheduler)
    except (OSError, TimeoutError, ValueError) as exc:
        raise RunError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None


def _sweep_dask(tasks: list[dict[str, Any]], client, done: Callable[[dict[str, Any]], None]) -> bool:
    """Run the tasks on the Dask cluster of ``client``; True if interrupted."""
    from distributed import Event, as_completed

    cancel = f"floss-cancel-{uuid.uuid4().hex}"
    event = Event(cancel, client=client)
    futures = {client.submit(run_point, t, cancel, key=f"floss-{t['point']}-{uuid.uuid4().hex[:8]}",
                             pure=False): t for t in tasks}

    def deliver(fut) -> None:
        try:
            done(fut.result())
        except Exception as exc:  # a bug in the runner or a lost worker, not the chapter
            done({"point": futures[fut]["point"], "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "skipped": False})

    delivered = set()
    try:
        for fut in as_completed(futures):
            delivered.add(fut)
            deliver(fut)
    except KeyboardInterrupt:
        event.set()  # running points stop their child processes, queued ones return at once
        try:
            for fut in as_completed([f for f in futures if f not in delivered], timeout=30):
                if fut.status == "finished":
                    deliver(fut)
        except Exception:  # timeout or cancelled futures: what is on disk is what counts
            pass
        client.cancel(list(futures))
        return True
    return False


def _child_main() -> int:
    """``python -m floss_utils.runner``: execute the task read from stdin (one sweep point)."""
    task = json.loads(sys.stdin.read())
    try:
        record = execute(task)
    except KeyboardInterrupt:
        return 130
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(_child_main())
