"""How far a long loop is, for a run stopped before its end to be extrapolated.

* :func:`report_progress` - a loop's units of work done and to do, written (at most every few
  seconds) to the file that the environment variable :data:`PROGRESS_ENV` names; ``floss run``
  sets it for its kernel, and a run stopped at a timeout keeps the unfinished loop in its record
  (``benchmarks/bench_book.py`` extrapolates the whole run's wall time from it).

Imports nothing of the package, nor torch: the ``floss`` command reads the variable's name
before any numerics load.
"""

from __future__ import annotations

import json
import math
import os
import time

__all__ = ["PROGRESS_ENV", "report_progress"]

#: the environment variable naming the file :func:`report_progress` writes (``floss run`` sets it to
#: ``<out>/progress.json`` for its kernel); unset or empty, nothing is written
PROGRESS_ENV = "FLOSS_PROGRESS_FILE"
_progress: dict = {}


def _clock() -> float:
    """Seconds since the epoch (the progress file's time base; a function, for tests to replace)."""
    return time.time()


def report_progress(task: str, done: float, total: float, *, unit: str = "steps", detail: str = "",
                    partial: bool = False, every_s: float = 5.0) -> None:
    """Say how far a long loop is: ``done`` of ``total`` units of work of ``task``.

    Where the environment variable :data:`PROGRESS_ENV` names a file, writes (atomically) the JSON
    ``{"task", "done", "total", "unit", "detail", "partial", "started", "updated"}`` there; times in seconds
    since the epoch, ``started`` when the loop reported ``done = 0`` (or, if it never did, its
    first report; a new ``task``, a new ``total``, ``done`` going back or a new report of 0 starts
    a new loop). ``detail`` says where in the loop it is when the units are not all alike (e.g.
    which group of students). Writes at most once every ``every_s`` seconds, but always the start
    and the end (``done == total``). A run stopped inside the loop is then extrapolated as
    ``(updated - started) * total / done`` — which assumes every unit costs the same (the caller's
    ``unit`` says what one is). ``partial`` says that the loop is followed, in the same call, by
    work it does not count (e.g. the pre-flossing before the training epochs): an extrapolation
    from it is then a lower bound of the whole run. Costs nothing where the variable is unset
    (every use outside ``floss run``). One loop at a time per process: the file holds the latest
    loop only.
    """
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    now = _clock()
    if (_progress.get("task") != task or _progress.get("total") != total or done < _progress.get("done", 0)
            or done == 0 or _progress.get("path") != path):
        _progress.clear()
        _progress.update(task=task, total=total, started=now, written=-math.inf, path=path)
    _progress["done"] = done
    if done not in (0, total) and now - _progress["written"] < every_s:
        return
    _progress["written"] = now
    payload = {"task": task, "done": done, "total": total, "unit": unit, "detail": detail, "partial": partial,
               "started": _progress["started"], "updated": now, "pid": os.getpid()}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)
