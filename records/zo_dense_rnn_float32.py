"""Record: does precision explain the dense RNN's gap to ZO at nu0 = 0.99? The same runs in float32.

ZO's code trains in float32 (JAX's default); the book's records run in float64. This record
repeats the dense RNN of ``zo_fig3b_paper`` — ZO's configuration: teacher seed 0, nu0 = 0.99,
hidden 64, T 300, batch 128, 10 000 Adam steps with a cosine decay to 1e-7, final loss = mean of
the last 100 steps, the same learning rates (3.2e-3 ... 1e-4) and the same 10 seeds — in float32,
and sets it beside the float64 record: mean and median over the seeds at each learning rate, the
best rate's mean (ZO plot the mean of 10 seeds, 0.4), the number of seeds that stall (final loss
above 0.1: stalled or only partly trained; ZO's 0.4 cannot come from seeds below it alone; chapter 5
shows the gap in which no seed ends, so that the count does not hinge on the value),
and the exact McNemar test of the stalls paired by seed (each precision at its own best rate). The
initialization is the same in both precisions (drawn in float64, then
rounded), the input stream is not: float32 draws its own numbers from the same seed, so the two
runs differ in their inputs as well as in their precision.

Run from the repository's root (one ensemble of 40 members, minutes on the 2-core reference CPU,
2 threads; resumable: finished learning rates are kept in ``records/zo_dense_rnn_float32/partial.csv``,
seeded from the committed ``runs.csv`` when there is no partial file; with nothing left to run the
record is rewritten from its runs and keeps the times of the run that computed them):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_dense_rnn_float32.py
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from floss_utils.book.records import Stopwatch, read_record, records_root, write_record
from floss_utils.common import mcnemar_exact
from floss_utils.curse_of_memory.student_grids import figure_configs, run_grid
from floss_utils.curse_of_memory.student_training import best_learning_rates

NAME = "zo_dense_rnn_float32"
FLOAT64 = "zo_fig3b_paper"
PROTOCOL = dict(nu0=0.99, hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100, teacher_seed=0,
                seeds=10, lrs=[3.2e-3, 1e-3, 3.2e-4, 1e-4], dtype="float32")
STALL = 0.1  # final loss above which a seed counts as stalled (see the docstring)


def per_lr(runs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean, median, min, max, stalled and diverged seeds per learning rate (diverged: inf loss)."""
    out = {}
    for lr, g in runs.groupby("lr"):
        v = g["final_loss"].to_numpy()
        ok = np.isfinite(v)
        out[f"{lr:g}"] = {"mean": float(v.mean()) if ok.all() else float("inf"),
                          "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
                          "n": int(v.size), "stalled": int((v > STALL).sum()), "diverged": int((~ok).sum())}
    return out


def best_rate(runs: pd.DataFrame) -> float:
    """The learning rate with the smallest mean final loss over seeds (no seed diverged)."""
    return float(best_learning_rates(runs.assign(arch="rnn"), ["arch"])["lr"].iloc[0])


def stalled_by_seed(runs: pd.DataFrame, lr: float) -> pd.Series:
    """Per seed (index): whether it ends above STALL at learning rate ``lr``."""
    at = runs[np.isclose(runs["lr"], lr)].set_index("seed")["final_loss"].sort_index()
    return at > STALL


def main() -> None:
    p = PROTOCOL
    dense = figure_configs([p["nu0"]], [3.14], [1], p["hidden"]).ablation["dense RNN"]
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.csv"
    seed_file = partial if partial.exists() else folder / "runs.csv"
    done = pd.read_csv(seed_file) if seed_file.exists() else pd.DataFrame()
    todo = [lr for lr in p["lrs"] if not (len(done) and any(math.isclose(lr, h) for h in done["lr"].unique()))]
    with Stopwatch() as sw:
        if todo:  # one ensemble for every missing rate and seed (the cost is per Adam step)
            frame = run_grid([dense], {dense.arch: todo}, range(p["seeds"]), steps=p["steps"],
                             batch_size=p["batch_size"], seq_len=p["seq_len"], teacher_seed=p["teacher_seed"],
                             final_window=p["final_window"], dtype=torch.float32)
            done = pd.concat([done, frame], ignore_index=True)
            done.to_csv(partial, index=False)
            print(frame.groupby("lr")["final_loss"].describe().to_string(), flush=True)
    if not todo and (folder / "record.json").exists():  # nothing trained: keep the times of the run that did
        sw = Stopwatch.of_earlier_run(read_record(NAME).provenance)
    f64_runs = read_record(FLOAT64).table("runs")
    f64_runs = f64_runs[f64_runs["variant"] == "dense RNN"]
    s32, s64 = per_lr(done), per_lr(f64_runs)
    b32, b64 = best_rate(done), best_rate(f64_runs)
    st32, st64 = stalled_by_seed(done, b32), stalled_by_seed(f64_runs, b64)
    if not st32.index.equals(st64.index):
        raise ValueError(f"the two precisions ran different seeds: {list(st32.index)} vs {list(st64.index)}")
    only32, only64, p_paired = mcnemar_exact(st32.to_numpy(), st64.to_numpy())
    results = {
        "published": 0.4, "stall_threshold": STALL,
        "float32": {"best_lr": b32, **s32[f"{b32:g}"]}, "float64": {"best_lr": b64, **s64[f"{b64:g}"]},
        "per_lr_float32": s32, "per_lr_float64": s64,
        "stalled_seeds": {"both": int((st32 & st64).sum()), "float32_only": only32, "float64_only": only64,
                          "mcnemar_p": p_paired},
        "n_diverged_float32": int((~np.isfinite(done["final_loss"])).sum()),
    }
    write_record(NAME, description="ZO's dense RNN at nu0 = 0.99 and ZO's configuration in float32 (ZO's precision), "
                                   "10 seeds, beside the float64 runs of zo_fig3b_paper",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py",
                 parameters=p, results=results, tables={"runs": done}, stopwatch=sw)
    print(pd.DataFrame({"float32": s32[f"{b32:g}"], "float64": s64[f"{b64:g}"]}).to_string(),
          f"\nstalled seeds {results['stalled_seeds']}")


if __name__ == "__main__":
    main()
