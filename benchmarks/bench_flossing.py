"""Benchmark of gradient flossing and the ensemble trainer: prints ratios from one run.

    python benchmarks/bench_flossing.py [--repeats R] [--epochs E] [--floss-steps S]

The public GF protocol (N = 80, B = 16, T = 300, XOR with lags (10, 20), 3001 epochs, E_p = 500
pre-flossing steps, N_i = 2 rounds of E_i = 500 inter-flossing steps; flossing k = 75 exponents on
T_p = 55 steps) takes hours per network; it is measured on a reduced number of epochs and flossing
steps, and extrapolated *per epoch and per flossing step*:

    time(protocol) = 3001 * t_task + 1500 * t_floss

where ``t_task`` is the time of one training epoch (fresh batch, forward + backward through 300
steps, clipped Adam step, held-out accuracy on a fresh batch) and ``t_floss`` the time of one
flossing step (55-step trajectory, 75 exponents, backward through every QR, Adam step), both timed
through the library's own ``train`` / ``Flosser`` code paths.

1. Ensemble: 16 seeds batched as one program vs 4 seeds run one after another
   (goal: batched time <= sequential time, i.e. ratio <= 1).
2. One flossing step vs one task step (per network; goal: ratio <= 1), for GF's QR every step
   and for a QR every 3 steps (identical exponents and gradients to round-off, see
   ``FlossingConfig.ons``), alone and batched over 16 networks.
3. Differentiable spectrum: forward + backward vs forward alone (16 networks, k = 75, T_p = 55).

Times are medians over repeats, on the default torch threads; ``--dtype float32`` trains in
float32 (the public code's precision) while flossing still computes in float64.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from floss_utils.flossing.flosser import Flosser, FlossingConfig, flossing_loss, network_exponents
from floss_utils.flossing.trainer import TrainConfig, grid, schedule, train
from floss_utils.lyapunov.estimator import random_orthonormal
from floss_utils.flossing.tanh_network import init_gf_networks
from floss_utils.flossing.tasks import xor_task

EPOCHS, PRE, INTER, ROUNDS = 3001, 500, 500, 2


def task_epoch_time(M: int, epochs: int, repeats: int, dtype: str) -> float:
    cfg = TrainConfig(epochs=epochs, dtype=dtype)
    members = grid(list(range(M)), [schedule("none")], [xor_task(10)])
    return _common.median_time(lambda: train(members, cfg), repeats) / epochs


def floss_step_time(M: int, steps: int, repeats: int, dtype: str, ons: int = 1) -> float:
    def run() -> None:
        net = init_gf_networks(list(range(M)), dtype=dtype)
        Flosser(net, FlossingConfig(ons=ons), list(range(M))).run(steps)
    return _common.median_time(run, repeats) / steps


def spectrum_times(repeats: int, M: int = 16) -> tuple[float, float]:
    net = init_gf_networks(list(range(M)))
    bits = torch.randint(0, 2, (55, M), generator=torch.Generator().manual_seed(0)).double()
    q0 = random_orthonormal(M, 80, 75, generator=torch.Generator().manual_seed(1))
    net.requires_grad_(True)

    def fwd() -> None:
        with torch.no_grad():
            network_exponents(net, bits, k=75, transient=16, q0=q0)

    def fwd_bwd() -> None:
        lam = network_exponents(net, bits, k=75, transient=16, q0=q0)
        torch.autograd.grad(flossing_loss(lam).sum(), [net.J, net.W_s, net.b])

    return _common.median_time(fwd, repeats), _common.median_time(fwd_bwd, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10, help="task epochs timed per measurement")
    ap.add_argument("--floss-steps", type=int, default=5, help="flossing steps timed per measurement")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                    help="training precision (flossing always computes in float64)")
    ap.add_argument("--record", metavar="NAME", default="",
                    help="also write the output to benchmarks/results/NAME.md with provenance")
    a = ap.parse_args()
    _common.run_or_record(a.record, "bench_flossing.py", lambda: run(a))


def run(a) -> None:
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, training in {a.dtype}, CPU, "
          f"load average {load:.2f} at start")

    t_task1 = task_epoch_time(1, a.epochs, a.repeats, a.dtype)
    t_task16 = task_epoch_time(16, a.epochs, a.repeats, a.dtype)
    t_fl1 = floss_step_time(1, a.floss_steps, a.repeats, a.dtype)
    t_fl16 = floss_step_time(16, a.floss_steps, a.repeats, a.dtype)
    t_fl1_3 = floss_step_time(1, a.floss_steps, a.repeats, a.dtype, ons=3)
    t_fl16_3 = floss_step_time(16, a.floss_steps, a.repeats, a.dtype, ons=3)
    n_floss = PRE + INTER * ROUNDS

    def protocol(t_task: float, t_fl: float) -> float:
        return EPOCHS * t_task + n_floss * t_fl

    print(f"\n[1] GF protocol ({EPOCHS} epochs, {n_floss} flossing steps), extrapolated per epoch "
          f"(timed {a.epochs} epochs) and per flossing step (timed {a.floss_steps} steps)")
    print(f"  per epoch:          1 network {t_task1 * 1e3:8.1f} ms   16 batched {t_task16 * 1e3:8.1f} ms")
    print(f"  per flossing step:  1 network {t_fl1 * 1e3:8.1f} ms   16 batched {t_fl16 * 1e3:8.1f} ms")
    seq4 = 4 * protocol(t_task1, t_fl1)
    b16 = protocol(t_task16, t_fl16)
    print(f"  16 seeds batched   {b16 / 60:8.1f} min")
    print(f"  4 seeds in a row   {seq4 / 60:8.1f} min   ratio batched16 / sequential4 = {b16 / seq4:.2f}  (goal <= 1)")
    print(f"  (16 seeds one after another would take {4 * seq4 / 60:.1f} min: batching speed-up {4 * seq4 / b16:.1f}x)")

    print("\n[2] one flossing step / one task epoch (goal <= 1)")
    print(f"  1 network,  QR every step (GF)   {t_fl1 / t_task1:5.2f}")
    print(f"  1 network,  QR every 3 steps     {t_fl1_3 / t_task1:5.2f}")
    print(f"  16 batched, QR every step (GF)   {t_fl16 / t_task16:5.2f}")
    print(f"  16 batched, QR every 3 steps     {t_fl16_3 / t_task16:5.2f}")
    b16_3 = protocol(t_task16, t_fl16_3)
    print(f"  protocol with QR every 3 steps: 16 batched / 4 in a row = {b16_3 / seq4:.2f}")

    f, fb = spectrum_times(a.repeats)
    print("\n[3] differentiable spectrum, 16 networks, k = 75, T_p = 55")
    print(f"  forward {f * 1e3:7.1f} ms   forward + backward {fb * 1e3:7.1f} ms   ratio {fb / f:.2f}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
