"""Record: GF's flossing schedules at the public code's own configuration, to be set beside
chapter 10's `book` scale (section 10.4). ``--estimate`` prints the projected cost of a run first (2026-12-05,
AMD EPYC, 2 threads, 10 seeds: about 1.1 h, an upper bound); the committed record ran 7 seeds, the fewest with which
Holm's five tests can pass.

GF's public protocol (the configuration of Engelken's public code, not tied to a figure): N = 80 tanh units, one
batch of B = 16 sequences of T = 300 per epoch, 3001 epochs, Adam 1e-3 with per-tensor clipping
0.03; flossing k = 75 exponents to 0 on 55-step trajectories with a QR every step, Adam 1e-3;
500 pre-flossing steps; during training 500 steps at epochs that are multiples of 100, at most 2
rounds. Tasks: XOR with lags (10, 20) and (20, 40). Schedules none, pre, inter, both; >= 7 seeds (10 by default).
Every (seed, schedule, task) is one member of one batched ensemble (floss_utils.flossing.train).
GF's claims are decided as in chapter 10 (``floss_utils.flossing.schedule_claims``): paired over
(seed, task), exact one-sided sign tests over seeds, the five decided together at family-wise 0.05
(Holm), so at least 7 seeds are needed for the smallest p to pass (2^-7 <= 0.05 / 5).

Run from the repository's root:

    OMP_NUM_THREADS=2 .venv/bin/python records/gf_schedules_paper.py [--seeds 10] [--estimate]

``--estimate`` times 3 epochs and 3 flossing steps of the full ensemble and prints the
extrapolated cost of the whole run, without writing a record.
"""

from __future__ import annotations

import argparse
import time

import torch

from floss_utils.book.records import Stopwatch, write_record
from floss_utils.flossing import (FlossingConfig, TrainConfig, grid, member_table, schedule, schedule_claims,
                                  success_summary, train, xor_task)

NAME = "gf_schedules_paper"
PROTOCOL = dict(n_units=80, seq_len=300, batch_size=16, epochs=3001, lr=1e-3, clip=0.03, n_floss=75,
                floss_lr=1e-3, ons=1, pre_steps=500, inter_steps=500, inter_every=100, inter_rounds=2,
                xor_delays=[10, 20], eval_every=10, success_threshold=0.95, dtype="float64")


def members_and_config(n_seeds: int, epochs: int | None = None):
    p = PROTOCOL
    names = ("none", "pre", "inter", "both")
    scheds = [schedule(n, p["pre_steps"], p["inter_steps"], p["inter_every"], p["inter_rounds"]) for n in names]
    members = grid(list(range(n_seeds)), scheds, [xor_task(d) for d in p["xor_delays"]])
    tc = TrainConfig(epochs=epochs or p["epochs"], batch_size=p["batch_size"], seq_len=p["seq_len"], lr=p["lr"],
                     clip=p["clip"], n_units=p["n_units"],
                     flossing=FlossingConfig(k=p["n_floss"], lr=p["floss_lr"], ons=p["ons"]),
                     success_threshold=p["success_threshold"], eval_every=p["eval_every"],
                     exponents_every=p["inter_every"], dtype=p["dtype"], device="auto")
    return members, tc


def estimate(n_seeds: int) -> None:
    """Time 3 task epochs (no flossing) and 3 flossing steps of every flossed member; extrapolate."""
    p = PROTOCOL
    members, tc = members_and_config(n_seeds, epochs=3)
    none = [m for m in members if m.schedule.name == "none"]
    t0 = time.perf_counter()
    train(none, tc)
    task_s = (time.perf_counter() - t0) / (3 * len(none))  # per member-epoch
    pre = [m for m in members if m.schedule.name == "pre"]
    short = schedule("pre", 3, 0, p["inter_every"], 0)
    t0 = time.perf_counter()
    train([type(m)(m.net_seed, m.data_seed, m.task, short) for m in pre], tc)
    floss_s = max(0.0, (time.perf_counter() - t0) / len(pre) - 3 * task_s) / 3  # per member-step
    n_task = len(members) * p["epochs"]
    n_floss = sum(m.schedule.total_steps for m in members)
    total = n_task * task_s + n_floss * floss_s
    print(f"{len(members)} members; task step {1e3 * task_s:.1f} ms and flossing step {1e3 * floss_s:.1f} ms "
          f"per member; {n_task} member-epochs and {n_floss} member-flossing steps: about {total / 3600:.1f} h "
          f"with {torch.get_num_threads()} threads (the ensemble batches members, so this is an upper bound)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="network seeds per condition (>= 7: fewer cannot pass Holm over the 5 tests)")
    ap.add_argument("--estimate", action="store_true", help="time a few steps and print the projected cost")
    args = ap.parse_args()
    if args.seeds < 7:
        raise SystemExit("--seeds must be at least 7 (with Holm over 5 tests, 2^-seeds must be <= 0.01)")
    if args.estimate:
        estimate(args.seeds)
        return
    members, tc = members_and_config(args.seeds)
    with Stopwatch() as sw:
        res = train(members, tc)
    table = member_table(res)
    summary = success_summary(table, level=0.95)  # with 95 % Wilson intervals
    gf = schedule_claims(table, alpha=0.05)  # paired over (seed, task), decided by sign tests over seeds
    results = {"contrasts": gf.contrasts.to_dict("list"), "further_horizon_both_vs_pre": gf.further,
               "speed_pre_vs_none": gf.speed, "speed_tasks": [list(t) for t in gf.speed_tasks],
               "median_epochs_saved_by_pre": gf.epochs_saved, "alpha_family_wise": gf.alpha,
               "supported_holm": gf.supported}
    write_record(NAME, description="GF's flossing schedules (none, pre, inter, both) at the public code's "
                 "configuration on XOR with lags (10, 20) and (20, 40): success within 3001 epochs",
                 command=f"OMP_NUM_THREADS=2 .venv/bin/python records/{NAME}.py --seeds {args.seeds}",
                 parameters={**PROTOCOL, "n_seeds": args.seeds}, results=results,
                 tables={"members": table, "success_summary": summary, "contrasts": gf.contrasts}, stopwatch=sw)


if __name__ == "__main__":
    main()
