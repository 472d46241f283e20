"""What pinning MKL's AVX2 branch costs, and whether it buys identical bits: the same program in fresh
processes under three settings of MKL's code branch, interleaved:

* ``AVX2`` - ``MKL_CBWR=AVX2``, what ``import floss_utils`` sets (conditional numerical
  reproducibility, CNR, on the AVX2 kernels);
* ``AUTO`` - ``MKL_CBWR=AUTO``: CNR on the kernels MKL would pick for this CPU (fixed cache sizes,
  deterministic reductions, static scheduling, in Intel's words);
* ``default`` - no ``MKL_CBWR``: MKL's own choice without CNR (the process computes once before
  importing ``floss_utils``, so the package's pin comes too late: MKL reads the variable at its
  first computation).

    .venv/bin/python benchmarks/bench_mkl_branch.py [--processes 6] [--units 20 80] [--record mkl_branch]

The program is chapter 12's flossing at a small size (``tests/test_reproducibility.py``'s: 40 GF
networks, batch 4, basis k = 16, trajectories of 55 steps, a QR every 3 steps, 20 Adam steps) at
each ``--units`` N, two threads. Each process times the flossing alone (after importing and
building the networks) and prints its result's bits (the sum of the loss history and of J). Per
branch and N: the median time over the processes, its ratio to the default's median, and the
number of distinct results among the processes (1: every process gave the same bits). On a CPU
without MKL (e.g. ARM) the setting does nothing and the three are the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BRANCHES = ("AVX2", "AUTO", "default")

PROGRAM = """
import sys, time
import torch
a = torch.eye(64, dtype=torch.float64)
torch.linalg.qr(a @ a)  # MKL's first computation: it reads MKL_CBWR now, before floss_utils could set it
from floss_utils.flossing import init_gf_networks, Flosser, FlossingConfig
torch.set_num_threads(2)
n_units, steps = int(sys.argv[1]), int(sys.argv[2])
members = [(t, s) for t in (None, 0.0, -0.1, -0.3, -1.0) for s in range(8)]
seeds = [s for _, s in members]
net = init_gf_networks(seeds, n_units, 4, dtype=torch.float64, device="cpu")
flosser = Flosser(net, FlossingConfig(k=16, steps=55, lr=0.01, ons=3), seeds,
                  targets=[0.0 if t is None else t for t, _ in members])
t0 = time.perf_counter()
hist = flosser.run(steps, active=[t is not None for t, _ in members])
elapsed = time.perf_counter() - t0
print(elapsed, repr(hist["loss"].nansum().item()), repr(net.J.sum().item()))
"""


def one_process(branch: str, n_units: int, steps: int) -> tuple[float, str]:
    """(seconds of flossing, the result's bits) of one fresh process under ``branch`` (a value of
    ``MKL_CBWR``, or ``"default"``: the variable unset)."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env.update(OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT))
    if branch != "default":
        env["MKL_CBWR"] = branch
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(n_units), str(steps)], env=env, capture_output=True,
                         text=True, timeout=1200, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"MKL_CBWR={branch}, N = {n_units}: the process failed:\n{out.stderr[-2000:]}")
    seconds, *bits = out.stdout.split()
    return float(seconds), " ".join(bits)


def main(processes: int, units: list[int], steps: int) -> None:
    print(f"machine: {_common.machine()}; {processes} processes per branch and N, interleaved; 2 threads; "
          f"{steps} flossing steps")
    print("| N | branch | median s | min-max s | median / median of default | distinct results |")
    print("|---|---|---|---|---|---|")
    for n in units:
        times: dict[str, list[float]] = {b: [] for b in BRANCHES}
        bits: dict[str, set[str]] = {b: set() for b in BRANCHES}
        for _ in range(processes):
            for b in BRANCHES:  # interleaved: a change of load hits both branches alike
                t, r = one_process(b, n, steps)
                times[b].append(t)
                bits[b].add(r)
        med = {b: statistics.median(v) for b, v in times.items()}
        for b in BRANCHES:
            ratio = f"{med[b] / med['default']:.2f}"
            print(f"| {n} | {b} | {med[b]:.2f} | {min(times[b]):.2f}-{max(times[b]):.2f} | {ratio} | "
                  f"{len(bits[b])} of {processes} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=6, help="fresh processes per branch and size")
    ap.add_argument("--units", type=int, nargs="+", default=[20, 80], help="network sizes N")
    ap.add_argument("--steps", type=int, default=20, help="flossing steps")
    ap.add_argument("--record", default="", help="also write the output to benchmarks/results/NAME.md")
    args = ap.parse_args()
    if args.processes < 1 or args.steps < 1 or any(n < 16 for n in args.units):
        ap.error("--processes and --steps must be >= 1 and every --units >= 16 (the basis has 16 vectors)")
    _common.run_or_record(args.record, "bench_mkl_branch.py",
                          lambda: main(args.processes, args.units, args.steps))
