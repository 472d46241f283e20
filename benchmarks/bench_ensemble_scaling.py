"""Ensembles: throughput against the number of members, and where it stops scaling.

    .venv/bin/python benchmarks/bench_ensemble_scaling.py [--members 1,4,16,64,256] [--repeats R]

For M members trained as one tensor program, throughput = member-steps per second. Perfect
batching keeps the time per step flat in M (throughput grows like M) while a fixed per-step cost
(Python, per-operator dispatch) dominates; once the arithmetic dominates, the time grows like M and
the throughput saturates. The table shows per M: time per step, throughput, throughput relative to
M = 1 (the batching speed-up) and the efficiency ``speed-up / M`` (1 = every member as cheap as
the first one; the knee is where it falls below ~0.5), plus the peak resident memory.

1. Teacher-student (Part II, ``floss_utils.curse_of_memory.student_training.train_ensemble``): LRU students, hidden 64,
   T = 300, batch 128, one data stream per member, Adam with per-member cosine schedule.
2. Gradient flossing (Part III, ``floss_utils.flossing.flosser.Flosser``): GF networks N = 80, one
   flossing step = 55-step trajectory, k = 75 exponents, backward through every QR, Adam.
3. Task training (Part III, ``floss_utils.flossing.trainer.train``): GF networks on XOR,
   one epoch = batch 16, T = 300, forward + backward + Adam + held-out accuracy (each timed call
   also builds and relaxes the networks, amortized over ``--steps`` epochs).

One thread (``--threads``); times are medians over repeats.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", default="1,4,16,64,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="steps/epochs per timed call")
    ap.add_argument("--only", default="ts,floss,task", help="which of ts,floss,task to run")
    ap.add_argument("--no-write", action="store_true")
    return ap.parse_args()


args = parse()
_common.pin_threads(args.threads)

import torch  # noqa: E402

torch.set_num_threads(args.threads)

from floss_utils.flossing.flosser import Flosser, FlossingConfig
from floss_utils.flossing.trainer import TrainConfig, grid, schedule, train
from floss_utils.curse_of_memory.students import LRU
from floss_utils.flossing.tanh_network import init_gf_networks
from floss_utils.flossing.tasks import xor_task
from floss_utils.curse_of_memory.teacher import make_teacher
from floss_utils.curse_of_memory.student_training import train_ensemble


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def teacher_student(M: int, steps: int):
    teacher = make_teacher(0, 0.99)
    seeds = list(range(M))
    lrs = [0.01] * M
    student = LRU(seeds, 64, r_min=0.99)  # built once; train_ensemble trains it further each call
    return lambda: train_ensemble(student, teacher, lr=lrs, steps=steps, data_seeds=seeds,
                                  batch_size=128, seq_len=300, final_window=1)


def flossing(M: int, steps: int):
    seeds = list(range(M))
    fl = Flosser(init_gf_networks(seeds), FlossingConfig(), seeds)  # built once, outside the timing
    return lambda: fl.run(steps)


def task(M: int, steps: int):
    members = grid(list(range(M)), [schedule("none")], [xor_task(10)])
    cfg = TrainConfig(epochs=steps)
    return lambda: train(members, cfg)


def scaling(name: str, make, members: list[int], steps: int, repeats: int):
    rows, base = [], None
    for M in members:
        t = _common.median_time(make(M, steps), repeats) / steps
        thr = M / t
        base = thr if base is None else base
        speed = thr / base
        rows.append([M, f"{t * 1e3:.1f}", f"{thr:.1f}", f"{speed:.1f}x", f"{speed / M:.2f}", f"{peak_mb():.0f}"])
        print(f"  {name}: M = {M}: {t * 1e3:.1f} ms/step", flush=True)
    return rows


def main() -> None:
    members = [int(m) for m in args.members.split(",")]
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ensemble_scaling.py " + " ".join(sys.argv[1:])
    rep = _common.Report("ensemble_scaling", "Ensembles: throughput vs number of members", cmd.strip(),
                         {"torch": torch.__version__}, args.threads)
    cols = ["members M", "ms per step", "member-steps / s", "speed-up vs M = 1", "efficiency (speed-up / M)",
            "peak RSS so far (MB)"]
    only = args.only.split(",")
    if "ts" in only:
        rep.table("teacher-student, LRU hidden 64, T = 300, batch 128 (train_ensemble)", cols,
                  scaling("ts", teacher_student, members, args.steps, args.repeats))
    if "floss" in only:
        rep.table("gradient flossing, N = 80, k = 75, 55 steps (Flosser.run)", cols,
                  scaling("floss", flossing, members, args.steps, args.repeats))
    if "task" in only:
        rep.table("GF task training, XOR, batch 16, T = 300 (flossing_training.train, epochs)", cols,
                  scaling("task", task, members, args.steps, args.repeats))
    if not args.no_write:
        rep.write()


if __name__ == "__main__":
    main()
