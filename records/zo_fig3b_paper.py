"""Record: ZO Fig. 3B (the ablation at nu0 = 0.99) at ZO's own configuration, for chapter 5.

Six students learn the 10-unit teacher of memory nu0 = 0.99 (teacher seed 0, the book's
default): the dense RNN, the block-diagonal RNN of 2x2 heads, "more neurons" (twice the units,
still 2x2 heads), the complex diagonal RNN without and with the normalization gamma, and the LRU.
ZO's configuration (their `scans/ablation_LRU_p*.yaml` and `comparison_architectures_LSI_RNN.yaml`):
hidden 64 (128 for "more neurons"), T 300, batch 128, 10 000 Adam steps with a cosine decay from
the peak learning rate to 1e-7, loss 0.5 x mean squared error, final loss = mean of the last 100
steps, best learning rate by the mean final loss over seeds. Learning-rate grids: the part of ZO's own
grids (dense 3.2e-3 ... 3.2e-5; block-diagonal and "more neurons" 1e-2 ... 3.2e-4; complex
diagonal, with or without gamma, and LRU 1e-1 ... 1e-4; half-decades) around the best rate: dense
3.2e-3 ... 1e-4, block-diagonal and "more neurons" 1e-2 ... 1e-3, complex diagonal 3.2e-2 ...
3.2e-4, LRU 3.2e-2 ... 3.2e-3; the record says which best rates sit on the edge of the part run. ZO run 10 seeds; this record runs
``--seeds`` (default 3), each seed with its own student initialization and input stream.

Run from the repository's root (about 20 s per member at hidden 64 on the 2-core reference CPU,
2 threads; ~100 members at 3 seeds; resumable per architecture: finished groups are kept in
``records/zo_fig3b_paper/partial.csv``):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig3b_paper.py [--seeds 3]
"""

from __future__ import annotations

import argparse

import pandas as pd

from floss_utils.book.records import Stopwatch, records_root, write_record
from floss_utils.curse_of_memory.student_grids import CONFIG_KEYS, figure_configs, merge_runs, run_grid
from floss_utils.curse_of_memory.student_training import best_learning_rates

NAME = "zo_fig3b_paper"
HALF_DECADES = [1e-1, 3.2e-2, 1e-2, 3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5]
PROTOCOL = dict(nu0=0.99, hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100, teacher_seed=0,
                dense_seeds=10,
                lrs={"dense RNN": HALF_DECADES[3:7], "block-diag. 2x2": HALF_DECADES[2:5],
                     "more neurons (128, 2x2)": HALF_DECADES[2:5], "complex diag.": HALF_DECADES[1:6],
                     "complex diag. + $\\gamma$": HALF_DECADES[1:6], "LRU": HALF_DECADES[1:4]})
#: ZO Fig. 3B, read off the authors' notebook (approximate)
PUBLISHED = {"dense RNN": 0.4, "block-diag. 2x2": 1.8e-5, "more neurons (128, 2x2)": 2e-5, "complex diag.": 4e-5,
             "complex diag. + $\\gamma$": 2.4e-5, "LRU": 2.5e-5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds of every variant but the dense RNN")
    ap.add_argument("--variants", default="", help="comma-separated indices of the variants to run now (default: all)")
    a = ap.parse_args()
    p = PROTOCOL
    ablation = figure_configs([p["nu0"]], [3.14], [1], p["hidden"]).ablation
    if list(ablation) != list(PUBLISHED):
        raise RuntimeError(f"the ablation's variants changed: {list(ablation)}")
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.csv"
    done = pd.read_csv(partial) if partial.exists() else pd.DataFrame()
    with Stopwatch() as sw:
        chosen = [int(i) for i in a.variants.split(",") if i] or range(len(ablation))
        for i, (label, config) in enumerate(ablation.items()):
            seeds = range(p["dense_seeds"] if label == "dense RNN" else a.seeds)
            have = set(done[done["variant"] == label]["seed"]) if len(done) else set()
            if set(seeds) <= have or i not in chosen:  # a variant short of seeds runs all of them again
                continue
            frame = run_grid([config], {config.arch: p["lrs"][label]}, seeds, steps=p["steps"],
                             batch_size=p["batch_size"], seq_len=p["seq_len"], teacher_seed=p["teacher_seed"],
                             final_window=p["final_window"])
            frame.insert(0, "variant", label)
            done = merge_runs(done, frame, extra_keys=("variant",))  # the rerun replaces its earlier rows
            done.to_csv(partial, index=False)
            print(label, frame.groupby("lr")["final_loss"].describe().to_string(), flush=True)
    if len(done) == 0 or set(done["variant"]) != set(ablation):
        print("not every variant has run yet: no record written")
        return
    order = list(ablation)  # the figure's order, whatever order the variants ran in
    done = done.sort_values("variant", key=lambda v: v.map(order.index), kind="stable", ignore_index=True)
    best = best_learning_rates(done, ["variant", *CONFIG_KEYS])
    best["published"] = best["variant"].map(PUBLISHED)
    best["ratio_to_published"] = best["mean"] / best["published"]
    best["best_lr_on_grid_edge"] = [lr in (min(p["lrs"][v]), max(p["lrs"][v])) for v, lr in zip(best["variant"], best["lr"])]
    structured = best[best["variant"] != "dense RNN"]
    results = {
        "published": PUBLISHED, "seeds": a.seeds, "dense_seeds": p["dense_seeds"],
        "final_loss": dict(zip(best["variant"], best["mean"])),
        "sem": dict(zip(best["variant"], best["sem"])),
        "best_lr": dict(zip(best["variant"], best["lr"])),
        "structured_spread_factor": float(structured["mean"].max() / structured["mean"].min()),
        "dense_over_worst_structured": float(best.loc[best["variant"] == "dense RNN", "mean"].item()
                                             / structured["mean"].max()),
        "best_lr_on_grid_edge": [v for v, e in zip(best["variant"], best["best_lr_on_grid_edge"]) if e],
        # the dense RNN per learning rate over its seeds: mean (what ZO plot) against median
        "dense_per_lr": {str(lr): {"mean": float(g.mean()), "median": float(g.median()), "min": float(g.min()),
                                   "max": float(g.max()), "n": int(g.size)}
                         for lr, g in done[done["variant"] == "dense RNN"].groupby("lr")["final_loss"]},
    }
    write_record(NAME, description="ZO Fig. 3B at ZO's configuration (nu0 = 0.99, hidden 64, T 300, batch 128, "
                                   "10 000 cosine Adam steps, ZO's learning-rate grids), teacher seed 0",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --seeds {a.seeds}",
                 parameters={**p, "seeds": a.seeds}, results=results,
                 tables={"runs": done, "best": best}, stopwatch=sw)
    print(best.to_string(index=False))


if __name__ == "__main__":
    main()
