"""Record: the numbers of heads of ZO Fig. 11 outside the factor of 3 at 3 seeds, rerun with ZO's 10 seeds.

At ZO's configuration with 3 seeds (record ``zo_fig11_paper``) the 64-unit linear RNN split into 4
and 8 heads ends 140x and 1000x below ZO's published values (0.2 and 0.12): ZO's drop between 8
and 16 heads is not reproduced. One head, also far below at 3 seeds, lands within the factor with
10 seeds (record ``zo_fig3b_paper``: the same configuration), because some seeds stall and carry
ZO's 10-seed mean. This record tests that candidate for 4 and 8 heads: the same configuration and
seeds 0 ... 9 (ZO's count) at the rates around their best (ZO's 1e-3 and 1e-4 and the record's
3.2e-4; the larger rates of the grid diverged at 3 seeds). Seeds 0-2 rerun here: their final
losses set beside the 3-seed record's show how far one member moves when it is trained again in
another ensemble.

With ``--dtype float32`` (ZO's code's precision; record ``zo_fig11_ten_seeds_float32``) the same
runs in float32: the same initialization (drawn in float64, then rounded), but float32 draws its own
input stream from each seed, so no member is the float64 record's member.

Run from the repository's root (about 20 s per member on the 2-core reference CPU; resumable per
number of heads and learning rate: finished runs are kept in ``records/<record>/partial.csv``):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig11_ten_seeds.py [--heads 4,8] [--dtype float64]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from floss_utils.book.records import Stopwatch, read_record, record_script, records_root, write_record
from floss_utils.curse_of_memory.student_grids import (CONFIG_KEYS, figure_configs, merge_runs, missing_learning_rates,
                                                       run_grid, runs_at_best)
from floss_utils.curse_of_memory.student_training import best_learning_rates
from floss_utils.curse_of_memory.zo_comparison import same_member_factors, within_factor

NAME = "zo_fig11_ten_seeds"
SEEDS = 10  # ZO's seeds per point
LRS = [1e-3, 3.2e-4, 1e-4]


def main() -> None:
    fig11 = record_script("zo_fig11_paper")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", default="4,8", help="comma-separated numbers of heads (of ZO's Fig. 11)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="the training precision")
    a = ap.parse_args()
    name = NAME if a.dtype == "float64" else f"{NAME}_{a.dtype}"
    heads = [int(h) for h in a.heads.split(",") if h]
    p = fig11.PROTOCOL
    bad = [h for h in heads if h not in p["heads"]]
    if bad:
        raise SystemExit(f"--heads: {bad} not among ZO's {p['heads']}")
    configs = [c for c in figure_configs([p["nu0"]], [3.14], heads, p["hidden"]).fig11]
    folder = records_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.csv"
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame()
    with Stopwatch() as sw:
        for config in configs:
            todo = missing_learning_rates(done, {config.arch: LRS}, where={"heads": config.heads}, seeds=SEEDS)
            if not todo:
                continue
            frame = run_grid([config], todo, range(SEEDS), steps=p["steps"], batch_size=p["batch_size"],
                             seq_len=p["seq_len"], teacher_seed=p["teacher_seed"], final_window=p["final_window"],
                             dtype=getattr(torch, a.dtype))
            done = merge_runs(done, frame)
            done.to_csv(partial, index=False)
            print(config.heads, "heads\n", frame.groupby("lr")["final_loss"].describe().to_string(), flush=True)
    done = done[done.heads.isin(heads)].reset_index(drop=True)
    keys = list(CONFIG_KEYS)
    three = read_record("zo_fig11_paper")
    best10 = best_learning_rates(done, keys).sort_values("heads", ignore_index=True)
    best3 = best_learning_rates(done[done.seed < 3], keys).sort_values("heads", ignore_index=True)
    seeds = runs_at_best(done, best10).groupby("heads").final_loss
    # the same members trained twice (float64 only: float32 draws other inputs, so its members are not the record's)
    twice = same_member_factors(three.table("runs") if a.dtype == "float64" else three.table("runs").iloc[:0], done, keys)
    table = pd.DataFrame({
        "heads": best10.heads, "published": best10.heads.map(fig11.PUBLISHED),
        "record_3_seeds": [three.results["final_loss"][str(h)] for h in best10.heads],
        "here_seeds_0_2": best3["mean"], "lr_seeds_0_2": best3.lr,
        "ten_seeds": best10["mean"], "lr_ten_seeds": best10.lr, "n_diverged_ten": best10.n_diverged,
        "median_ten": [float(seeds.median()[h]) for h in best10.heads],
        "max_ten": [float(seeds.max()[h]) for h in best10.heads],
        "largest_factor_same_member": [float(twice[twice.heads == h].factor.max()) if (twice.heads == h).any()
                                       else float("nan") for h in best10.heads]})
    table["ratio_to_published"] = table.ten_seeds / table.published
    results = {
        "heads": heads, "seeds": SEEDS, "lrs": LRS, "dtype": a.dtype,
        "ten_seeds": {str(r.heads): r.ten_seeds for r in table.itertuples()},
        "record_3_seeds": {str(r.heads): r.record_3_seeds for r in table.itertuples()},
        "published": {str(r.heads): r.published for r in table.itertuples()},
        "within_factor_3": {str(r.heads): within_factor(r.ten_seeds, r.published) for r in table.itertuples()},
    }
    write_record(name, description="ZO Fig. 11's numbers of heads outside the factor of 3 at 3 seeds, rerun at ZO's "
                                   f"10 seeds (configuration of zo_fig11_paper; rates 1e-3, 3.2e-4, 1e-4; {a.dtype})",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --heads {a.heads} --dtype {a.dtype}",
                 parameters={**p, "heads": heads, "lrs": LRS, "seeds": SEEDS, "dtype": a.dtype}, results=results,
                 tables={"runs": done, "comparison": table, "same_member": twice}, stopwatch=sw)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
