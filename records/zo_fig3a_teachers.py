"""Record: ZO Fig. 3A at one memory on several teachers — is ZO's one teacher the cause of the gap?

At ZO's configuration the book's teacher (seed 0) puts the dense RNN 26x and the LRU 4x above
ZO's published values at nu0 = 0.68, the dense RNN 3.2x above at nu0 = 0.84 and 11x below at
nu0 = 0.98 (records ``zo_fig3a_paper`` and ``zo_fig3a_ten_seeds``: ten seeds do not close these gaps). ZO's published
points come from **one** teacher (seed 42 of JAX's generator, which PyTorch cannot redraw; see
``zo_dense_rnn_teachers`` for the recipe). This record trains ZO's students at ZO's configuration
on several teachers drawn by that recipe at one memory, one student seed each, and asks where the
published value falls among the teachers' best losses: inside their range, a teacher like ZO's is
an ordinary draw and the teacher is a sufficient cause; below all of them, the teacher is not the
cause (at the 1-in-(n + 1) level of an exchangeable draw).

ZO's configuration as in ``zo_fig3a_paper`` (hidden 64, T 300, batch 128, 10 000 cosine-decayed
Adam steps, final loss the mean of the last 100; published values from its ``PUBLISHED``).
Learning rates: three half-decades around each architecture's best rate at that memory in
``zo_fig3a_ten_seeds`` (dense 1e-3 at each memory, LRU 0.1 at 0.68; the LRU's 0.32 diverged
there), and the record says which teachers' best rate sits on an edge of that part. Teacher 0,
student seed 0 is also a member of ``zo_fig3a_ten_seeds``; the record compares the two runs.

One record per memory: ``zo_fig3a_teachers`` (nu0 = 0.68, dense RNN and LRU; the first, named
before the others existed), ``zo_fig3a_teachers_084`` and ``zo_fig3a_teachers_098`` (nu0 = 0.84
and 0.98, the dense RNN: the LRU is within the factor of 3 there at ten seeds). At long memory one
student seed per teacher confounds the teacher with the seeds that stall (chapter 5), so there the
record bounds the teacher's effect rather than measuring it. Run from the repository's root (resumable per teacher:
``records/<name>/partial.csv``; a larger ``--teachers`` extends a committed record, keeping its runs and
their provenance; to run every teacher again, remove the record's folder first):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig3a_teachers.py [--nu0 0.68] [--teachers 8]
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np

from floss_utils.book.records import Stopwatch, read_record, record_script, records_root, write_record
from floss_utils.curse_of_memory.student_grids import CONFIG_KEYS, RunConfig, best_at_grid_edge, run_grid_per_teacher
from floss_utils.curse_of_memory.student_training import best_learning_rates
from floss_utils.curse_of_memory.zo_comparison import same_member_factors, teacher_record_summary

#: per memory: the record's name and the learning rates run per architecture
MEMORIES = {
    0.68: ("zo_fig3a_teachers", {"rnn": [3.2e-3, 1e-3, 3.2e-4], "lru": [0.32, 0.1, 3.2e-2]}),
    0.84: ("zo_fig3a_teachers_084", {"rnn": [3.2e-3, 1e-3, 3.2e-4]}),
    0.98: ("zo_fig3a_teachers_098", {"rnn": [3.2e-3, 1e-3, 3.2e-4]}),
}
PROTOCOL = dict(hidden=64, seq_len=300, batch_size=128, steps=10_000, final_window=100, student_seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nu0", type=float, default=0.68, choices=sorted(MEMORIES), help="the memory")
    ap.add_argument("--teachers", type=int, default=8, help="teacher seeds 0 .. n-1")
    a = ap.parse_args()
    name, lrs = MEMORIES[a.nu0]
    published = {arch: record_script("zo_fig3a_paper").PUBLISHED[arch][a.nu0] for arch in lrs}
    p = {"nu0": a.nu0, **PROTOCOL, "lrs": lrs}
    folder = records_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    configs = [RunConfig(arch, a.nu0, 3.14, hidden=p["hidden"]) for arch in lrs]
    partial, earlier = folder / "partial.csv", None
    if not partial.exists() and (folder / "runs.csv").exists():  # extend the record to more teachers: its runs are kept
        committed = json.loads((folder / "record.json").read_text())
        if a.teachers <= committed["results"]["teachers"]:
            raise SystemExit(f"records/{name} already holds {committed['results']['teachers']} teachers: pass a larger "
                             f"--teachers to extend it, or remove records/{name}/ to run it again")
        earlier = committed["provenance"]
        shutil.copyfile(folder / "runs.csv", partial)
    with Stopwatch() as sw:
        runs = run_grid_per_teacher(
            configs, lrs, [p["student_seed"]], range(a.teachers), partial=partial,
            on_teacher=lambda ts, f: print(f"teacher {ts}\n", f[["arch", "lr", "final_loss"]].to_string(index=False),
                                           flush=True),
            steps=p["steps"], batch_size=p["batch_size"], seq_len=p["seq_len"], final_window=p["final_window"])
    runs = runs[runs.teacher_seed < a.teachers].reset_index(drop=True)
    best = best_learning_rates(runs, ["teacher_seed", *CONFIG_KEYS])
    best["on_grid_edge"] = best_at_grid_edge(best, lrs)
    results = {"published": published, "teachers": a.teachers,
               "earlier_runs_provenance": earlier}  # where the runs of teachers kept from an earlier version came from
    for arch, g in best.groupby("arch"):
        results[arch] = teacher_record_summary(g, published[arch])
    # teacher 0, student seed 0: the same member as in zo_fig3a_ten_seeds (another ensemble)
    ten = read_record("zo_fig3a_ten_seeds").table("runs")
    same = same_member_factors(runs[runs.teacher_seed == 0], ten[np.isclose(ten.nu0, a.nu0)], list(CONFIG_KEYS))
    results["teacher_0_seed_0_here_and_in_zo_fig3a_ten_seeds"] = {
        arch: {f"{r.lr:g}": [float(r.first), float(r.second)] for r in g.itertuples()} for arch, g in same.groupby("arch")}
    write_record(name, description=f"ZO Fig. 3A at nu0 = {a.nu0:g} (ZO's configuration) on teachers 0.."
                                   f"{a.teachers - 1} drawn by ZO's recipe, one student seed each",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig3a_teachers.py --nu0 {a.nu0:g} "
                         f"--teachers {a.teachers}",
                 parameters={**p, "teacher_seeds": list(range(a.teachers))}, results=results,
                 tables={"runs": runs, "best_per_teacher": best}, stopwatch=sw)
    print(best.to_string(index=False))
    print({arch: {k: v for k, v in results[arch].items() if k != "per_teacher"} for arch in lrs})


if __name__ == "__main__":
    main()
