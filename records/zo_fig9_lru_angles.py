"""Record: does the LRU's initial angle range set its angle's effective learning rate (ZO Fig. 9)?

Chapter 6's record ``zo_fig4_adam_paper`` finds the LRU's angle parameter ``omega_theta``
(``theta = exp(omega_theta)``) at a median effective learning rate of ~2e-3 after 10 000 Adam
steps, where ZO's Fig. 9 shows 1.2e-4. This book's ring initialization draws the angles on
[0, pi); ZO's public code (``nu_init`` in ``source/model.py``) draws them uniformly on
[-max_phase, max_phase) = [-pi, pi) and wraps them to [0, 2pi). With ``theta = exp(omega)`` the
gradient with respect to ``omega`` is ``theta`` times that with respect to ``theta``, so larger
angles give larger gradients and, under Adam, smaller effective learning rates. A look at 5
seeds (seeds 1000-1004, not kept) moved the median about 4x toward ZO's value, with overlapping
samples; this record tests it on 10 fresh seeds per range (2000-2009).

Configuration: ZO's (as ``zo_fig4_adam_paper``): teacher of 10 units, nu0 = 0.99 (teacher seed
0), LRU students of 64 units ring-initialized on [0.99, 1), T 300, batch 128, Adam at ZO's
constant lr 1e-3 for 10 000 steps, one data stream (seed 7). The two ranges are run as one
ensemble of 20 members, so both see the same batches.

Per member the record keeps the final loss relative to the zero-output loss (mean over the last
10 % of steps; the 10 % before, to see whether it still moves) and the median |effective
learning rate| of each parameter tensor. Results: per range the median over seeds, and the
exact one-sided Mann-Whitney test that [0, pi) gives larger ``omega_theta`` effective learning
rates than [0, 2pi) (the direction stated before the run, from the 5-seed look).

Run from the repository's root (about 3 minutes on the 2-core reference CPU, 2 threads):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig9_lru_angles.py
"""

from __future__ import annotations

import math

import pandas as pd

from floss_utils.book.records import Stopwatch, write_record
from floss_utils.curse_of_memory import LRU, make_teacher
from floss_utils.curse_of_memory import landscape as ls

NAME = "zo_fig9_lru_angles"
PROTOCOL = dict(nu0=0.99, teacher_hidden=10, hidden=64, seq_len=300, batch_size=128, steps=10_000, schedule="constant",
                lr=1e-3, seeds=10, seed_base=2000, data_seed=7, teacher_seed=0, final_fraction=0.1, trend_fraction=0.5)
#: initial angles drawn on [0, max_phase): the book's ring, and the range ZO's code draws
RANGES = {"[0, pi) (book)": math.pi, "[0, 2pi) (ZO's code)": 2 * math.pi}
#: ZO Fig. 9 (LRU panel): median effective learning rates at lr 1e-3, read off the panel
PUBLISHED = {"lam_mag": 3.1e-3, "lam_ang": 1.2e-4, "gamma_log": 3e-3}


def main() -> None:
    p = PROTOCOL
    teacher = make_teacher(p["teacher_seed"], p["nu0"], hidden=p["teacher_hidden"])
    zero_loss = teacher.zero_output_loss(p["seq_len"])
    seeds = [p["seed_base"] + s for s in range(p["seeds"])]
    labels = [label for label in RANGES for _ in seeds]
    all_seeds = seeds * len(RANGES)
    phases = [RANGES[label] for label in labels]
    model = LRU(all_seeds, p["hidden"], r_min=p["nu0"], max_phase=phases)
    with Stopwatch() as sw:
        (run,) = ls.train_keep_adam_state([model], teacher, lr=p["lr"], steps=p["steps"], data_seed=p["data_seed"],
                                          batch_size=p["batch_size"], seq_len=p["seq_len"])
    final, before = run.final_losses(p["final_fraction"])
    trend = run.loss_trend(p["trend_fraction"], p["final_fraction"])  # factor per tenth, fitted over the last half
    eff = run.effective_learning_rates()
    ceiling = ls.adam_ceiling(p["lr"], run.step)
    rows = []
    for i, (label, seed) in enumerate(zip(labels, all_seeds)):
        row = {"angle_range": label, "seed": seed, "relative_loss": float(final[i]) / zero_loss,
               "relative_loss_before": float(before[i]) / zero_loss, "loss_trend": float(trend[i]),
               "diverged": bool(run.diverged[i])}
        for param, t in eff.items():
            row[f"eff_{param}"] = float(t[i].abs().median())
        rows.append(row)
    members = pd.DataFrame(rows)
    medians = members.drop(columns=["seed", "diverged"]).groupby("angle_range", sort=False).median()
    book, zo = (members.loc[members["angle_range"] == label, "eff_lam_ang"] for label in RANGES)
    ratio, p_value = ls.effective_lr_contrast(book, zo)
    results = {"published": PUBLISHED, "ceiling": ceiling, "zero_output_loss": zero_loss,
               "median_over_seeds": medians.reset_index().to_dict(orient="records"),
               "lam_ang_ratio_book_over_zo": ratio, "lam_ang_p_one_sided": p_value,
               "n_diverged": int(members["diverged"].sum())}
    write_record(NAME, description="ZO Fig. 9 (LRU): the LRU angle's effective learning rate after 10 000 Adam steps at "
                                   "ZO's configuration, initial angles on [0, pi) (book) vs [0, 2pi) (ZO's code), 10 seeds each",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py",
                 parameters={**p, "angle_ranges": RANGES}, results=results, tables={"members": members}, stopwatch=sw)
    print(medians.to_string())
    print(f"omega_theta: median ratio [0,pi)/[0,2pi) = {ratio:.3g}, one-sided exact Mann-Whitney p = {p_value:.3g}")


if __name__ == "__main__":
    main()
