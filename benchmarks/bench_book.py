"""The book: wall time and peak memory of every chapter at each scale, as the status page shows it.

    .venv/bin/python benchmarks/bench_book.py [--scales smoke,book,paper] [--chapters 01,02,...] [--append]
    .venv/bin/python benchmarks/bench_book.py --write-registry      # the registry's costs from the record

Runs ``floss run CHAPTER --scale S --out DIR`` for every chapter of the registry whose notebook
exists (or those named), one after another, and records per run: the status, the wall time,
the CPU time (user + system, of the run and every process it waited for: the papermill kernel),
the kernel's peak memory (from the run's ``run.json``, sampled every half second), the budget
(smoke <= 20 s, book <= 240 s per chapter on a 2-core machine; paper: none), the machine's load
average before the run, the date and the machine. A run past ``--timeout`` is sent SIGTERM (as
``timeout`` would), so its kept record names the cell it stopped in and its peak memory, and its
kernel is shut down; it is killed only if it has not ended 120 s later. Writes ``benchmarks/results/book_timings.csv``
and ``book_timings.md`` (provenance + table), which ``book/reproducibility_status.md``
includes. ``--write-registry`` writes the recorded costs into
``floss_utils/book/registry/costs.py`` (what ``floss list`` shows and ``floss run`` warns with).

Take this measurement when the machine is quiet: the load average is recorded with every row,
and with a load above the number of cores the wall times measure the other processes too
(the CPU time is the more robust number then). On a shared machine run it with
``OMP_NUM_THREADS=1``: two OpenMP threads competing with another process for the cores make
small-tensor PyTorch code 10-100x slower (measured here: a Chapter 1 cell that takes 1.5 s with
one thread took 138 s with two under load), which would measure the contention, not the book.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402

BUDGET = {"smoke": 20.0, "book": 240.0}
CSV_NAME = "book_timings.csv"


def chapters(selected: list[str] | None) -> list[str]:
    from floss_utils.book.registry import CHAPTERS
    ids = [cid for cid in CHAPTERS if (ROOT / "book" / f"{cid}.ipynb").exists()]
    if selected:
        ids = [cid for cid in ids if any(cid.startswith(s) for s in selected)]
    return ids


def keep_record(out: Path, dest: Path) -> None:
    """Copy a run's record (run.json, results.json, its CSV tables and kernel.log) to ``dest``:
    what a paper-scale run leaves to commit (not the executed notebook, not the figures).

    The run's temporary folder ``out`` is named in its records (the command, ``output_dir``); the
    copies name ``dest`` instead (relative to the checkout when inside it), so that a committed
    record holds no path of one machine's temporary directory; the Python installation's folders
    (in the tracebacks a kernel log may hold) become ``<venv>`` and ``<python>``. What an earlier
    run kept in ``dest`` goes first: a record is one run's files, never a mix of two runs' (a run
    stopped early writes fewer tables than one that went further)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in [*dest.glob("*.json"), *dest.glob("*.csv"), dest / "kernel.log"]:
        old.unlink(missing_ok=True)
    for f in [*out.glob("*.json"), *out.glob("*.csv"), out / "kernel.log"]:
        if f.is_file() and f.name != "progress.json":  # a stopped run's record carries its unfinished loop
            (dest / f.name).write_text(without_install_paths(relocate(f.read_text(), out, dest)))


def without_install_paths(text: str) -> str:
    """``text`` with this Python's installation folders (the virtual environment, the base
    interpreter) named ``<venv>`` and ``<python>`` instead of one machine's absolute paths."""
    for prefix, name in ((sys.prefix, "<venv>"), (sys.base_prefix, "<python>")):
        if prefix and prefix != "/":
            text = text.replace(prefix.rstrip("/") + "/", name + "/")
    return text


def relocate(text: str, out: Path, dest: Path) -> str:
    """``text`` with every mention of the folder ``out`` replaced by ``dest`` (relative to the
    checkout's root when ``dest`` lies inside it)."""
    dest = dest.resolve()
    shown = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else dest.as_posix()
    for form in {str(out), out.as_posix(), str(out.resolve())}:
        text = text.replace(form, shown)
    return text


#: seconds a run stopped at its timeout is given, after SIGTERM, to record where it stopped and shut
#: its kernel down before it is killed
STOP_GRACE_S = 120


def stop(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> bool:
    """Stop a ``floss run`` the way ``timeout`` does: SIGTERM first, which ``floss run`` turns into an
    ``interrupted`` record naming the running cell and the peak memory, after shutting its kernel
    down (a killed runner leaves its kernel running and its record at "running"); SIGKILL only if
    it has not ended within ``grace`` seconds, to its whole process group (``proc`` must have been
    started in a session of its own). A kernel outliving that (jupyter_client may start it in a
    group of its own) would hold the output pipes open: they are read for at most 10 s more, then
    closed. Returns whether it ended on SIGTERM."""
    proc.terminate()
    try:
        proc.communicate(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        try:
            if os.getpgid(proc.pid) == proc.pid:  # it leads its own group: the group goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:  # it ended meanwhile
            pass
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
        return False


def mark_timed_out(run_json: Path, timeout: int, wall: float, progress: dict | None = None) -> None:
    """Record in the kept copy of a run stopped at the timeout that it was: its ``run.json`` says
    "interrupted" by SIGTERM (what :func:`stop` sends; the cell it stopped in and the peak memory
    stay) or, when the runner had to be killed, still "running" — a committed record never claims
    to be still running. With ``progress`` (:func:`partial_progress`), how far it got and the
    extrapolated wall time."""
    if not run_json.is_file():
        return
    rec = json.loads(run_json.read_text())
    if rec.get("status") == "running" or (rec.get("status") == "interrupted" and rec.get("signal") == "SIGTERM"):
        how = f": {rec['error']}" if rec.get("status") == "interrupted" and rec.get("error") else ""
        rec["status"] = "timed out"
        rec["error"] = f"stopped by benchmarks/bench_book.py after its timeout of {timeout} s (wall {wall:.0f} s){how}"
        rec["wall_s"] = round(wall, 1)
        if progress is not None:
            rec["progress"] = {"method": EXTRAPOLATION, **progress}
        run_json.write_text(json.dumps(rec, indent=2) + "\n")


#: the least share of a chapter (by its book-scale time) a stopped run must have completed before
#: its cost is extrapolated: below it the completed cells are mostly set-up, whose time says little
#: about the experiments that follow
MIN_FRACTION = 0.10
#: an extrapolated wall time within this of the time already spent was clamped to it (the run was
#: stopped inside a cell that had run longer than its share): the time spent is then a lower bound
LOWER_BOUND_SLACK_S = 1.0
EXTRAPOLATION = ("estimate_s = done_s / fraction: fraction = book-scale time of the code cells this run "
                 "completed / book-scale time of all code cells (committed notebook's timestamps); assumes "
                 "every cell costs the same multiple of its book-scale time")


def _cell_seconds(cell: dict, papermill: bool = False) -> float | None:
    """A code cell's execution time from its metadata: with ``papermill``, papermill's
    ``duration`` of a completed cell (a run's output notebook, whose other cells still carry the
    committed notebook's stale timestamps), else nbclient's ``execution`` timestamps
    (``shell.execute_reply - iopub.execute_input``, the committed notebook); None if it did not
    finish."""
    if papermill:
        pm = cell.get("metadata", {}).get("papermill", {})
        ok = pm.get("duration") is not None and pm.get("status") == "completed"
        return float(pm["duration"]) if ok else None
    ex = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
        t0 = dt.datetime.fromisoformat(ex["iopub.execute_input"].replace("Z", "+00:00"))
        t1 = dt.datetime.fromisoformat(ex["shell.execute_reply"].replace("Z", "+00:00"))
        return max(0.0, (t1 - t0).total_seconds())
    return None


def partial_progress(partial_nb: Path, book_nb: Path) -> dict | None:
    """How far a stopped run got, and the whole run's wall time extrapolated from it.

    The share done is the book-scale time of the code cells the stopped run completed over the
    book-scale time of all code cells (both from cell metadata: the stopped run's papermill
    durations of completed cells only, the committed notebook's execution timestamps; cells
    paired by position, papermill's injected parameters cell left out); the estimate is the
    completed cells' time in the stopped run divided by that share. This assumes every cell
    costs the same multiple of its book-scale time (what a uniform change of sizes gives; a
    chapter whose later cells grow faster is underestimated). None when the committed notebook
    has no timings, the two notebooks' code cells do not pair up, or the run completed less
    than :data:`MIN_FRACTION`.

    Returns:
        ``{"fraction", "done_s", "estimate_s", "cells_done", "cells"}``.
    """
    if not partial_nb.exists() or not book_nb.exists():
        return None
    book = [c for c in json.loads(book_nb.read_text())["cells"] if c["cell_type"] == "code"]
    part = [c for c in json.loads(partial_nb.read_text())["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if len(part) != len(book) or any("".join(a["source"]) != "".join(b["source"]) for a, b in zip(part, book)):
        return None
    times = [_cell_seconds(c) or 0.0 for c in book]
    total = sum(times)
    if not total:
        return None
    done_book = done_run = 0.0
    n_done = 0
    for c, tb in zip(part, times):
        t = _cell_seconds(c, papermill=True)
        if t is None:
            continue
        done_book += tb
        done_run += t
        n_done += 1
    fraction = done_book / total
    if fraction < MIN_FRACTION:
        return None
    return {"fraction": round(fraction, 3), "done_s": round(done_run, 1), "estimate_s": round(done_run / fraction, 1),
            "cells_done": n_done, "cells": len(book)}


LOOP_EXTRAPOLATION = ("estimate_s = (loop start - run start) + loop time so far * total / done, from the loop the run "
                      "stopped in (its progress report: floss_utils.progress.report_progress); assumes every unit of "
                      "the loop costs the same (its 'detail' says where they are not alike), and leaves out the rest "
                      "of the loop's cell and the cells after it")
#: the least share of its loop a stopped run must have done before it is extrapolated from the loop: the
#: estimate then multiplies the loop's time so far by at most 100, so that its first, slowest units
#: (warm-up, allocation) cannot dominate it
MIN_LOOP_FRACTION = 0.01
#: the largest share of the chapter (by its book-scale time) that a loop estimate may leave out (the cells after
#: the loop's) and still be called an estimate of the whole run; beyond it, or when the share is unknown, the
#: estimate is a lower bound (the same 10 % as MIN_FRACTION: what is left out is then more than the error a
#: cell-share extrapolation is allowed)
MAX_AFTER_SHARE = 0.10


def loop_progress(rec: dict, partial_nb: Path, book_nb: Path) -> dict | None:
    """How far a stopped run got inside the loop it stopped in, and the whole run's wall time
    extrapolated from it: the time before the loop started plus the loop's time so far scaled by
    ``total / done`` (the loop's own units, e.g. epochs or member-steps, all assumed to cost the
    same; the loop's ``detail`` says where they are not). The rest of the loop's cell and the
    cells after it are left out of the estimate (so it is low by their cost); the share of the
    chapter's book-scale time in the cells after it is given (``after_share``, None when the
    notebooks' cells do not pair up). A ``partial`` loop (followed in its call by work it does not
    count, e.g. the pre-flossing before the training), or one whose cells after it hold more than
    :data:`MAX_AFTER_SHARE` of the chapter (or an unknown share), gives a lower bound. None when the record has
    no unfinished loop, the loop had done less than :data:`MIN_LOOP_FRACTION`, or its times are
    missing.

    Returns:
        ``{"task", "unit", "detail", "partial", "done", "total", "loop_fraction", "estimate_s", "after_share"}``.
    """
    loop = rec.get("loop")
    if not loop or not loop.get("done") or not loop.get("total") or not rec.get("started"):
        return None
    try:
        run_start = dt.datetime.fromisoformat(rec["started"]).timestamp()
        started, updated = float(loop["started"]), float(loop["updated"])
    except (KeyError, TypeError, ValueError):
        return None
    frac = float(loop["done"]) / float(loop["total"])
    if frac < MIN_LOOP_FRACTION:
        return None
    estimate = (started - run_start) + (updated - started) / frac
    after = _share_after(rec.get("cell"), partial_nb, book_nb)
    partial = bool(loop.get("partial")) or after is None or after > MAX_AFTER_SHARE
    return {"task": loop.get("task"), "unit": loop.get("unit"), "detail": loop.get("detail") or "",
            "partial": partial, "done": loop["done"], "total": loop["total"],
            "loop_fraction": round(frac, 4), "estimate_s": round(estimate, 1), "after_share": after}


def _share_after(cell: dict | None, partial_nb: Path, book_nb: Path) -> float | None:
    """The share of the chapter's book-scale time (committed notebook's timestamps) in the code
    cells after ``cell`` (a run record's cell, indexed in the executed notebook)."""
    if not cell or cell.get("index") is None or not partial_nb.exists() or not book_nb.exists():
        return None
    part = json.loads(partial_nb.read_text())["cells"]
    book = [c for c in json.loads(book_nb.read_text())["cells"] if c["cell_type"] == "code"]
    code = [i for i, c in enumerate(part) if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if len(code) != len(book) or cell["index"] not in code:
        return None
    times = [_cell_seconds(c) or 0.0 for c in book]
    k = code.index(cell["index"])
    return round(sum(times[k + 1:]) / sum(times), 3) if sum(times) else None


def run_one(cid: str, scale: str, floss: str, timeout: int, keep: Path | None = None) -> dict:
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / cid
        env = dict(os.environ, TQDM_DISABLE="1")
        t0 = time.perf_counter()
        stopped_cleanly = True
        proc = subprocess.Popen([floss, "run", cid, "--scale", scale, "--out", str(out), "-q", "--device", "cpu",
                              "--accept-cost"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            if proc.returncode != 0:
                print(stdout[-2000:], stderr[-2000:], file=sys.stderr)
        except subprocess.TimeoutExpired:
            wall = time.perf_counter() - t0  # the run's time: the stop's own seconds are not counted
            stopped_cleanly = stop(proc)
            status = f"timed out after {timeout} s"
        except BaseException:  # Ctrl-C here: the run, in a session of its own, does not get it, so it is stopped
            stop(proc)
            raise
        else:
            wall = time.perf_counter() - t0
        runner_wall = peak = None
        rj = out / "run.json"
        if rj.exists():
            rec = json.loads(rj.read_text())
            runner_wall = rec.get("wall_s")
            peak = (rec.get("peak_memory") or {}).get("host_bytes")
            if status != "ok" and rec.get("error"):
                status = f"{status}: {rec['error'][:200]}"
        progress = None  # only a run stopped at its timeout is extrapolated (not one that failed)
        if status.startswith("timed out"):
            partial, book = out / f"{cid}.ipynb", ROOT / "book" / f"{cid}.ipynb"
            loop = loop_progress(rec, partial, book) if rj.exists() else None
            progress = partial_progress(partial, book) if loop is None else {
                **{k: loop[k] for k in ("task", "unit", "detail", "partial", "done", "total", "loop_fraction",
                                        "after_share")},
                "fraction": loop["loop_fraction"], "estimate_s": loop["estimate_s"], "method": LOOP_EXTRAPOLATION}
            if progress is not None:  # the estimate is never below the time already spent
                progress["estimate_s"] = max(progress["estimate_s"], round(wall, 1))
        if keep is not None and out.exists():
            keep_record(out, keep / f"{cid}-{scale}")
            if status.startswith("timed out"):
                mark_timed_out(keep / f"{cid}-{scale}" / "run.json", timeout, wall, progress)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not stopped_cleanly:  # a killed runner never waited for its kernel: their CPU time is not all counted
        cpu = float("nan")
    return {"chapter": cid, "scale": scale, "status": status, "wall_s": round(wall, 1),
            "runner_wall_s": runner_wall, "cpu_s": round(cpu, 1),
            "peak_gib": "" if peak is None else round(peak / (1 << 30), 2), "budget_s": BUDGET.get(scale, ""),
            "within_budget": ("yes" if wall <= BUDGET[scale] else "NO") if scale in BUDGET and status == "ok" else "-",
            "load_1min_before": round(load, 2), "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "date": dt.date.today().isoformat(), "machine": _common.machine(),
            "extrapolated_s": "" if progress is None else progress["estimate_s"],
            "done_fraction": "" if progress is None else progress["fraction"],
            "share_of": "" if progress is None else share_of(progress)}


CHAPTER_SHARE = "the chapter (by book-scale cell times)"
#: how a row's "share of" begins when its loop is partial (followed in its call by work it does not count):
#: the extrapolation is then a lower bound of the whole run
PARTIAL_LOOP = "a lower bound: "


def share_of(progress: dict) -> str:
    """What a stopped run's share done is a share of: the chapter (:func:`partial_progress`) or
    the loop it stopped in (:func:`loop_progress`)."""
    if "task" not in progress:
        return CHAPTER_SHARE
    after = progress.get("after_share")
    rest = "" if after is None else f" ({100 * after:.0f} % of the chapter at book scale)"
    detail = f" ({progress['detail']})" if progress.get("detail") else ""
    if progress.get("partial"):
        return (f"{PARTIAL_LOOP}its {progress['task']} loop alone, in {progress['unit']}{detail}; what follows it in "
                f"its cell and the cells after it{rest} not counted")
    return (f"its {progress['task']} loop, in {progress['unit']}{detail}; the rest of its cell and the cells "
            f"after it{rest} not counted")


HEADER = ["chapter", "scale", "status", "wall (s)", "CPU user+sys (s)", "peak memory (GiB)", "budget (s)",
          "within budget", "load (1 min) before", "torch threads", "date", "machine",
          "extrapolated wall (s)", "share done", "share of"]
COLS = ["chapter", "scale", "status", "wall_s", "cpu_s", "peak_gib", "budget_s", "within_budget", "load_1min_before",
        "threads", "date", "machine", "extrapolated_s", "done_fraction", "share_of"]
SCALE_ORDER = ("smoke", "book", "paper")
REGISTRY = ROOT / "floss_utils" / "book" / "registry" / "costs.py"
BEGIN = "    # --- generated by benchmarks/bench_book.py --write-registry: begin"
END = "    # --- generated by benchmarks/bench_book.py --write-registry: end"


def registry_entries(csv_path: Path) -> dict[str, dict[str, dict]]:
    """The costs the record supports: chapter -> scale -> Cost fields (minutes, peak_gib, status, basis)."""
    out: dict[str, dict[str, dict]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            peak = row.get("peak memory (GiB)") or ""
            status = "ok" if row["status"] == "ok" else row["status"].split(":")[0]
            basis = f"measured {row.get('date') or 'earlier'}, {row.get('machine') or 'this machine kind'}"
            minutes = round(float(row["wall (s)"]) / 60, 2)
            of = row.get("share of") or CHAPTER_SHARE
            if row.get("extrapolated wall (s)") and is_partial_loop(row):
                minutes = round(float(row["extrapolated wall (s)"]) / 60, 2)
                basis = (f"at least: extrapolated from a run stopped after {float(row['wall (s)']) / 60:.0f} min "
                         f"with {100 * float(row['share done']):.0f} % done of {of[len(PARTIAL_LOOP):]}, " + basis)
            elif row.get("extrapolated wall (s)") and is_lower_bound(row):
                basis = (f"at least: a run stopped after {float(row['wall (s)']) / 60:.0f} min inside a cell, with "
                         f"{100 * float(row['share done']):.0f} % done of {of}, whose "
                         "extrapolation is below the time spent, " + basis)
            elif row.get("extrapolated wall (s)"):
                minutes = round(float(row["extrapolated wall (s)"]) / 60, 2)
                basis = (f"extrapolated from a run stopped after {float(row['wall (s)']) / 60:.0f} min with "
                         f"{100 * float(row['share done']):.0f} % done of {of}, " + basis)
            elif status != "ok" and status.startswith("timed out"):
                basis = f"at least: a run stopped after {float(row['wall (s)']) / 60:.0f} min, not extrapolated, " + basis
            elif status != "ok":  # a run that failed (a check, an error) did not do the whole chapter: a lower bound
                basis = f"at least: a run that {status} after {float(row['wall (s)']) / 60:.1f} min, " + basis
            out.setdefault(row["chapter"], {})[row["scale"]] = {
                "minutes": minutes, "peak_gib": float(peak) if peak else None, "status": status, "basis": basis}
    return out


def write_registry(csv_path: Path) -> None:
    """Rewrite the generated block of the registry's costs module from the record."""
    lines = []
    for cid, scales in sorted(registry_entries(csv_path).items()):
        lines.append(f"    {cid!r}: {{")
        for scale in SCALE_ORDER:
            if scale in scales:
                c = scales[scale]
                lines.append(f"        {scale!r}: Cost(minutes={c['minutes']!r}, peak_gib={c['peak_gib']!r}, "
                             f"status={c['status']!r},")
                lines.append(f"                    basis={c['basis']!r}),")
        lines.append("    },")
    text = REGISTRY.read_text()
    head, rest = text.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    REGISTRY.write_text(head + BEGIN + "\n" + "\n".join(lines) + ("\n" if lines else "") + END + tail)
    print(f"wrote {len(lines) and sum(1 for l in lines if 'Cost(' in l)} costs into {REGISTRY.relative_to(ROOT)}")


WIDE_NAME = "chapter_costs.csv"


def is_partial_loop(row: dict) -> bool:
    """Whether a stopped run was extrapolated from a partial loop (one followed in its call by
    work it does not count, e.g. the pre-flossing before the training): a lower bound."""
    return (row.get("share of") or "").startswith(PARTIAL_LOOP)


def is_lower_bound(row: dict) -> bool:
    """Whether a stopped run's extrapolated wall time is only a lower bound: extrapolated from a
    partial loop (:func:`is_partial_loop`), or only the time already spent (the extrapolation fell
    below it and was clamped, see ``run_one``: the run was stopped inside a cell that had
    already run longer than its share), so the whole run takes longer, by an unknown amount."""
    return is_partial_loop(row) or float(row["extrapolated wall (s)"]) <= float(row["wall (s)"]) + LOWER_BOUND_SLACK_S


def _cell(row: dict) -> str:
    """One run as a table cell: status, wall time, peak memory, date."""
    wall = float(row["wall (s)"])
    t = f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min"
    peak = f", {float(row['peak memory (GiB)']):.1f} GiB" if row.get("peak memory (GiB)") else ""
    status = "ok" if row["status"] == "ok" else row["status"].split(":")[0]
    when = f" ({row['date']})" if row.get("date") else ""
    if row.get("extrapolated wall (s)"):
        est = float(row["extrapolated wall (s)"]) / 60
        share = 100 * float(row["share done"])
        of = row.get("share of") or CHAPTER_SHARE
        if is_partial_loop(row):
            return (f"{status}, {t}{peak}{when}; whole run > {est:.0f} min (extrapolated from {share:.0f} % done of "
                    f"{of[len(PARTIAL_LOOP):]})")
        if is_lower_bound(row):
            return (f"{status}, {t}{peak}{when}; whole run > {wall / 60:.0f} min (stopped inside a cell, "
                    f"{share:.0f} % done of {of})")
        return f"{status}, {t}{peak}{when}; whole run ~{est:.0f} min (extrapolated from {share:.0f} % done of {of})"
    if status.startswith("timed out"):
        return f"{status}, {t}{peak}{when}; whole run > {wall / 60:.0f} min (not extrapolated)"
    return f"{status}, {t}{peak}{when}"


def write_wide(csv_path: Path) -> Path:
    """``chapter_costs.csv``: one row per chapter, one column per scale (status, wall time, peak
    memory, date of the latest recorded run), and the registry's unmeasured GPU estimate."""
    from floss_utils.book.registry import CHAPTERS

    runs: dict[str, dict[str, dict]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["chapter"], {})[row["scale"]] = row
    out = csv_path.with_name(WIDE_NAME)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["chapter", "smoke (2-core CPU)", "book (2-core CPU)", "paper (2-core CPU)",
                    "paper on a GPU (estimate, never measured)"])
        for cid, c in CHAPTERS.items():
            if cid not in runs and not (ROOT / "book" / f"{cid}.ipynb").exists():
                continue
            cells = [_cell(runs[cid][s]) if s in runs.get(cid, {}) else "not recorded" for s in SCALE_ORDER]
            gpu = c.minutes.get("paper")
            w.writerow([cid, *cells, f"~{gpu:g} min" if gpu is not None else ""])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="smoke,book")
    ap.add_argument("--write-registry", action="store_true",
                    help="only write the recorded costs into floss_utils/book/registry/costs.py")
    ap.add_argument("--chapters", default="", help="comma-separated id prefixes (default: all that exist)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run")
    ap.add_argument("--out", default=str(_common.RESULTS))
    ap.add_argument("--keep", default="", help="copy each run's record (run.json, results.json, tables) into "
                    "KEEP/CHAPTER-SCALE/ (e.g. records/chapter_runs)")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of (chapter, scale) pairs not rerun now (their own load is in their row)")
    a = ap.parse_args()
    if a.write_registry:
        write_registry(Path(a.out) / CSV_NAME)
        write_wide(Path(a.out) / CSV_NAME)
        return
    floss = str(Path(sys.executable).with_name("floss"))
    ids = chapters([s for s in a.chapters.split(",") if s])
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_start = _common.load_average()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict[tuple[str, str], list] = {}
    if a.append and (out / CSV_NAME).exists():  # keep the rows of runs not redone now
        with open(out / CSV_NAME, newline="") as f:
            for row in csv.DictReader(f):
                table[(row["chapter"], row["scale"])] = [row.get(h, "") for h in HEADER]
    for scale in a.scales.split(","):
        for cid in ids:
            r = run_one(cid, scale, floss, a.timeout, Path(a.keep) if a.keep else None)
            table[(cid, scale)] = [r[c] for c in COLS]
            print(f"{cid:40s} {scale:6s} {r['status'][:40]:10s} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                  f"peak {r['peak_gib']} GiB  load {r['load_1min_before']}", flush=True)
            with open(out / CSV_NAME, "w", newline="") as f:  # after every run
                w = csv.writer(f)
                w.writerow(HEADER)
                w.writerows(table[key] for key in sorted(table, key=lambda k: (SCALE_ORDER.index(k[1]), k[0])))
    import torch
    threads = os.environ.get("OMP_NUM_THREADS", f"default ({torch.get_num_threads()})")
    cmd = ".venv/bin/python benchmarks/bench_book.py " + " ".join(sys.argv[1:])
    # the runs themselves keep about `own` cores busy (one after another), so only load beyond
    # that comes from other processes
    own = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()) or 1)
    loaded = max(float(row[HEADER.index("load (1 min) before")]) for row in table.values()) > own + 0.75
    meta = [
        f"- command: `{cmd.strip()}` (each chapter: `floss run CHAPTER --scale SCALE --device cpu`)",
        f"- date: {started}; git commit {_common.git_commit()}",
        f"- machine: {_common.machine()}; torch threads: {threads}",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}",
        f"- load average (1, 5, 15 min) at start: {load_start}; at end: {_common.load_average()}",
    ]
    totals = {sc: sum(float(row[3]) for row in table.values() if row[1] == sc) for sc in SCALE_ORDER}
    meta.append("- total wall time, every chapter one after another: "
                + ", ".join(f"{sc} {t:.0f} s" for sc, t in totals.items() if t))
    if a.append:
        meta.append("- with `--append`: rows not rerun by this command were kept from an earlier run "
                    "(same script; each row records the load it ran under)")
    if loaded:
        meta.append("- **the machine was shared and loaded during this measurement: wall times are inflated "
                    "by other processes; the CPU times are the more faithful numbers**")
    (out / "book_timings.md").write_text("\n".join(meta) + "\n")
    print("\n".join(meta))
    write_wide(out / CSV_NAME)
    print(f"wrote {out / CSV_NAME}, {out / WIDE_NAME} and {out / 'book_timings.md'}; "
          "run again with --write-registry to update the registry's costs")


if __name__ == "__main__":
    main()
