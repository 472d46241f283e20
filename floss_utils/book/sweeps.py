"""Sweeps: a chapter run at every point of a grid of parameter values, locally or on Dask.

* :func:`sweep` validates every point (:func:`floss_utils.book.parameters.validate`: types,
  bounds and the chapter's constraints, all before anything runs), then runs each in
  ``out/<point_name>/`` (a complete :func:`floss_utils.book.runs.run` directory) on local
  worker processes or on a Dask distributed cluster, skipping points already complete.
* :func:`collect` writes ``sweep.csv`` (one row per point) and ``failures.csv``.
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
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .parameters import (ParameterError, report, check_device, check_names, coerce, constraint_problems,
                         resolve, validate)
from .registry import Chapter
from .runs import (RESERVED, RUN_JSON, SWEEP_JSON, Book, RunError, _clear, _entries, _now, _read_json,
                   _strip_ansi, _write_json_atomic, is_complete, make_task)

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
    ``python -m floss_utils.book.runs`` on the task. ``cancel`` (a callable, or the name of a
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
            proc = subprocess.Popen([sys.executable, "-m", "floss_utils.book.runs"], stdin=subprocess.PIPE,
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
          progress: bool = True, on_point: Callable[[dict[str, Any]], None] | None = None) -> SweepResult:
    """Run ``chapter_id`` at every point of the cartesian product of ``grid``.

    ``grid``: ``{name: [values]}`` (strings are parsed like ``-p`` values); ``fixed``: overrides
    shared by every point (``scale``, ``device``...). Every name and value is validated before
    anything runs (:func:`expand_grid`). Each point runs in ``out/<point_name>/`` (a complete
    :func:`~floss_utils.book.runs.run` directory);
    points already complete are skipped, failed or interrupted ones are run again. Runs on
    ``workers`` local processes, or on the Dask cluster at ``scheduler`` (every worker needs
    this environment and ``out`` on a shared filesystem). Ctrl-C stops the running points
    (recorded ``interrupted``; rerun the same sweep to resume).
    """
    chapter = book.chapter(chapter_id)
    fixed_values = validate(chapter, dict(fixed or {}), reserved=RESERVED, constraints=False)
    points = expand_grid(chapter, grid, fixed_values)
    check_device(fixed_values.get("device"), local=scheduler is None)
    if workers < 1:
        raise RunError(f"--workers must be >= 1, got {workers}")
    book.notebook(chapter)  # no checkout, no notebook: refused before `out` is touched
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


