"""Record: ZO Fig. 3A at short memory (nu0 = 0.68) on several teachers — is ZO's one teacher the cause of the gap?

At ZO's configuration the book's teacher (seed 0) puts the dense RNN 26x and the LRU 4x above
ZO's published values at nu0 = 0.68 (records ``zo_fig3a_paper`` and ``zo_fig3a_ten_seeds``: ten
seeds do not close it). ZO's published points come from **one** teacher (seed 42 of JAX's
generator, which PyTorch cannot redraw; see ``zo_dense_rnn_teachers`` for the recipe). This
record trains ZO's students at ZO's configuration on several teachers drawn by that recipe at
nu0 = 0.68, one student seed each, and asks where the published value falls among the teachers'
best losses: inside their range, a teacher like ZO's is an ordinary draw and the teacher is a
sufficient cause; below all of them, the teacher is not the cause (at the 1-in-(n + 1) level of
an exchangeable draw).

ZO's configuration as in ``zo_fig3a_paper`` (hidden 64, T 300, batch 128, 10 000 cosine-decayed
Adam steps, final loss the mean of the last 100). Learning rates: three half-decades around each
architecture's best rate at nu0 = 0.68 in ``zo_fig3a_ten_seeds`` (dense 1e-3, LRU 0.1; the LRU's
0.32 diverged there), and the record says which teachers' best rate sits on an edge of that part.
Teacher 0, student seed 0 is also a member of ``zo_fig3a_ten_seeds``; the record compares the two.

Run from the repository's root (resumable per teacher: ``records/zo_fig3a_teachers/partial.csv``):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig3a_teachers.py [--teachers 8]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from floss_utils.book.records import Stopwatch, read_record, records_root, write_record
from floss_utils.curse_of_memory.student_grids import CONFIG_KEYS, RunConfig, run_grid_per_teacher
from floss_utils.curse_of_memory.student_training import best_learning_rates
from floss_utils.curse_of_memory.zo_comparison import rank_among, within_factor

NAME = "zo_fig3a_teachers"
NU0 = 0.68
PROTOCOL = dict(nu0=NU0, hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100,
                lrs={"rnn": [3.2e-3, 1e-3, 3.2e-4], "lru": [0.32, 0.1, 3.2e-2]}, student_seed=0)
#: ZO Fig. 3A at nu0 = 0.68, read off the authors' notebook (approximate; one teacher, 10 student seeds)
PUBLISHED = {"rnn": 1.3e-7, "lru": 1.4e-7}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", type=int, default=8, help="teacher seeds 0 .. n-1")
    a = ap.parse_args()
    p = PROTOCOL
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    configs = [RunConfig(arch, NU0, 3.14, hidden=p["hidden"]) for arch in p["lrs"]]
    with Stopwatch() as sw:
        runs = run_grid_per_teacher(
            configs, p["lrs"], [p["student_seed"]], range(a.teachers), partial=folder / "partial.csv",
            on_teacher=lambda ts, f: print(f"teacher {ts}\n", f[["arch", "lr", "final_loss"]].to_string(index=False),
                                           flush=True),
            steps=p["steps"], batch_size=p["batch_size"], seq_len=p["seq_len"], final_window=p["final_window"])
    runs = runs[runs.teacher_seed < a.teachers].reset_index(drop=True)
    best = best_learning_rates(runs, ["teacher_seed", *CONFIG_KEYS])
    best["on_grid_edge"] = [math.isclose(lr, min(p["lrs"][arch])) or math.isclose(lr, max(p["lrs"][arch]))
                            for arch, lr in zip(best.arch, best.lr)]
    results = {"published": PUBLISHED, "teachers": a.teachers}
    for arch, g in best.groupby("arch"):
        v = g.set_index("teacher_seed")["mean"]
        finite = v[np.isfinite(v)]
        rank, n = rank_among(PUBLISHED[arch], finite.to_numpy())
        results[arch] = {
            "per_teacher": {str(k): float(x) for k, x in v.items()},
            "min": float(finite.min()), "max": float(finite.max()),
            "geometric_mean": float(np.exp(np.log(finite).mean())),
            "published_rank": [rank, n],
            "teachers_within_factor_3": int(sum(within_factor(x, PUBLISHED[arch]) for x in finite)),
            "best_lr_on_grid_edge": int(g.on_grid_edge.sum()),
        }
    # teacher 0, student seed 0: the same member as in zo_fig3a_ten_seeds (another ensemble)
    ten = read_record("zo_fig3a_ten_seeds").table("runs")
    same = {}
    for arch in p["lrs"]:
        here = runs[(runs.teacher_seed == 0) & (runs.arch == arch)].set_index("lr").final_loss
        there = ten[(ten.arch == arch) & np.isclose(ten.nu0, NU0) & (ten.seed == p["student_seed"])].set_index("lr").final_loss
        common = [lr for lr in here.index if any(math.isclose(lr, x) for x in there.index)]
        same[arch] = {f"{lr:g}": [float(here[lr]), float(there[[math.isclose(lr, x) for x in there.index]].iloc[0])]
                      for lr in common}
    results["teacher_0_seed_0_here_and_in_zo_fig3a_ten_seeds"] = same
    write_record(NAME, description="ZO Fig. 3A at nu0 = 0.68 (ZO's configuration) on teachers 0.."
                                   f"{a.teachers - 1} drawn by ZO's recipe, one student seed each",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --teachers {a.teachers}",
                 parameters={**p, "teacher_seeds": list(range(a.teachers))}, results=results,
                 tables={"runs": runs, "best_per_teacher": best}, stopwatch=sw)
    print(best.to_string(index=False))
    print({arch: {k: v for k, v in results[arch].items() if k != "per_teacher"} for arch in p["lrs"]})


if __name__ == "__main__":
    main()
