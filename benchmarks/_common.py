"""Shared helpers of the benchmark scripts: thread pinning, timing, provenance, result files.

Import this module FIRST in a benchmark script (before numpy, torch or jax): :func:`pin_threads`
must set the thread-count environment variables before the numerical libraries start.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from floss_utils.book.reproducibility import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def pin_threads(threads: int) -> None:
    """Give every library (torch/OpenMP/MKL, OpenBLAS, XLA) the same number of threads.

    Must run before numpy/torch/jax are imported. One thread is the default of the benchmark
    scripts: on a shared 2-core machine, two OpenMP threads that wait on each other make
    small-tensor PyTorch code 10-100x slower, which would measure contention, not the code.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def add_peer_site(site: str | None) -> None:
    """Make the peers' virtual environment importable (appended: the book's numpy/torch win).

    ``site`` is a venv directory (``benchmarks/.venv``) or its ``site-packages``. The peers'
    requirements pin the same numpy as the book, so either import order gives one numpy.
    """
    if not site:
        return
    p = Path(site)
    if (p / "lib").is_dir():
        cands = sorted(p.glob("lib/python3*/site-packages"))
        if not cands:
            raise ValueError(f"--peers {site}: no lib/python3*/site-packages inside")
        p = cands[0]
    if not p.is_dir():
        raise ValueError(f"--peers {site}: not a directory")
    sys.path.append(str(p))


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls (s)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, the functions timed in turn within every repeat.

    Interleaving makes a change of machine load hit every contender alike, so that their
    ratios stay meaningful when the absolute times drift.
    """
    for fn in fns.values():
        fn()  # warm-up (and JIT compilation)
    ts: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in ts.items()}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_or_record(record: str, script: str, run: Callable[[], object]) -> None:
    """``run()``, or with ``record`` (a ``--record NAME`` option) :func:`record_output` of it
    under that name, the command line rebuilt from ``sys.argv``."""
    if record:
        record_output(record, f"python benchmarks/{script} " + " ".join(sys.argv[1:]), run)
    else:
        run()


def record_output(name: str, command: str, run: Callable[[], object]) -> None:
    """Run ``run`` (a benchmark's ``main`` body, which prints its table), echo what it prints,
    and write it to ``benchmarks/results/<name>.md`` with the command, date, commit, machine,
    versions and load averages before and after."""
    import contextlib
    import io

    import torch

    start = load_average()
    buf = io.StringIO()

    class _Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            sys.__stdout__.write(text)
            return buf.write(text)

    with contextlib.redirect_stdout(_Tee()):
        run()
    out = Path(__file__).resolve().parent / "results" / f"{name}.md"
    header = [
        f"- command: `{command}`",
        f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; git commit {git_commit()}",
        f"- machine: {machine()}; torch threads: {torch.get_num_threads()}",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}",
        f"- load average (1, 5, 15 min) at start: {start}; at end: {load_average()}",
    ]
    out.write_text("\n".join(header) + "\n\n```text\n" + buf.getvalue().rstrip() + "\n```\n")
    print(f"wrote {out}")


class Report:
    """Collects rows of a table and writes them as markdown (with provenance) and CSV."""

    def __init__(self, name: str, title: str, command: str, versions: dict[str, str], threads: int):
        self.name, self.title, self.command = name, title, command
        self.versions, self.threads = versions, threads
        self.started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.load_start = load_average()
        self.sections: list[tuple[str, list[str], list[list[str]], str]] = []

    def table(self, heading: str, columns: Sequence[str], rows: Sequence[Sequence[object]], note: str = "") -> None:
        rows_s = [[str(c) for c in r] for r in rows]
        self.sections.append((heading, list(columns), rows_s, note))
        print(f"\n{heading}")
        widths = [max(len(c), *(len(r[i]) for r in rows_s)) for i, c in enumerate(columns)]
        print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        for r in rows_s:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if note:
            print(f"  {note}")

    def write(self, out_dir: Path = RESULTS) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        load_end = load_average()
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        lines = [
            f"# {self.title}", "",
            f"- command: `{self.command}`",
            f"- date: {self.started}; git commit {git_commit()}",
            f"- machine: {machine()}; {self.threads} thread(s) per library",
            f"- versions: Python {platform.python_version()}, {vers}",
            f"- load average (1, 5, 15 min) at start: {self.load_start}; at end: {load_end}"
            # the benchmark's own threads make a load of about ``threads``; more means someone else ran too
            + ("  **(machine shared and loaded: absolute times are inflated; compare ratios)**"
               if os.getloadavg()[0] > self.threads + 0.5 else ""),
            "",
        ]
        for i, (heading, cols, rows, note) in enumerate(self.sections):
            lines += [f"## {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            if note:
                lines += ["", note]
            lines.append("")
            with open(out_dir / f"{self.name}_{i + 1}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                w.writerows(rows)
        path = out_dir / f"{self.name}.md"
        path.write_text("\n".join(lines))
        print(f"\nwrote {path}")
        return path
