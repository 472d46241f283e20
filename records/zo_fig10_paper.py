"""Record: ZO Fig. 10 (the range of eigenvalue angles) at ZO's own configuration, for chapter 5.

The teacher's eigenvalue angles (and the diagonal students' initial angles) are squeezed into
theta0 = {0.01, 0.03, 0.1, 0.3, 1} pi (``make_teacher(..., max_phase=theta0)``), at memory nu0 =
0.99, and three students learn each teacher: the dense linear RNN, the complex diagonal RNN without
normalization and the LRU (teacher seed 0, the book's default; ZO's own teacher comes from a JAX seed
that cannot be redrawn here). ZO's configuration: hidden 64, T 300, batch 128, 10 000 Adam steps
with a cosine decay from the peak learning rate, best learning rate by the mean final loss (last 100
steps) over seeds; float64 (ZO's code: float32).

Learning rates: ZO's half-decade grids of Fig. 3B (dense RNN 3.2e-3 ... 3.2e-5; LRU 0.32 ... 3.2e-3; the
complex diagonal RNN on the LRU's grid continued down to 3.2e-4, as in Fig. 3B's record, whose best
rate for it, 3.2e-3, is the end of ZO's grid). ZO's own scans for Fig. 10 (``scans/shrink_eigvals_p1``-``p3.yaml``)
use other grids (LRU 1 ... 3.2e-4, complex diagonal 1e-2 ... 3.2e-4, dense RNN 1e-3 ... 3.2e-5); the
``zo_lrs`` and ``best_lr_on_zo_grid_edge`` of this record refer to the Fig. 3B grids, and chapter 5
compares the best rates with the Fig. 10 scans' grids instead are walked from three rates around the best rate of
Fig. 3B's record (run at theta0 = 3.14, ZO's pi to three digits) (dense 1e-3, complex diagonal 3.2e-3, LRU 1e-2): while a
configuration's best rate sits on an edge of the rates run and the grid continues, the next rate
beyond it is run (:func:`floss_utils.curse_of_memory.student_grids.beyond_edge`). So no best rate is
on an edge of the rates run unless the grid ends there; the record lists the best rates on an
edge of ZO's own grid.
ZO run 10 seeds; this record runs ``--seeds`` (default 3), each seed with its own student
initialization and input stream.

Run from the repository's root (about 20 s per member on the 2-core reference CPU, 2 threads; 135
members or more at 3 seeds; resumable per architecture, angle range and learning rate: finished
runs are kept in ``records/zo_fig10_paper/partial.csv``):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig10_paper.py [--seeds 3] [--theta0 0.01,0.03,0.1,0.3,1]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from floss_utils.book.records import Stopwatch, records_root, write_record
from floss_utils.curse_of_memory.student_grids import (CONFIG_KEYS, merge_runs, RunConfig, beyond_edge, missing_learning_rates,
                                                       run_grid, runs_at_best)
from floss_utils.curse_of_memory.student_training import best_learning_rates

NAME = "zo_fig10_paper"
ZO_GRID_DIAGONAL = [0.32, 0.1, 3.2e-2, 1e-2, 3.2e-3]
PROTOCOL = dict(nu0=0.99, hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100, teacher_seed=0,
                theta0_over_pi=[0.01, 0.03, 0.1, 0.3, 1.0],
                zo_lrs={"rnn": [3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5], "complex": ZO_GRID_DIAGONAL, "lru": ZO_GRID_DIAGONAL},
                walk_lrs={"rnn": [3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5], "complex": ZO_GRID_DIAGONAL + [1e-3, 3.2e-4],
                          "lru": ZO_GRID_DIAGONAL},
                start_lrs={"rnn": [3.2e-3, 1e-3, 3.2e-4], "complex": [1e-2, 3.2e-3, 1e-3],
                           "lru": [3.2e-2, 1e-2, 3.2e-3]})
#: ZO Fig. 10 (bottom): final loss at nu0 = 0.99 per theta0 / pi, read off the panel (approximate)
PUBLISHED = {"rnn": {0.01: 6e-2, 0.03: 0.8, 0.1: 1.0, 0.3: 2.6e-2, 1.0: 0.5},
             "complex": {0.01: 3e-5, 0.03: 3e-5, 0.1: 2e-5, 0.3: 3e-5, 1.0: 4.5e-5},
             "lru": {0.01: 4.5e-7, 0.03: 1.8e-6, 0.1: 1.2e-6, 0.3: 3e-6, 1.0: 2.6e-5}}


def _rows(done: pd.DataFrame, config: RunConfig) -> pd.DataFrame:
    if not len(done):
        return done
    return done[(done.arch == config.arch) & np.isclose(done.max_phase, config.max_phase, rtol=1e-9, atol=0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="student seeds per configuration and learning rate")
    ap.add_argument("--theta0", default=",".join(f"{f:g}" for f in PROTOCOL["theta0_over_pi"]),
                    help="comma-separated angle ranges theta0 / pi, a subset of ZO's five (default: all five)")
    a = ap.parse_args()
    fracs = [float(f) for f in a.theta0.split(",")]
    unknown = [f for f in fracs if not any(math.isclose(f, g) for g in PROTOCOL["theta0_over_pi"])]
    if unknown:
        raise SystemExit(f"--theta0: {unknown} are not among ZO's angle ranges {PROTOCOL['theta0_over_pi']}")
    p = {**PROTOCOL, "theta0_over_pi": fracs}
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.csv"
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame()
    grids_run: dict[str, list[float]] = {}
    with Stopwatch() as sw:
        for frac in p["theta0_over_pi"]:
            for arch in ("rnn", "complex", "lru"):
                config = RunConfig(arch, p["nu0"], math.pi * frac, hidden=p["hidden"])
                rates = list(p["start_lrs"][arch])
                while True:
                    todo = missing_learning_rates(done, {arch: rates}, where={"max_phase": config.max_phase}, seeds=a.seeds)
                    if todo:
                        frame = run_grid([config], todo, range(a.seeds), steps=p["steps"], batch_size=p["batch_size"],
                                         seq_len=p["seq_len"], teacher_seed=p["teacher_seed"],
                                         final_window=p["final_window"])
                        done = merge_runs(done, frame)  # a seed run again replaces its earlier row
                        done.to_csv(partial, index=False)
                        print(f"{arch} theta0 = {frac:g} pi\n", frame.groupby("lr")["final_loss"].describe().to_string(),
                              flush=True)
                    rows = _rows(done, config)
                    rows = rows[np.isin(np.round(rows.lr.astype(float), 12), np.round(rates, 12))]
                    best = best_learning_rates(rows, list(CONFIG_KEYS))
                    b = best.iloc[0]
                    nxt = beyond_edge(float(b["lr"]) if math.isfinite(b["mean"]) else math.inf, rates, p["walk_lrs"][arch])
                    if nxt is None:
                        break
                    rates.append(nxt)
                grids_run[f"{arch} {frac:g}"] = sorted(rates)
    runs = pd.concat([_rows(done, RunConfig(arch, p["nu0"], math.pi * frac, hidden=p["hidden"]))
                      [lambda f, r=grids_run[f"{arch} {frac:g}"]: np.isin(np.round(f.lr.astype(float), 12), np.round(r, 12))]
                      for frac in p["theta0_over_pi"] for arch in ("rnn", "complex", "lru")], ignore_index=True)
    best = best_learning_rates(runs, list(CONFIG_KEYS))
    best["theta0_over_pi"] = np.round(best["max_phase"] / math.pi, 6)
    best = best.sort_values(["arch", "theta0_over_pi"], ignore_index=True)
    best["published"] = [next(v for k, v in PUBLISHED[arch].items() if math.isclose(k, frac, rel_tol=1e-6))
                         for arch, frac in zip(best.arch, best.theta0_over_pi)]
    best["ratio_to_published"] = best["mean"] / best["published"]
    best["best_lr_on_zo_grid_edge"] = [np.isclose(lr, min(p["zo_lrs"][arch])) or np.isclose(lr, max(p["zo_lrs"][arch]))
                                       for arch, lr in zip(best.arch, best.lr)]
    seeds = runs_at_best(runs, best.drop(columns=["theta0_over_pi", "published", "ratio_to_published",
                                                  "best_lr_on_zo_grid_edge"]))
    seeds["theta0_over_pi"] = np.round(seeds["max_phase"] / math.pi, 6)
    by = seeds.groupby(["arch", "theta0_over_pi"]).final_loss

    def per_point(values) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (arch, frac), v in values.items():
            out.setdefault(arch, {})[f"{frac:g}"] = float(v)
        return out

    results = {
        "published": {arch: {f"{k:g}": v for k, v in pts.items() if any(math.isclose(k, f) for f in fracs)}
                      for arch, pts in PUBLISHED.items()},
        "seeds": a.seeds,
        "final_loss": per_point({(r.arch, r.theta0_over_pi): r.mean for r in best.itertuples()}),
        "sem": per_point({(r.arch, r.theta0_over_pi): r.sem for r in best.itertuples()}),
        "best_lr": per_point({(r.arch, r.theta0_over_pi): r.lr for r in best.itertuples()}),
        "seed_min": per_point(by.min().to_dict()),
        "seed_max": per_point(by.max().to_dict()),
        "grids_run": grids_run,
        "best_lr_on_zo_grid_edge": [f"{r.arch} {r.theta0_over_pi:g}" for r in best.itertuples() if r.best_lr_on_zo_grid_edge],
        "n_diverged": int(runs["diverged"].sum()),
    }
    write_record(NAME, description="ZO Fig. 10 at ZO's configuration: dense RNN, complex diagonal RNN and LRU on "
                                   "teachers with eigenvalue angles within theta0 = 0.01 ... 1 pi (nu0 = 0.99, T 300, "
                                   "batch 128, 10 000 cosine Adam steps, ZO's learning-rate grids walked from Fig. 3B's "
                                   "best rates until the best is inside), teacher seed 0",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --seeds {a.seeds} --theta0 {a.theta0}",
                 parameters={**p, "seeds": a.seeds}, results=results,
                 tables={"runs": runs, "best": best}, stopwatch=sw)
    print(best.to_string(index=False))


if __name__ == "__main__":
    main()
