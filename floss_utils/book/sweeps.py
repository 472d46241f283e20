"""Sweeps: a chapter run at every point of a grid of parameter values, locally or on Dask.

* :func:`sweep` validates every point (:func:`floss_utils.book.parameters.validate`: types,
  bounds and the chapter's constraints, all before anything runs), then runs each in
  ``out/<point_name>/`` (a complete :func:`floss_utils.book.runs.run` directory) on local
  worker processes or on a Dask distributed cluster, skipping points already complete.
* :func:`collect` writes ``sweep.csv`` (one row per point) and ``failures.csv``.

Stopping: the sweep's signal (Ctrl-C, or SIGTERM/SIGHUP under ``floss``) is passed on to the
running points' processes, which shut their kernels down and record ``interrupted``; a point's
process stopped on its own (a Dask worker's shutdown) is recorded so too, and one whose sweep
died outright gets SIGTERM from Linux. The next run of the same sweep reruns every point that is
not ``ok``, including stale ones left at ``running`` with no process behind them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .parameters import (ParameterError, report, check_device, check_names, coerce, constraint_problems,
                         resolve, validate)
from .registry import Chapter
from .runs import (RESERVED, RUN_JSON, SWEEP_JSON, Book, RunError, _clear, _entries, _now, _read_json, check_writable,
                   _strip_ansi, _write_json_atomic, cost_refusal, is_complete, make_task,
                   runs_on_accelerator)
from .runs import PARENT_ENV, TERMINATING, interruption_signal, process_state

__all__ = ["sweep", "SweepResult", "point_name", "expand_grid", "collect", "run_point"]

SWEEP_CSV = "sweep.csv"
FAILURES_CSV = "failures.csv"


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
    #: the number of the signal that stopped the sweep (SIGINT for Ctrl-C), when interrupted
    signum: int | None = None

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
            yield fh.fileno()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cancel_check(cancel: Callable[[], Any] | str | None) -> Callable[[], int]:
    """A function that returns 0 while the sweep goes on and, once it is stopped, the signal to
    stop a running point with (the one that stopped the sweep)."""
    if cancel is None:
        return lambda: 0
    if callable(cancel):
        def check() -> int:
            value = cancel()
            return 0 if not value else (signal.SIGINT if value is True else int(value))

        return check
    from distributed import Event, Variable  # a Dask cluster-wide event, set by the driver on Ctrl-C

    event, last = Event(cancel), [0.0, 0]

    def check() -> int:
        now = time.monotonic()
        if not last[1] and now - last[0] > 1.0:
            last[0] = now
            try:
                if event.is_set():
                    last[1] = int(Variable(f"{cancel}-signal").get(timeout=5))
            except Exception:  # scheduler gone: the driver is gone too; or no signal recorded
                last[1] = signal.SIGINT
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


def _earlier_run(out: Path, should_stop: Callable[[], int]) -> str | None:
    """What a point's directory says about an earlier run left at ``"running"`` (the point's
    lock is ours, so no sweep is running it): a stale record (its process is gone), or one from
    another host (which cannot be checked). A process of this host still running it outside any
    lock (a point's process outliving a sweep killed outright, where it cannot be told to stop)
    is waited for. Returns a note for the sweep's report, or None."""
    rec = _read_json(out / RUN_JSON)
    if not rec or rec.get("status") != "running":
        return None
    state, why = process_state(rec)
    if state == "alive":  # (never seen: the point's process holds the lock and dies with its sweep)
        import psutil

        try:
            proc = psutil.Process(rec["pid"])
            while not should_stop():
                try:
                    proc.wait(timeout=1.0)
                    return f"waited for an earlier run of it that was going on outside any sweep ({why} when reached)"
                except psutil.TimeoutExpired:
                    pass
        except psutil.Error:  # gone meanwhile
            return f"waited for an earlier run of it that was going on outside any sweep ({why} when reached)"
        return f"an earlier run of it is going on outside any sweep ({why}); not waited for: the sweep is stopping"
    if state == "gone":
        return (f"stale record: the run started {rec.get('started')} said \"running\" but {why}; it was "
                "interrupted, so it was run again")
    return (f"its record said \"running\" (started {rec.get('started')}) and {why}; no sweep held the point's lock, "
            "so it was run again")


#: the signals a point's process handles (exit status 128 + the number)
STOPPING_SIGNALS = (signal.SIGINT, *TERMINATING)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def run_point(task: Mapping[str, Any], cancel: Callable[[], Any] | str | None = None) -> dict[str, Any]:
    """Run one sweep point in a child process, unless it is already complete.

    Holds an exclusive lock on the point while it works (a point still running elsewhere is
    waited for, never run twice at once; the child process holds the lock too, so it stays
    held while either lives), clears any half-written leftovers, and runs
    ``python -m floss_utils.book.runs`` on the task. ``cancel`` (a callable returning a signal
    number or True, or the name of a Dask ``Event``) stops the child with that signal (SIGINT
    for True); the point is then recorded ``interrupted``. A child stopped by a signal of its
    own (SIGTERM from a scheduler, a Dask worker's shutdown) is recorded ``interrupted`` too.
    Returns ``{"point", "status", "error", "signal", "skipped", "wall_s", "note"}``.
    """
    out = Path(task["out"])
    lock = out.parent / ".locks" / f"{out.name}.lock"
    should_stop = _cancel_check(cancel)
    with _point_lock(lock) as lock_fd:
        note = _earlier_run(out, should_stop)
        if is_complete(out, task["overrides"]):
            rec = _read_json(out / RUN_JSON) or {}
            return {"point": task["point"], "status": "ok", "error": None, "signal": None, "skipped": True,
                    "wall_s": rec.get("wall_s"), "note": note}
        stop = should_stop()
        if stop:
            return {"point": task["point"], "status": "interrupted", "error": "not run (sweep interrupted)",
                    "signal": _signal_name(stop), "skipped": False, "wall_s": None, "note": note}
        if out.exists():
            _clear(out)
        out.mkdir(parents=True, exist_ok=True)
        task = {**task, "worker": _dask_worker()}
        env = {**os.environ, "TQDM_DISABLE": os.environ.get("TQDM_DISABLE", "1"), PARENT_ENV: str(os.getpid())}
        start = time.perf_counter()
        with open(out / "run.log", "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "floss_utils.book.runs"], stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=task["cwd"],
                                    pass_fds=(lock_fd,))
            proc.stdin.write(json.dumps(dict(task)).encode())
            proc.stdin.close()
            stopped = 0
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    stopped = should_stop()
                    if stopped:
                        proc.send_signal(stopped)  # the child shuts its kernel down and records it
                        try:
                            proc.wait(timeout=15)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait()
                        break
        wall = round(time.perf_counter() - start, 3)
        rec = _read_json(out / RUN_JSON) or {"chapter": task["chapter"], "overrides": task["overrides"],
                                             "parameters": task["parameters"], "point": task["point"]}
        # killed outright (SIGKILL, or a signal before the child's handlers were in place), or
        # stopped by a signal it handled (128 + its number) before it could record anything
        code = proc.returncode
        if code < 0:
            killed = -code
        else:
            killed = code - 128 if code - 128 in STOPPING_SIGNALS else 0
        if rec.get("status") == "interrupted":
            status, error, signame = "interrupted", rec.get("error") or "interrupted", rec.get("signal")
        elif stopped and rec.get("status") not in ("ok", "failed"):
            signame = _signal_name(stopped)
            status, error = "interrupted", f"interrupted by {signame} (the sweep was stopped)"
        elif rec.get("status") in ("ok", "failed"):
            status, error, signame = rec["status"], rec.get("error"), None
        elif killed:
            signame = _signal_name(killed)
            status, error = "interrupted", f"interrupted by {signame} before the run could record it"
        else:  # the child died without recording an outcome
            tail = _strip_ansi((out / "run.log").read_text(errors="replace"))[-800:].strip()
            status, error, signame = "failed", f"the run's process exited with code {proc.returncode}: {tail}", None
        if rec.get("status") != status:
            rec.update(status=status, error=error, signal=signame, finished=_now(), wall_s=wall)
            _write_json_atomic(out / RUN_JSON, rec)
        return {"point": task["point"], "status": status, "error": error, "signal": signame, "skipped": False,
                "wall_s": wall, "note": note}


def prepare_sweep_dir(directory: Path, chapter_id: str, fixed: Mapping[str, Any]) -> None:
    """Accept ``directory`` for a sweep of ``chapter_id`` with ``fixed`` overrides: new, empty or
    the same sweep (resumed; its grid may grow). Anything else is refused, never overwritten."""
    if directory.exists() and not directory.is_dir():
        raise RunError(f"--out {directory}: exists and is not a directory")
    entries = _entries(directory)
    if not entries:
        check_writable(directory)
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


def expand_grid(chapter: Chapter, grid: Mapping[str, Sequence[Any]],
                fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Validate every grid value (and the typed ``fixed`` overrides shared by every point) and
    return the cartesian product, one dict per point.

    Every point is checked like a single run: types, choices and bounds of each value, then the
    chapter's constraints on the values the point resolves to (fixed + point + scale presets).

    Raises:
        ParameterError: every problem at once (unknown names, bad values, repeated values, a
            name both fixed and swept, the points that break a constraint).
    """
    if not grid:
        raise RunError("a sweep needs at least one --grid NAME=V1,V2,...")
    fixed = dict(fixed or {})
    problems = check_names(chapter, grid, RESERVED)
    overlap = sorted(set(fixed) & set(grid))
    if overlap:
        problems.append(f"{', '.join(overlap)} both fixed (-p) and swept (--grid)")
    typed: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if name not in chapter.params or name in RESERVED:
            continue
        typed[name] = []
        for raw in values:
            try:
                typed[name].append(coerce(chapter, name, raw))
            except ParameterError as exc:
                problems.append(str(exc))
        rendered = [json.dumps(v) for v in typed[name]]
        dupes = sorted({r for r in rendered if rendered.count(r) > 1})
        if dupes:
            problems.append(f"--grid {name}: repeated value(s) {', '.join(dupes)}")
    if problems:
        raise report(chapter, problems)
    names = list(typed)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(typed[n] for n in names))]
    for values in points:
        broken = constraint_problems(chapter, resolve(chapter, {**fixed, **values}))
        problems += [f"point {point_name(values)}: {b}" for b in broken]
    if problems:
        raise report(chapter, problems)
    return points


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
          progress: bool = True, on_point: Callable[[dict[str, Any]], None] | None = None,
          accept_cost: bool = False) -> SweepResult:
    """Run ``chapter_id`` at every point of the cartesian product of ``grid``.

    ``grid``: ``{name: [values]}`` (strings are parsed like ``-p`` values); ``fixed``: overrides
    shared by every point (``scale``, ``device``...). Every name and value is validated before
    anything runs (:func:`expand_grid`). Each point runs in ``out/<point_name>/`` (a complete
    :func:`~floss_utils.book.runs.run` directory);
    points already complete are skipped, failed or interrupted ones are run again. Runs on
    ``workers`` local processes, or on the Dask cluster at ``scheduler`` (every worker needs
    this environment and ``out`` on a shared filesystem). Ctrl-C stops the running points
    (recorded ``interrupted``; rerun the same sweep to resume), and so do SIGTERM and SIGHUP
    where the caller turns them into :class:`~floss_utils.book.runs.Interrupted` (``floss``
    does, with :func:`~floss_utils.book.runs.interrupt_on_signals`): the running points are
    stopped with the same signal. A point found at ``"running"`` with no process behind it
    (a stale record) is run again, and its result carries a ``note`` saying so. A sweep with a
    point that :func:`~floss_utils.book.runs.cost_refusal` refuses (a configuration that never
    finished on the reference machine, run on a CPU) is refused before anything runs, unless
    ``accept_cost``; on a Dask cluster with ``device`` left at ``auto`` the workers' devices are
    not known here, so nothing is refused.
    """
    chapter = book.chapter(chapter_id)
    fixed_values = validate(chapter, dict(fixed or {}), reserved=RESERVED, constraints=False)
    points = expand_grid(chapter, grid, fixed_values)
    check_device(fixed_values.get("device"), local=scheduler is None)
    if workers < 1:
        raise RunError(f"--workers must be >= 1, got {workers}")
    book.notebook(chapter)  # no checkout, no notebook: refused before `out` is touched
    if not accept_cost:
        def on_accelerator(point: Mapping[str, Any]) -> bool | None:
            """None: resolved here (a local sweep); on a cluster ``auto`` counts as an accelerator."""
            if scheduler is None:
                return None
            device = str({**fixed_values, **point}.get("device") or "auto")
            return device == "auto" or runs_on_accelerator(device)

        refused = [(p, r) for p in points
                   if (r := cost_refusal(chapter, {**fixed_values, **p}, on_accelerator=on_accelerator(p)))]
        if refused:
            raise RunError(f"{len(refused)} of {len(points)} points refused, e.g. {point_name(refused[0][0])}: "
                           f"{refused[0][1]}")
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
    stopped_by: int | None = None

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
            stopped_by = _sweep_dask(tasks, client, done)
        else:
            stopped_by = _sweep_local(tasks, workers, done)
    finally:
        bar.close()
    interrupted = stopped_by is not None
    records = []
    for t in tasks:
        r = results.get(t["point"]) or {"point": t["point"], "status": "interrupted" if interrupted else "failed",
                                         "error": "not run (sweep interrupted)" if interrupted else "no result",
                                         "signal": _signal_name(stopped_by) if interrupted else None,
                                         "skipped": False}
        records.append({**r, "values": by_name[t["point"]]})
    table, failures = collect(out, records, list(grid))
    return SweepResult(out, records, table, failures, interrupted, stopped_by)


#: seconds between the starts of the first ``workers`` points. Over TCP, two Jupyter kernels starting at the same
#: moment could pick the same free port (jupyter_client frees a port before the kernel binds it), and one of them
#: died with "Address already in use" (seen once in CI, 2026-12-05); kernels now talk over IPC in folders of their
#: own (floss_utils.book.kernel_watch), which removes that race. The stagger stays as a second guard: it also
#: spreads the kernels' start-up load (imports), and costs seconds per sweep.
KERNEL_STAGGER_S = 5.0


def _sweep_local(tasks: list[dict[str, Any]], workers: int, done: Callable[[dict[str, Any]], None]) -> int | None:
    """Run the tasks on ``workers`` threads, each waiting on a child process; the signal that
    interrupted it (SIGINT for Ctrl-C), or None. The first ``workers`` points start
    :data:`KERNEL_STAGGER_S` apart."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    stop_signal: list[int] = []  # set once, by the main thread; read by the point threads
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floss-point")
    futures: dict[Any, dict[str, Any]] = {}
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
        for i, t in enumerate(tasks):
            if 0 < i < workers:
                time.sleep(KERNEL_STAGGER_S)
            futures[pool.submit(run_point, t, lambda: stop_signal[0] if stop_signal else 0)] = t
        for fut in as_completed(futures):
            deliver(fut)
    except KeyboardInterrupt as exc:
        signum = int(interruption_signal(exc))
        stop_signal.append(signum)  # running points stop their child processes; queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in futures:
            if fut.done() and not fut.cancelled() and futures[fut]["point"] not in delivered:
                deliver(fut)
        return signum
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return None


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


def _sweep_dask(tasks: list[dict[str, Any]], client, done: Callable[[dict[str, Any]], None]) -> int | None:
    """Run the tasks on the Dask cluster of ``client``; the signal that interrupted it, or None."""
    from distributed import Event, Variable, as_completed

    cancel = f"floss-cancel-{uuid.uuid4().hex}"
    event = Event(cancel, client=client)
    futures: dict[Any, dict[str, Any]] = {}

    def deliver(fut) -> None:
        try:
            done(fut.result())
        except Exception as exc:  # a bug in the runner or a lost worker, not the chapter
            done({"point": futures[fut]["point"], "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "skipped": False})

    delivered = set()
    try:
        for t in tasks:
            futures[client.submit(run_point, t, cancel, key=f"floss-{t['point']}-{uuid.uuid4().hex[:8]}",
                                  pure=False)] = t
        for fut in as_completed(futures):
            delivered.add(fut)
            deliver(fut)
    except KeyboardInterrupt as exc:
        signum = int(interruption_signal(exc))
        Variable(f"{cancel}-signal", client=client).set(signum)  # the signal to stop them with
        event.set()  # running points stop their child processes, queued ones return at once
        try:
            for fut in as_completed([f for f in futures if f not in delivered], timeout=30):
                if fut.status == "finished":
                    deliver(fut)
        except Exception:  # timeout or cancelled futures: what is on disk is what counts
            pass
        client.cancel(list(futures))
        return signum
    return None


