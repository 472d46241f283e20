"""Record: ZO Fig. 3A (final loss against the teacher's memory nu0) at ZO's own configuration, for chapter 5.

The dense linear RNN and the LRU learn the 10-unit teacher (teacher seed 0, the book's default)
at each memory nu0 of ZO's axis below 0.99 (the point nu0 = 0.99 is the record
``zo_fig3b_paper``, with 10 dense seeds). ZO's configuration (their
`scans/comparison_architectures_LSI_*.yaml`): hidden 64, T 300, batch 128, 10 000 Adam steps with
a cosine decay from the peak learning rate to 1e-7, loss 0.5 x mean squared error, final loss =
mean of the last 100 steps, best learning rate by the mean final loss over seeds. Learning rates:
ZO's grids (dense 3.2e-3 ... 3.2e-5, LRU 0.32 ... 0.0032, half-decades), for the dense RNN without
its last rate: dense 3.2e-3 ... 1e-4, LRU 0.32 ... 3.2e-3. (Grown in three steps: first dense
3.2e-3 ... 3.2e-4 and LRU 3.2e-2 ... 3.2e-3, the part that holds the best rate at nu0 = 0.99; the
LRU's best rate was then on the upper edge at every memory and the dense RNN's on the lower edge at
0.92, so 1e-4 and 0.1 were added; the LRU's best rate was then 0.1 at nu0 0.36 and 0.68, so 0.32
was added.) The record says which best rates sit on an edge of the part run beyond
which ZO's grid continues. ZO run 10 seeds; this record runs ``--seeds`` (default 3).

Run from the repository's root (every missing memory runs in one ensemble per architecture: about
4 minutes per 10 000-step ensemble on the 2-core reference CPU, 2 threads, nearly whatever its
size; 162 members at 3 seeds and the 6 memories; resumable per (memory, architecture, learning rate):
finished runs are kept in ``records/zo_fig3a_paper/partial.csv``, seeded from the committed
``runs.csv`` when there is no partial file, so that a rate added to the grid runs only its members):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig3a_paper.py [--seeds 3] [--nu0s 0.36,0.68,...]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from floss_utils.book.records import Stopwatch, records_root, write_record
from floss_utils.curse_of_memory.student_grids import merge_runs, CONFIG_KEYS, RunConfig, missing_learning_rates, run_grid
from floss_utils.curse_of_memory.student_training import best_learning_rates

NAME = "zo_fig3a_paper"
NU0S = [0.36, 0.68, 0.84, 0.92, 0.96, 0.98]
PROTOCOL = dict(hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100, teacher_seed=0,
                lrs={"rnn": [3.2e-3, 1e-3, 3.2e-4, 1e-4], "lru": [3.2e-1, 1e-1, 3.2e-2, 1e-2, 3.2e-3]})
#: ZO's whole learning-rate grids (half-decades), of which PROTOCOL runs a part
ZO_GRIDS = {"rnn": [3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5], "lru": [3.2e-1, 1e-1, 3.2e-2, 1e-2, 3.2e-3]}
#: ZO Fig. 3A, read off the authors' notebook (approximate)
PUBLISHED = {"rnn": {0.36: 1e-8, 0.68: 1.3e-7, 0.84: 2e-5, 0.92: 8e-5, 0.96: 6e-4, 0.98: 5e-2},
             "lru": {0.36: 6e-8, 0.68: 1.4e-7, 0.84: 1e-6, 0.92: 2.5e-6, 0.96: 5e-6, 0.98: 5e-5}}


def on_open_edge(arch: str, lr: float) -> bool:
    """Whether ``lr`` is an edge of the part of ZO's grid run here beyond which ZO's grid continues."""
    run, zo = PROTOCOL["lrs"][arch], ZO_GRIDS[arch]
    return (math.isclose(lr, max(run)) and max(zo) > max(run) * 1.01) or \
        (math.isclose(lr, min(run)) and min(zo) < min(run) / 1.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per memory, architecture and learning rate")
    ap.add_argument("--nu0s", default=",".join(map(str, NU0S)), help="comma-separated memories (of ZO's axis below 0.99)")
    a = ap.parse_args()
    nu0s = [float(v) for v in a.nu0s.split(",") if v]
    unknown = [v for v in nu0s if v not in NU0S]
    if unknown:
        raise SystemExit(f"--nu0s: {unknown} not on ZO's axis below 0.99 {NU0S}")
    p = PROTOCOL
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.csv"
    seed_file = partial if partial.exists() else folder / "runs.csv"
    done = pd.read_csv(seed_file) if seed_file.exists() else pd.DataFrame()
    done = done[done["seed"] < a.seeds] if len(done) else done
    with Stopwatch() as sw:
        # memories missing the same learning rates run in one call: one ensemble per architecture
        # holds every memory (the cost is per Adam step, nearly independent of the members)
        batches: dict[str, list[float]] = {}
        for nu0 in nu0s:
            todo = missing_learning_rates(done, PROTOCOL["lrs"], where={"nu0": nu0}, seeds=a.seeds)
            if todo:
                batches.setdefault(repr(sorted(todo.items())), []).append(nu0)
        for key, batch in batches.items():
            todo = missing_learning_rates(done, PROTOCOL["lrs"], where={"nu0": batch[0]}, seeds=a.seeds)
            configs = [RunConfig(arch, nu0, 3.14, hidden=p["hidden"]) for nu0 in batch for arch in todo]
            frame = run_grid(configs, todo, range(a.seeds), steps=p["steps"], batch_size=p["batch_size"],
                             seq_len=p["seq_len"], teacher_seed=p["teacher_seed"], final_window=p["final_window"])
            # a learning rate short of seeds runs all of them again: the new run replaces its earlier rows, so
            # that every seed of a point comes from one ensemble and none is counted twice
            done = merge_runs(done, frame)
            done.to_csv(partial, index=False)
            print(frame.groupby(["arch", "nu0", "lr"])["final_loss"].mean().to_string(), flush=True)
    if any(missing_learning_rates(done, PROTOCOL["lrs"], where={"nu0": v}, seeds=a.seeds) for v in nu0s):
        print("not every memory has run yet: no record written")
        return
    done = done[[np.isclose(nu0s, v).any() for v in done["nu0"]]]
    best = best_learning_rates(done, list(CONFIG_KEYS))
    best["published"] = [PUBLISHED[r.arch][min(PUBLISHED[r.arch], key=lambda k: abs(k - r.nu0))] for r in best.itertuples()]
    best["ratio_to_published"] = best["mean"] / best["published"]
    best["best_lr_on_grid_edge"] = [on_open_edge(arch, lr) for arch, lr in zip(best["arch"], best["lr"])]
    results = {
        "published": {arch: {str(k): v for k, v in pts.items() if k in nu0s} for arch, pts in PUBLISHED.items()},
        "seeds": a.seeds, "nu0s": nu0s,
        "final_loss": {arch: {str(r.nu0): r.mean for r in g.itertuples()} for arch, g in best.groupby("arch")},
        "best_lr_on_grid_edge": [f"{r.arch} {r.nu0}" for r in best.itertuples() if r.best_lr_on_grid_edge],
        "n_diverged": int(done["diverged"].sum()),
    }
    write_record(NAME, description="ZO Fig. 3A at ZO's configuration (hidden 64, T 300, batch 128, 10 000 cosine "
                                   "Adam steps): dense RNN and LRU at the memories below 0.99, teacher seed 0",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --seeds {a.seeds} --nu0s {a.nu0s}",
                 parameters={**p, "seeds": a.seeds, "nu0s": nu0s}, results=results,
                 tables={"runs": done, "best": best}, stopwatch=sw)
    print(best.to_string(index=False))


if __name__ == "__main__":
    main()
