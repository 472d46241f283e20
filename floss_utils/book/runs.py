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

Signals: the entry points (``floss``, and a sweep point's process) wrap their work in
:func:`interrupt_on_signals`, which turns SIGTERM and SIGHUP (what ``timeout``, Slurm,
Kubernetes, a Dask worker's shutdown or a closed terminal send) into :class:`Interrupted`, a
``KeyboardInterrupt``: papermill shuts the kernel down as it does on Ctrl-C and the record says
``"status": "interrupted"`` with the signal and the cell that was running. A record left at
``"running"`` by a process that died without a word (SIGKILL, power loss) is recognised by the
host, pid and process start time it keeps (:func:`process_state`) and treated as interrupted.
"""

from __future__ import annotations

import datetime as _dt
import difflib
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
import contextlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..progress import PROGRESS_ENV
from .kernel_watch import KernelWatch, gib, kernel_manager_class
from .parameters import check_device, resolve, validate
from .registry.costs import MEMORY_HINTS, expected_cost
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
    "check_writable",
    "package_versions",
    "git_commit",
    "rerun_command",
    "Interrupted",
    "interrupt_on_signals",
    "interruption_signal",
    "exit_status",
    "process_state",
    "cost_refusal",
    "COST_NEUTRAL",
    "runs_on_accelerator",
    "TERMINATING",
]

RUN_JSON = "run.json"
SWEEP_JSON = "sweep.json"
KERNEL = "python3"
#: the kernel process's own stderr, in the run directory
KERNEL_LOG = "kernel.log"
#: where the kernel's long loops say how far they are (:func:`floss_utils.progress.report_progress`);
#: a run that does not end ok keeps the unfinished loop in its record (``"loop"``)
PROGRESS_JSON = "progress.json"
#: seconds a kernel may take to start (papermill waits 60 by default: too little on a loaded 2-core machine)
KERNEL_START_TIMEOUT = 300
VERSIONED_PACKAGES = ("floss_utils", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
                      "papermill", "nbclient", "ipykernel", "dask", "distributed")
#: parameters the runner sets itself; everything else may be overridden with -p
RESERVED = {"output_dir": "use --out DIR"}


class RunError(Exception):
    """Bad input to the runner other than a parameter (unknown chapter, refused output
    directory, bad grid...), refused before anything runs."""


# ------------------------------------------------------------------------------ signals

#: The signals that end a run the way Ctrl-C (SIGINT) does. ``timeout``, Slurm, Kubernetes and a
#: Dask worker's shutdown send SIGTERM; a closed terminal sends SIGHUP.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal (raised by the handler of :func:`interrupt_on_signals`).

    A ``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` (papermill's kernel shutdown,
    the run record, a sweep's stop) treats SIGTERM exactly like Ctrl-C.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


def interruption_signal(exc: BaseException) -> signal.Signals:
    """The signal behind a ``KeyboardInterrupt``: its own for :class:`Interrupted`, else SIGINT."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT))


def exit_status(signum: int) -> int:
    """The conventional exit status of a process ended by ``signum``: 128 + its number
    (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


class _SignalState:
    taken: int | None = None  # the signal already being acted on: later ones are ignored
    deferring: int = 0  # inside _signals_deferred(): remember the signal, raise on leaving
    pending: int | None = None


def _on_signal(signum: int, frame: Any) -> None:
    if _SignalState.taken is not None:
        return  # already stopping (shutting the kernel down, writing the record): let it finish
    if _SignalState.deferring:
        _SignalState.pending = _SignalState.pending or signum
        return
    _SignalState.taken = signum
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[int, ...] = TERMINATING, *, force: tuple[int, ...] = ()) -> Iterator[None]:
    """Within the block, the first of ``signals`` raises :class:`Interrupted` in the main thread;
    later ones are ignored while the run cleans up (a second Ctrl-C, whose handler is not
    replaced, still interrupts the cleanup as usual). For the entry points only: ``floss`` and
    a sweep point's process; library functions do not install handlers.

    A signal whose handler is not the default one is left alone (``nohup`` ignores SIGHUP; an
    application that handles SIGTERM itself keeps doing so), except those in ``force``.
    The previous handlers are restored on leaving. Does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = (signal.SIG_DFL, signal.default_int_handler)
    previous: dict[int, Any] = {}
    for signum in (*signals, *force):
        current = signal.getsignal(signum)
        if signum in force or current in defaults:
            previous[signum] = current
            signal.signal(signum, _on_signal)
    saved = (_SignalState.taken, _SignalState.pending)
    _SignalState.taken = _SignalState.pending = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _SignalState.taken, _SignalState.pending = saved


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """A block a signal must not cut in half (writing the final record): a signal arriving
    inside it raises :class:`Interrupted` on leaving it instead."""
    _SignalState.deferring += 1
    try:
        yield
    finally:
        _SignalState.deferring -= 1
        if not _SignalState.deferring and _SignalState.pending is not None:
            signum, _SignalState.pending = _SignalState.pending, None
            _SignalState.taken = signum
            raise Interrupted(signum)


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
    chapters and their parameters, but nothing can run (``Book.notebook`` raises)."""

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
        """``root``, or :class:`RunError` (one line: ``NO_CHECKOUT``) when there is none."""
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
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:  # a signal between the two: no temporary file left behind
        tmp.unlink(missing_ok=True)
        raise


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


def git_commit(root: Path, ignore: Sequence[str] = ()) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None, "modified": [paths]}`` of the checkout at
    ``root``: ``modified`` names the tracked files that differ from the commit (untracked files
    do not count), so a dirty flag can be traced afterwards. Paths under a folder of ``ignore``
    (relative to ``root``, e.g. a record's own output folder) do not count."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    prefixes = tuple(str(p).rstrip("/") + "/" for p in ignore)
    modified = [path for line in (status or "").splitlines()
                if not (path := line.split(None, 1)[-1]).startswith(prefixes)]
    return {"commit": sha, "dirty": None if status is None else bool(modified), "modified": modified}


def _process_started(pid: int) -> float | None:
    """When process ``pid`` of this host started (seconds since the epoch), or None."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.Error, OSError):
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux: ``pid:[4026531836]``): processes of another one, a
    container with its own pids, cannot be checked from here even under the same host name."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_state(record: Mapping[str, Any]) -> tuple[str, str]:
    """Whether the process that wrote a ``"running"`` record is still there:
    ``("alive" | "gone" | "unknown", why)``.

    The record keeps the ``host``, ``pid``, ``pid_started`` (the process start time) and
    ``pid_namespace`` of the process executing the chapter. ``gone``: on this host, that pid no
    longer exists, is a zombie, or is now another process (pid reuse: its start time differs).
    ``unknown``: the record comes from another host, or from another pid namespace of this one
    (a container sharing its host name), where a process cannot be checked from here; or it
    names no process (written before floss kept one), or its start time cannot be compared.
    """
    import psutil

    host, pid, started = record.get("host"), record.get("pid"), record.get("pid_started")
    here = platform.node()
    if not host or not isinstance(pid, int):
        return "unknown", "the record names no process (written by an older floss)"
    if host != here:
        return "unknown", f"it was written by pid {pid} on host {host}, which cannot be checked from {here}"
    namespace, ours = record.get("pid_namespace"), _pid_namespace()
    if namespace and ours and namespace != ours:
        return "unknown", (f"it was written by pid {pid} in another pid namespace ({namespace}, a container?) on "
                           f"{host}, which cannot be checked from this one ({ours})")
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return "gone", f"its process (pid {pid} on {host}) no longer exists"
    except (psutil.Error, OSError) as exc:
        return "unknown", f"its process (pid {pid} on {host}) cannot be inspected ({type(exc).__name__})"
    if zombie:
        return "gone", f"its process (pid {pid} on {host}) has exited"
    if not isinstance(started, (int, float)):
        return "unknown", f"pid {pid} exists on {host}, but the record has no start time to tell it from a reused pid"
    if abs(created - started) > 1.0:
        when = _dt.datetime.fromtimestamp(created, _dt.timezone.utc).isoformat(timespec="seconds")
        return "gone", f"its process (pid {pid} on {host}) is gone; that pid is now another process, started {when}"
    return "alive", f"its process (pid {pid} on {host}) is still running"


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


_ENGINE = "floss"
_REGISTERED: set[str] = set()


def _first_line(source: Any) -> str:
    text = "".join(source) if isinstance(source, list) else str(source or "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _register_engine() -> None:
    """Register papermill's nbclient engine with hooks on cells (``engine_name="floss"``).

    It keeps the cell being executed in the ``floss_cell`` dict passed to ``execute_notebook``:
    set when papermill starts a cell (``cell_start``, which also saves the notebook), marked
    finished when nbclient has the kernel's reply (its ``on_cell_executed`` hook), so an
    interrupted run knows which cell was running. On an interruption it also marks that cell in
    the executed notebook (papermill status ``failed`` and an ``Interrupted`` error output),
    which papermill alone would mark ``completed``, like every cell after it.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    if _ENGINE in _REGISTERED:  # once per process
        return

    class FlossEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, floss_cell=None, **kwargs):
            tracker = floss_cell if floss_cell is not None else {}
            cell_start = nb_man.cell_start

            def on_start(cell, cell_index=None, **kw):
                tracker.clear()
                tracker.update(index=cell_index, source=_first_line(cell.get("source")), cell=cell)
                return cell_start(cell, cell_index, **kw)

            def on_executed(cell, cell_index, execute_reply):
                tracker["finished"] = True

            nb_man.cell_start = on_start
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, on_cell_executed=on_executed,
                                                        **kwargs)
            except KeyboardInterrupt as exc:
                cell = tracker.get("cell")
                if cell is not None and not tracker.get("finished"):  # the caller saves the notebook next
                    try:
                        from nbformat.v4 import new_output

                        text = f"the run was interrupted by {interruption_signal(exc).name} while this cell was running"
                        nb_man.cell_exception(cell, cell_index=tracker.get("index"))
                        cell.setdefault("outputs", []).append(
                            new_output("error", ename="Interrupted", evalue=text, traceback=[f"Interrupted: {text}"]))
                    except Exception:  # marking the notebook must never hide the interruption
                        pass
                raise

    papermill_engines.register(_ENGINE, FlossEngine)
    _REGISTERED.add(_ENGINE)


def _kernel_died(exc: BaseException) -> bool:
    """Whether papermill/nbclient failed because the kernel died or stopped answering."""
    from nbclient.exceptions import DeadKernelError

    text = str(exc)
    return isinstance(exc, DeadKernelError) or "Kernel died" in text or "Kernel didn't respond" in text


def _running_cell(tracker: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cell papermill was executing, as recorded: position in the executed notebook
    (0-based, the injected parameters cell included), execution count, first source line."""
    if "index" not in tracker or tracker.get("finished"):
        return None
    cell = tracker.get("cell") or {}
    return {"index": tracker["index"], "execution_count": cell.get("execution_count"),
            "source": tracker.get("source")}


def _cell_number(cell: Mapping[str, Any]) -> str:
    return str(cell["execution_count"]) if cell.get("execution_count") is not None else f"#{cell['index']}"


def _interruption_error(name: str, tracker: Mapping[str, Any]) -> str:
    cell = _running_cell(tracker)
    if cell is not None:
        return f"interrupted by {name} while cell {_cell_number(cell)} was running ({cell['source']})"
    if "index" in tracker:  # a cell had finished, the next had not begun
        last = {"index": tracker["index"], "execution_count": (tracker.get("cell") or {}).get("execution_count")}
        return f"interrupted by {name} after cell {_cell_number(last)} had finished (between cells, or stopping)"
    return f"interrupted by {name} before any cell ran (while starting)"


def execute(task: Mapping[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Execute one chapter as described by ``task`` (see :func:`make_task`) and record it.

    Writes ``run.json`` with status ``running`` first (with the host, pid and start time of
    this process, see :func:`process_state`), then runs papermill (cwd = ``book/``) into
    ``<out>/<chapter>.ipynb`` with ``output_dir = <out>``, then rewrites ``run.json`` with
    status ``ok`` or ``failed`` (and the failing cell's error) — last, atomically.
    ``KeyboardInterrupt`` (Ctrl-C, or :class:`Interrupted` for SIGTERM/SIGHUP under
    :func:`interrupt_on_signals`) records status ``interrupted`` with the signal and the cell
    that was running, after papermill has shut the kernel down, and propagates; the partial
    outputs stay.
    """
    out = Path(task["out"])
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "chapter": task["chapter"],
        "title": task.get("title"),
        "status": "running",
        "error": None,
        "signal": None,
        "cell": None,
        "point": task.get("point"),
        "overrides": task["overrides"],
        "parameters": task["parameters"],
        "scale": task["parameters"].get("scale"),
        "seed": task["parameters"].get("seed"),
        "device": None,
        "device_requested": task["parameters"].get("device"),
        "command": task.get("command"),
        "notebook": Path(task["notebook"]).name,
        "versions": None,
        "git": None,
        "host": platform.node(),
        "pid": os.getpid(),
        "pid_started": _process_started(os.getpid()),
        "pid_namespace": _pid_namespace(),
        "worker": task.get("worker"),
        "started": _now(),
        "finished": None,
        "wall_s": None,
        "outputs": {},
    }
    start = time.perf_counter()
    executed = out / Path(task["notebook"]).name
    tracker: dict[str, Any] = {}
    watch = KernelWatch()
    progress_file = out / PROGRESS_JSON
    progress_file.unlink(missing_ok=True)
    try:  # from here on, whatever happens, the record says it
        import papermill

        _register_engine()
        record["versions"] = package_versions()
        record["git"] = git_commit(Path(task["root"]))
        _write_json_atomic(out / RUN_JSON, record)
        papermill.execute_notebook(
            task["notebook"], str(executed),
            parameters={**task["overrides"], "output_dir": str(out)},
            kernel_name=KERNEL, cwd=task["cwd"], progress_bar=progress, log_output=False,
            engine_name=_ENGINE, floss_cell=tracker,
            kernel_manager_class=kernel_manager_class(out / KERNEL_LOG, watch, env={PROGRESS_ENV: str(progress_file)}),
            start_timeout=KERNEL_START_TIMEOUT,
        )
        record["status"] = "ok"
    except KeyboardInterrupt as exc:
        name = interruption_signal(exc).name
        record["status"] = "interrupted"
        record["signal"] = name
        record["cell"] = _running_cell(tracker)
        record["error"] = _interruption_error(name, tracker)
        raise
    except Exception as exc:
        from papermill.exceptions import PapermillExecutionError

        record["status"] = "failed"
        if isinstance(exc, PapermillExecutionError):  # the chapter raised: its cell and error
            record["error"] = f"cell {exc.exec_count}: {exc.ename}: {_strip_ansi(str(exc.evalue))}"
            record["cell"] = {"index": exc.cell_index, "execution_count": exc.exec_count,
                              "source": _first_line(exc.source)}
        elif _kernel_died(exc):  # say what most likely happened, and what to do
            cost = expected_cost(task["chapter"], record["scale"])
            need = None if cost is None or cost.peak_gib is None else cost.peak_gib * (1 << 30)
            record["error"] = (f"{watch.explain_death(need, MEMORY_HINTS.get(task['chapter'], ''))} "
                               f"({type(exc).__name__}: {_strip_ansi(str(exc)).strip()})")
        else:  # notebook unreadable...
            record["error"] = f"{type(exc).__name__}: {_strip_ansi(str(exc))}"
    finally:
        watch.stop()
        with _signals_deferred():  # a signal now would leave the record at "running"
            record["wall_s"] = round(time.perf_counter() - start, 3)
            record["finished"] = _now()
            results = _read_json(out / "results.json")
            record["peak_memory"] = {"host_bytes": watch.peak_bytes, "host": gib(watch.peak_bytes),
                                     "device_bytes": (results or {}).get("device_peak_bytes")}
            if results:
                record["parameters"] = results.get("parameters", record["parameters"])
                record["device"] = results.get("device")
            if record["status"] == "ok" and not results:
                record["status"] = "failed"
                record["error"] = "the chapter ran but wrote no results.json into output_dir"
            if record["status"] == "failed" and record["cell"] is None:
                record["cell"] = _running_cell(tracker)
            loop = _read_json(progress_file)
            if record["status"] != "ok" and loop and loop.get("done", 0) < loop.get("total", 0):
                record["loop"] = loop  # the loop the run stopped in, and how far it got
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


def prepare_run_dir(directory: Path, chapter_id: str) -> str | None:
    """Accept ``directory`` for a single run of ``chapter_id``: new, empty, or an earlier run of
    the same chapter (replaced). Anything else is refused, never overwritten.

    An earlier run whose record says ``"running"`` is refused while its process is alive (on
    this host); one whose process is gone is a stale record of an interrupted run, and one from
    another host cannot be checked: both are replaced, and the returned note says so (None
    when there is nothing to say)."""
    if directory.exists() and not directory.is_dir():
        raise RunError(f"--out {directory}: exists and is not a directory")
    entries = _entries(directory)
    if not entries:
        check_writable(directory)
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
    note = None
    if rec.get("status") == "running":
        state, why = process_state(rec)
        since = f"started {rec.get('started')}"
        if state == "alive":
            raise RunError(f"--out {directory}: a run of {chapter_id} is still running there ({since}; {why}); "
                           "refusing to replace it (wait for it, stop it, or choose another directory)")
        if state == "gone":
            note = (f"{directory / RUN_JSON} was a stale record: it said \"running\" ({since}) but {why}, so that "
                    "run was interrupted; replacing it")
        else:
            note = (f"{directory / RUN_JSON} says \"running\" ({since}) and {why}, so whether it still runs is "
                    "unknown; replacing it")
    _clear(directory)
    return note


def check_writable(directory: Path) -> None:
    """Check that ``directory`` can be created and written to (creating, probing, and removing
    again what did not exist), or raise a one-line :class:`RunError` saying why it cannot hold
    a run, before anything runs."""
    missing = next((d for d in reversed([directory, *directory.parents]) if not d.exists()), None)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".floss-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunError(f"--out {directory}: cannot be used as an output directory ({reason})") from None
    finally:
        if missing is not None and missing.is_dir():
            shutil.rmtree(missing, ignore_errors=True)  # the check leaves nothing behind


def _clear(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# ------------------------------------------------------------------------------ single run


def run(book: Book, chapter_id: str, overrides: Mapping[str, Any], out: str | Path,
        *, progress: bool = True, notify: Callable[[str], None] | None = None,
        accept_cost: bool = False) -> dict[str, Any]:
    """Validate ``overrides``, then execute the chapter into ``out``; returns the run record.

    Raises :class:`~floss_utils.book.parameters.ParameterError`/:class:`RunError` before anything runs on bad input,
    and :class:`RunError` for a run that never finished on the reference machine (:func:`cost_refusal`)
    unless ``accept_cost``.
    The record's ``status`` is ``ok`` or ``failed`` (with ``error``).

    An interruption is recorded ``interrupted`` and propagates (``KeyboardInterrupt``). What
    ``out`` held worth saying (a stale record of an interrupted run) goes to ``notify``
    (default: stderr).
    """
    chapter = book.chapter(chapter_id)
    values = validate(chapter, overrides, reserved=RESERVED)
    check_device(values.get("device"), local=True)
    book.notebook(chapter)  # no checkout, no notebook: refused before `out` is touched
    refusal = None if accept_cost else cost_refusal(chapter, values)
    if refusal:
        raise RunError(refusal)
    out = Path(out)
    say = notify or (lambda text: print(text, file=sys.stderr))
    note = prepare_run_dir(out, chapter.id)
    if note:
        say(note)
    warning = memory_warning(chapter.id, resolve(chapter, values)["scale"])
    if warning:
        say(warning)
    return execute(make_task(book, chapter, values, out), progress=progress)


#: The parameters that do not change what a run costs (a run that overrides only these is the run
#: whose cost the registry recorded).
COST_NEUTRAL = frozenset({"scale", "device", "seed"})


def runs_on_accelerator(device: str) -> bool:
    """Whether a run with this ``device`` parameter uses an accelerator (``auto``: CUDA when this
    machine has it; otherwise any torch device other than the CPU)."""
    import torch

    if device == "auto":
        return torch.cuda.is_available()
    return torch.device(device).type != "cpu"


def cost_refusal(chapter: Chapter, overrides: Mapping[str, Any], *, on_accelerator: bool | None = None) -> str | None:
    """Why this run should not start without being asked to: the same configuration never
    finished on the reference machine (a 2-core CPU; the registry's
    :data:`~floss_utils.book.registry.costs.COSTS` say it was stopped for time or killed), with
    its measured need and what to do instead. None when it finished there, was never measured,
    runs on an accelerator (the record is a CPU's), or ``overrides`` resolve a parameter other
    than :data:`COST_NEUTRAL` to another value than the scale's (the record is not this run's).

    ``overrides``: typed, as :func:`~floss_utils.book.parameters.validate` returns them;
    ``on_accelerator``: whether the run's device is a GPU or another accelerator (default:
    :func:`runs_on_accelerator` of the ``device`` parameter on this machine).
    """
    values = resolve(chapter, overrides)
    scale = values["scale"]
    cost = expected_cost(chapter.id, scale)
    if cost is None or not cost.status.startswith(("timed out", "killed")):
        return None
    recorded = resolve(chapter, {"scale": scale})
    if any(values[n] != recorded[n] for n in values if n not in COST_NEUTRAL):
        return None
    if on_accelerator is None:
        on_accelerator = "device" in values and runs_on_accelerator(str(values["device"]))
    if on_accelerator:
        return None
    if cost.basis.startswith("at least"):
        need = f"more than {math.floor(cost.minutes)} min (a lower bound)"
    elif cost.basis.startswith("extrapolated"):
        need = f"about {cost.minutes:.0f} min (extrapolated)"
    else:
        need = f"more than {cost.minutes:.0f} min"
    memory = f"; its memory peaked at {cost.peak_gib:.2f} GiB before it stopped" if cost.peak_gib is not None else ""
    hint = MEMORY_HINTS.get(chapter.id)
    lower = f"lower {hint} with -p, " if hint else ""
    return (f"{chapter.id} at scale {scale} did not finish on the reference machine (a 2-core CPU, 24 GiB): "
            f"{cost.status}; the whole run needs {need} there{memory} ({cost.basis}). Not started: "
            f"{lower}run it on a GPU (--device cuda), choose a smaller scale, or pass --accept-cost to "
            f"start it anyway.")


def memory_warning(chapter_id: str, scale: str, available: int | None = None) -> str | None:
    """A warning when this machine has less memory available than ``chapter_id`` needed at
    ``scale`` when measured (the registry's :data:`~floss_utils.book.registry.costs.COSTS`);
    None when it fits or was never measured. ``available``: bytes (default: now, from psutil)."""
    cost = expected_cost(chapter_id, scale)
    if cost is None or cost.peak_gib is None:
        return None
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    need = cost.peak_gib * (1 << 30)
    if available >= need:
        return None
    hint = MEMORY_HINTS.get(chapter_id)
    return (f"{chapter_id} at scale {scale} needed {gib(need)} of memory when measured ({cost.basis}); "
            f"this machine has {gib(available)} available, so the run may be killed for memory"
            + (f" (lower {hint} with -p, or choose a smaller scale)" if hint else " (choose a smaller scale)"))


PARENT_ENV = "FLOSS_SWEEP_PARENT"


def _die_with_parent() -> bool:
    """Linux: ask for SIGTERM when the process (thread) that started this one dies, so a sweep
    point whose sweep or Dask worker was killed outright records its interruption and lets go of
    its point instead of running on unseen. False if that parent is already gone."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return True
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return True
    return os.getppid() == int(parent)  # (checked after arming it: no gap)


def _child_main() -> int:
    """``python -m floss_utils.book.runs``: execute the task read from stdin (one sweep point).

    SIGTERM and SIGHUP are treated like SIGINT (the sweep's stop signal) and the exit status is
    128 + the signal's number."""
    with interrupt_on_signals(TERMINATING, force=(signal.SIGINT,)):
        try:
            task = json.loads(sys.stdin.read())
            if not _die_with_parent():
                return exit_status(signal.SIGTERM)  # the sweep died before this point began
            record = execute(task)
        except KeyboardInterrupt as exc:
            return exit_status(interruption_signal(exc))
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(_child_main())
