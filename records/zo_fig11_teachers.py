"""Record: ZO Fig. 11 at 8 heads on several teachers — is ZO's one teacher the cause of the gap?

At ZO's configuration the 64-unit linear RNN split into 8 heads ends 290x below ZO's published
0.12 with ZO's 10 seeds on the book's teacher (seed 0; record ``zo_fig11_ten_seeds``: no seed
stalls at the best rates), so ZO's drop between 8 and 16 heads is not reproduced. ZO's points
come from **one** teacher (seed 42 of JAX's generator, which PyTorch cannot redraw; see
``zo_dense_rnn_teachers`` for the recipe). This record trains the 8-head student at ZO's
configuration on several teachers drawn by that recipe (nu0 = 0.99), one student seed each, at
the three rates of ``zo_fig11_ten_seeds`` (1e-3, 3.2e-4, 1e-4), and asks where the published value
falls among the teachers' best losses (as ``zo_fig3a_teachers`` does for Fig. 3A). Teacher 0,
student seed 0 is also a member of ``zo_fig11_ten_seeds``; the record compares the two runs.

Run from the repository's root (about 20 s per member on the 2-core reference CPU; resumable per
teacher: ``records/zo_fig11_teachers/partial.csv``):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig11_teachers.py [--teachers 8]
"""

from __future__ import annotations

import argparse

from floss_utils.book.records import Stopwatch, read_record, record_script, records_root, write_record
from floss_utils.curse_of_memory.student_grids import CONFIG_KEYS, RunConfig, best_at_grid_edge, run_grid_per_teacher
from floss_utils.curse_of_memory.student_training import best_learning_rates
from floss_utils.curse_of_memory.zo_comparison import same_member_factors, teacher_record_summary

NAME = "zo_fig11_teachers"
HEADS = 8
LRS = {"rnn": [1e-3, 3.2e-4, 1e-4]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", type=int, default=8, help="teacher seeds 0 .. n-1")
    a = ap.parse_args()
    fig11 = record_script("zo_fig11_paper")
    p = {k: fig11.PROTOCOL[k] for k in ("nu0", "hidden", "seq_len", "batch_size", "steps", "final_window")}
    p |= {"heads": HEADS, "lrs": LRS, "student_seed": 0}
    published = fig11.PUBLISHED[HEADS]
    folder = records_root() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    config = RunConfig("rnn", p["nu0"], 3.14, heads=HEADS, hidden=p["hidden"])
    with Stopwatch() as sw:
        runs = run_grid_per_teacher(
            [config], LRS, [p["student_seed"]], range(a.teachers), partial=folder / "partial.csv",
            on_teacher=lambda ts, f: print(f"teacher {ts}\n", f[["lr", "final_loss"]].to_string(index=False), flush=True),
            steps=p["steps"], batch_size=p["batch_size"], seq_len=p["seq_len"], final_window=p["final_window"])
    runs = runs[runs.teacher_seed < a.teachers].reset_index(drop=True)
    best = best_learning_rates(runs, ["teacher_seed", *CONFIG_KEYS])
    best["on_grid_edge"] = best_at_grid_edge(best, LRS)
    ten = read_record("zo_fig11_ten_seeds").table("runs")
    same = same_member_factors(runs[runs.teacher_seed == 0], ten, list(CONFIG_KEYS))
    results = {"published": published, "teachers": a.teachers, "rnn": teacher_record_summary(best, published),
               "teacher_0_seed_0_here_and_in_zo_fig11_ten_seeds": {f"{r.lr:g}": [float(r.first), float(r.second)]
                                                                   for r in same.itertuples()}}
    write_record(NAME, description=f"ZO Fig. 11 at {HEADS} heads (ZO's configuration, nu0 = 0.99) on teachers 0.."
                                   f"{a.teachers - 1} drawn by ZO's recipe, one student seed each",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --teachers {a.teachers}",
                 parameters={**p, "teacher_seeds": list(range(a.teachers))}, results=results,
                 tables={"runs": runs, "best_per_teacher": best}, stopwatch=sw)
    print(best.to_string(index=False))
    print({k: v for k, v in results["rnn"].items() if k != "per_teacher"})


if __name__ == "__main__":
    main()
