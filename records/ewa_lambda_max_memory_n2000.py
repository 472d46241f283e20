"""Record: chapter 1's largest cell at ``paper`` scale, its memory and its cost per step.

Chapter 1's lambda_max-vs-N cell runs, per coupling draw, ``tanh_spectra(N, gains, k=1, ...)`` for
the paper's 29 gains at N = 100, 400, 1000 and 2000 (10 000 steps after a 1 000-step transient, 3
draws). A paper run of 2026-12-06 (older code) reached 11.5 GiB resident by N = 2000; the run of
2026-12-07 (e8d5f6a) peaked at 0.65 GiB but stopped at N = 1000. This record runs that cell's call at
N = 2000 for 100 and then for 400 steps in one process and reads the resident memory after each (and
its peak, sampled every 0.2 s): equal values mean no growth per step, so the paper's 11 000 steps
need the same. The seconds per step give the cell's time at N = 2000 by proportion (steps x draws).

Run from the repository's root (about 2 minutes on a 2-core AMD EPYC, 1 thread):

    OMP_NUM_THREADS=1 .venv/bin/python records/ewa_lambda_max_memory_n2000.py
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import torch

from floss_utils.book.records import Stopwatch, write_record
from floss_utils.lyapunov.random_networks import tanh_spectra

NAME = "ewa_lambda_max_memory_n2000"
PROTOCOL = dict(n_units=2000, gains=[round(0.5 + 0.125 * i, 3) for i in range(29)], k=1, step_counts=[100, 400],
                seed=13, paper_steps=11000, paper_draws=3)


def main() -> None:
    p = PROTOCOL
    proc = psutil.Process(os.getpid())
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    rows = []
    with Stopwatch() as sw:
        for steps in p["step_counts"]:
            t0 = time.perf_counter()
            run = tanh_spectra(p["n_units"], p["gains"], k=p["k"], steps=steps, transient=0, seed=p["seed"],
                               dtype=torch.float64)
            wall = time.perf_counter() - t0
            rows.append({"steps": steps, "wall_s": wall, "s_per_step": wall / steps,
                         "rss_after_GiB": proc.memory_info().rss / 2**30, "peak_so_far_GiB": peak[0] / 2**30})
            del run
    stop.set()
    per_step = rows[-1]["s_per_step"]
    results = {"runs": rows, "peak_GiB": peak[0] / 2**30,
               "rss_growth_GiB_from_100_to_400_steps": rows[-1]["rss_after_GiB"] - rows[0]["rss_after_GiB"],
               "cell_at_n2000_minutes_by_proportion": per_step * p["paper_steps"] * p["paper_draws"] / 60,
               "threads": torch.get_num_threads()}
    write_record(NAME, description="Chapter 1's lambda_max call at N = 2000 with the paper's 29 gains (k = 1): "
                                   "resident memory after 100 and after 400 steps, its peak, and the seconds per step",
                 command=f"OMP_NUM_THREADS=1 .venv/bin/python records/{NAME}.py", parameters=p, results=results,
                 stopwatch=sw)
    print(results)


if __name__ == "__main__":
    main()
