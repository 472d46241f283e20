"""The book: wall time of every chapter at smoke and book scale, as the status page shows it.

    .venv/bin/python benchmarks/bench_book.py [--scales smoke,book] [--chapters 01,02,...]

Runs ``floss run CHAPTER --scale S --out DIR`` for every chapter of the registry whose notebook
exists (or those named), one after another, and records per run: the wall time, the CPU time
(user + system, of the run and every process it waited for: the papermill kernel), the budget
(book scale <= 120 s, smoke <= 20 s on an idle 2-core machine) and the machine's load average
before the run. Writes ``benchmarks/results/book_timings.csv`` and ``book_timings.md``
(provenance + table), which ``book/reproducibility_status.md`` includes.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import _common  # noqa: E402

BUDGET = {"smoke": 20.0, "book": 120.0}


def chapters(selected: list[str] | None) -> list[str]:
    from floss_utils.book.registry import CHAPTERS
    ids = [cid for cid in CHAPTERS if (ROOT / "book" / f"{cid}.ipynb").exists()]
    if selected:
        ids = [cid for cid in ids if any(cid.startswith(s) for s in selected)]
    return ids


def run_one(cid: str, scale: str, floss: str, timeout: int) -> dict:
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / cid
        env = dict(os.environ, TQDM_DISABLE="1")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([floss, "run", cid, "--scale", scale, "--out", str(out), "-q", "--device", "cpu"],
                                  capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout} s"
        wall = time.perf_counter() - t0
        runner_wall = None
        rj = out / "run.json"
        if rj.exists():
            runner_wall = json.loads(rj.read_text()).get("wall_s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"chapter": cid, "scale": scale, "status": status, "wall_s": round(wall, 1),
            "runner_wall_s": runner_wall, "cpu_s": round(cpu, 1), "budget_s": BUDGET.get(scale, ""),
            "within_budget": ("yes" if wall <= BUDGET[scale] else "NO") if scale in BUDGET and status == "ok" else "-",
            "load_1min_before": round(load, 2), "threads": os.environ.get("OMP_NUM_THREADS", "default")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", default="smoke,book")
    ap.add_argument("--chapters", default="", help="comma-separated id prefixes (default: all that exist)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run")
    ap.add_argument("--out", default=str(_common.RESULTS))
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of (chapter, scale) pairs not rerun now (their own load is in their row)")
    a = ap.parse_args()
    floss = str(Path(sys.executable).with_name("floss"))
    ids = chapters([s for s in a.chapters.split(",") if s])
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_start = _common.load_average()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    header = ["chapter", "scale", "status", "wall (s)", "CPU user+sys (s)", "budget (s)", "within budget",
              "load (1 min) before", "torch threads"]
    cols = ["chapter", "scale", "status", "wall_s", "cpu_s", "budget_s", "within_budget", "load_1min_before",
            "threads"]
    table: dict[tuple[str, str], list] = {}
    if a.append and (out / "book_timings.csv").exists():  # keep the rows of runs not redone now
        with open(out / "book_timings.csv", newline="") as f:
            for row in list(csv.reader(f))[1:]:
                table[(row[0], row[1])] = row
    for scale in a.scales.split(","):
        for cid in ids:
            r = run_one(cid, scale, floss, a.timeout)
            table[(cid, scale)] = [r[c] for c in cols]
            print(f"{cid:40s} {scale:6s} {r['status']:10s} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  "
                  f"load {r['load_1min_before']}", flush=True)
            with open(out / "book_timings.csv", "w", newline="") as f:  # after every run
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(table[key] for key in sorted(table, key=lambda k: (k[1] != "smoke", k[0])))
    import torch
    threads = os.environ.get("OMP_NUM_THREADS", f"default ({torch.get_num_threads()})")
    cmd = ".venv/bin/python benchmarks/bench_book.py " + " ".join(sys.argv[1:])
    # the runs themselves keep about `own` cores busy (one after another), so only load beyond
    # that comes from other processes
    own = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()) or 1)
    loaded = max(float(row[7]) for row in table.values()) > own + 0.75
    meta = [
        f"- command: `{cmd.strip()}` (each chapter: `floss run CHAPTER --scale SCALE --device cpu`)",
        f"- date: {started}; git commit {_common.git_commit()}",
        f"- machine: {_common.machine()}; torch threads: {threads}",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}",
        f"- load average (1, 5, 15 min) at start: {load_start}; at end: {_common.load_average()}",
    ]
    totals = {sc: sum(float(row[3]) for row in table.values() if row[1] == sc) for sc in ("smoke", "book")}
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
    print(f"wrote {out / 'book_timings.csv'} and {out / 'book_timings.md'}")


if __name__ == "__main__":
    main()
