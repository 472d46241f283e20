"""One run of a chapter: where the book is, the run directory and its record.

The engine behind ``floss run`` (:mod:`floss_utils.book.cli`), usable from Python too.

* :class:`Book` says where the notebooks are and which chapters exist (the registry by default;
  tests pass a tiny chapter of their own).
* :func:`run` validates the parameters (:func:`floss_utils.book.parameters.validate`, before
  anything runs), then executes one chapter through papermill into a directory: the executed
  notebook, ``results.json``, ``figures/*.png`` and ``run.json`` (parameters, scale, seed,
  package versions, git commit, device, timestamps, wall time, status, error).
* :func:`execute` is the recording part alone (what a sweep's worker process calls:
  ``python -m floss_utils.book.runs`` reads one task on stdin).

Completeness is atomic: a run directory is complete exactly when its ``run.json`` says
``"status": "ok"``, and ``run.json`` is always written to a temporary file and renamed into
place, after every other output, so an interrupted run is never taken as done.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from .parameters import check_device, resolve, validate
from .registry import CHAPTERS, Chapter

__all__ = [
    "Book",
    "RunError",
    "RESERVED",
    "run",
    "execute",
    "make_task",
    "is_complete",
    "prepare_run_dir",
    "package_versions",
    "git_commit",
    "rerun_command",
]

RUN_JSON = "run.json"
SWEEP_JSON = "sweep.json"
KERNEL = "python3"
VERSIONED_PACKAGES = ("floss_utils", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
                      "papermill", "nbclient", "ipykernel", "dask", "distributed")
#: parameters the runner sets itself; everything else may be overridden with -p
RESERVED = {"output_dir": "use --out DIR"}


class RunError(Exception):
    """Bad input to the runner other than a parameter (unknown chapter, refused output
    directory, bad grid...), refused before anything runs."""


# -------------------------------------------------------------------------------------- the book


#: what `floss run`/`sweep`/`build` say when no checkout of the book is found
NO_CHECKOUT = ("needs a checkout of the book (the folder with _toc.yml and book/): run inside one "
               "or set FLOSS_BOOK_ROOT to one; the installed package alone can only `floss list` "
               "and `floss params`")


def _is_book(d: Path) -> bool:
    return (d / "_toc.yml").is_file() and (d / "book").is_dir()


def _find_root() -> Path | None:
    """``$FLOSS_BOOK_ROOT``, else the checkout holding this package (an editable install), else
    the nearest checkout at or above the current directory; ``None`` when there is none (a
    package installed with ``pip install .``, run outside a checkout)."""
    env = os.environ.get("FLOSS_BOOK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]  # <root>/floss_utils/book/runs.py
    for d in (here, Path.cwd(), *Path.cwd().parents):
        if _is_book(d):
            return d
    return None


@dataclass(frozen=True)
class Book:
    """Where the chapter notebooks live (``root/book/<id>.ipynb``) and their registry entries.

    ``root`` is ``None`` when no checkout of the book was found: the registry still lists the
    chapters and their parameters, but nothing can run (:meth:`notebook` raises)."""

    root: Path | None
    chapters: Mapping[str, Chapter] = field(default_factory=lambda: CHAPTERS)

    @classmethod
    def default(cls) -> "Book":
        """The checkout this package belongs to (or ``$FLOSS_BOOK_ROOT``, or one above the
        current directory; ``None`` if none) with the registry
        :data:`floss_utils.book.registry.CHAPTERS`."""
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

    def checkout(self) -> Path:
        """``root``, or :class:`RunError` (one line: :data:`NO_CHECKOUT`) when there is none."""
        if self.root is None:
            raise RunError(NO_CHECKOUT)
        return self.root

    def notebook(self, chapter: Chapter) -> Path:
        path = self.checkout() / chapter.notebook
        if not path.is_file():
            raise RunError(f"chapter {chapter.id}: notebook {path} not found (is {self.root} a "
                           "checkout of the book? set FLOSS_BOOK_ROOT or run from inside one)")
        return path

    @property
    def cwd(self) -> Path:
        """Where chapters execute (``book/``, as in the tests and ``make execute``)."""
        return self.checkout() / "book"


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
    values = validate(chapter, overrides, reserved=RESERVED)
    check_device(values.get("device"), local=True)
    book.notebook(chapter)  # no checkout, no notebook: refused before `out` is touched
    out = Path(out)
    prepare_run_dir(out, chapter.id)
    return execute(make_task(book, chapter, values, out), progress=progress)


def _child_main() -> int:
    """``python -m floss_utils.book.runs``: execute the task read from stdin (one sweep point)."""
    task = json.loads(sys.stdin.read())
    try:
        record = execute(task)
    except KeyboardInterrupt:
        return 130
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(_child_main())
