"""Record: ZO Figs. 4 and 9 (bottom), Adam's effective learning rates, at ZO's own configuration, for chapter 6.

Four students learn the 10-unit teacher of memory nu0 = 0.99 (teacher seed 0, the book's default;
ZO's own teacher comes from a JAX seed that cannot be redrawn here): the dense linear RNN, the
complex diagonal RNN without normalization, the LRU and the diagonal S4 (``S4D``), the diagonal
ones ring-initialized on [0.99, 1) as ZO's ``--force_lsi_min_nu_model``; and the S4D once more
with the initial phases ZO's public code actually draws (``phases="zo_code"``: within 0.014 rad of
the real axis, since the code divides by the raw step parameter; see ``S4D``), to test whether
that initialization is what sets ZO's S4 panel apart. ZO's configuration (the
commands in their ``figures/linear_system_adam_lr.ipynb``): hidden 64, T 300, batch 128, Adam at
a **constant** learning rate for 10 000 steps, then the effective learning rate of every
parameter (Adam's update for a unit gradient, ``opt.update(ones, state)``). ZO use lr 1e-3 for
every student; this record runs the half-decades from 1e-2 to 1e-5, so that each student can
also be read at its best rate away from the grid's edges, with 5 student seeds per rate (ZO: one
run). (The grid stopped at 3.2e-5 until 2026-12-07: rerun on another CPU, the dense RNN's best
rate moved onto that edge, its median losses at 1e-4 and 3.2e-5 having been within 2 % of each
other; 1e-5 was added then.) All members of a student see the
same input batches (one data stream, seed 7, as chapter 6); seeds differ in their initialization.

Per member the record keeps the final loss (mean over the last 10 % of steps), the mean over the
10 % before, the final loss relative to the loss of the zero output (the teacher's output
variance / 2), the factor by which the loss moves per tenth of training (a line through the log
batch loss over the last half: whether the loss still moves; ``AdamRun.loss_trend``), and the median |effective learning rate| of every parameter
tensor, with Adam's ceiling ``sqrt(10) lr`` to compare students run at different rates.

Run from the repository's root (one 10 000-step program of 175 members, about 7 minutes on the
2-core AMD EPYC reference CPU, 2 threads):

    OMP_NUM_THREADS=2 .venv/bin/python records/zo_fig4_adam_paper.py
"""

from __future__ import annotations

import pandas as pd

from floss_utils.book.records import Stopwatch, write_record
from floss_utils.curse_of_memory import LRU, S4D, ComplexDiagonalRNN, DenseRNN, make_teacher
from floss_utils.curse_of_memory import landscape as ls

NAME = "zo_fig4_adam_paper"
PROTOCOL = dict(nu0=0.99, teacher_hidden=10, hidden=64, seq_len=300, batch_size=128, steps=10_000, schedule="constant",
                lrs=[1e-2, 3.2e-3, 1e-3, 3.2e-4, 1e-4, 3.2e-5, 1e-5], seeds=5, seed_base=1000, data_seed=7, teacher_seed=0,
                final_fraction=0.1, trend_fraction=0.5)
#: ZO Figs. 4 and 9 (bottom): median effective learning rates at lr 1e-3 (approximate, read off the panels)
PUBLISHED = {"dense RNN": {"A": 1.9e-7, "B": 1.1e-5, "C": 5e-6, "D": 1.4e-3},
             "complex diagonal": {"lam_re": 2.0e-3, "lam_im": 2.0e-3},
             "LRU": {"lam_mag": 3.1e-3, "lam_ang": 1.2e-4, "gamma_log": 3e-3},
             "S4D": {"A_re": 4e-5, "A_im": 8.5e-5}}


def students(seeds: list[int], p: dict) -> dict:
    r = p["nu0"]
    return {"dense RNN": DenseRNN(seeds, p["hidden"]),
            "complex diagonal": ComplexDiagonalRNN(seeds, p["hidden"], r_min=r),
            "LRU": LRU(seeds, p["hidden"], r_min=r),
            "S4D": S4D(seeds, p["hidden"], r_min=r),
            "S4D, ZO code's phases": S4D(seeds, p["hidden"], r_min=r, phases="zo_code")}


def main() -> None:
    p = PROTOCOL
    teacher = make_teacher(p["teacher_seed"], p["nu0"], hidden=p["teacher_hidden"])
    zero_loss = teacher.zero_output_loss(p["seq_len"])  # the expected loss of a student that outputs 0
    seeds = [p["seed_base"] + s for s in range(p["seeds"]) for _ in p["lrs"]]
    lrs = [lr for _ in range(p["seeds"]) for lr in p["lrs"]]
    models = students(seeds, p)
    with Stopwatch() as sw:
        runs = ls.train_keep_adam_state(list(models.values()), teacher, lr=lrs, steps=p["steps"],
                                        data_seed=p["data_seed"], batch_size=p["batch_size"], seq_len=p["seq_len"])
    members, effective = [], []
    for name, run in zip(models, runs):
        final, before = run.final_losses(p["final_fraction"])
        trend = run.loss_trend(p["trend_fraction"], p["final_fraction"])  # factor per tenth, fitted over the last half
        eff = run.effective_learning_rates()
        for i, (seed, lr) in enumerate(zip(seeds, lrs)):
            members.append({"student": name, "lr": lr, "seed": seed, "final_loss": float(final[i]),
                            "loss_before": float(before[i]), "zero_output_loss": zero_loss,
                            "relative_loss": float(final[i]) / zero_loss, "loss_trend": float(trend[i]),
                            "diverged": bool(run.diverged[i])})
            ceiling = ls.adam_ceiling(lr, run.step)
            for param, t in eff.items():
                median = float(t[i].abs().median())
                effective.append({"student": name, "lr": lr, "seed": seed, "parameter": param,
                                  "median_effective_lr": median, "ceiling": ceiling,
                                  "fraction_of_ceiling": median / ceiling})
    members, effective = pd.DataFrame(members), pd.DataFrame(effective)
    summary = (effective.groupby(["student", "lr", "parameter"], sort=False)[["median_effective_lr", "fraction_of_ceiling"]]
               .median().reset_index())
    losses = members.groupby(["student", "lr"], sort=False)["relative_loss"].agg(["median", "min", "max"]).reset_index()
    results = {"published": PUBLISHED, "zero_output_loss": zero_loss,
               "median_over_seeds": summary.to_dict(orient="records"),
               "relative_loss_over_seeds": losses.to_dict(orient="records"),
               "n_diverged": int(members["diverged"].sum())}
    write_record(NAME, description="ZO Figs. 4/9 (bottom) at ZO's configuration: Adam's effective learning rates of "
                                   "dense RNN, complex diagonal RNN, LRU and S4D students (S4D also with ZO's code's initial phases) after 10 000 constant-lr steps "
                                   "(nu0 = 0.99, hidden 64, T 300, batch 128), lr 1e-2 ... 1e-5 (ZO's: 1e-3), 5 seeds",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py",
                 parameters={**p, "published_lr": 1e-3}, results=results,
                 tables={"members": members, "effective_learning_rates": effective}, stopwatch=sw)
    print(losses.to_string(index=False))
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
