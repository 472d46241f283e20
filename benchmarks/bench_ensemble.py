"""Benchmark of ensemble training: prints ratios from one run on this machine.

    python benchmarks/bench_ensemble.py [--steps S] [--dtype float32|float64]

The issue's setting: 50 members (10 seeds x 5 learning rates) at hidden 64, T = 300, batch 128.

1. LRU students: ``train_ensemble`` on the 50 members as one program, against a Python loop
   that trains the same 50 members one at a time (same code, one member each).
   Goal: batched throughput >= 5x the loop's.
2. Dense students, time domain (the recurrence with one batched product ``A h`` per step, BPTT
   through it, Adam): one training step against the floor set by its matrix products timed
   alone (per time step: ``A h`` forward; ``A^T dh`` and ``dh h^T`` backward; 3 T batched
   products of the same sizes). Goal: >= 70 % of the floor's speed.
3. Dense students as ``train_ensemble`` trains them (the exact batch loss as a quadratic form in
   the impulse response, see ``floss_utils.training``): speed-up over the time-domain step, and
   over the time-domain floor of item 2.
"""

from __future__ import annotations

import argparse
import time

import torch

from floss_utils.models import LRU, DenseRNN
from floss_utils.teacher import make_teacher
from floss_utils.training import adam_step, train_ensemble

M, N, T, B = 50, 64, 300, 128
SEEDS = [s for _ in range(5) for s in range(10)]
LRS = [lr for lr in (0.1, 0.032, 0.01, 0.0032, 0.001) for _ in range(10)]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def lru_batched_vs_loop(steps: int, dtype) -> tuple[float, float]:
    teacher = make_teacher(0, 0.99)

    def batched():
        train_ensemble(LRU(SEEDS, N, r_min=0.99, dtype=dtype), teacher, lr=LRS, steps=steps, data_seeds=SEEDS,
                       batch_size=B, seq_len=T, final_window=1)

    def loop():
        for s, lr in zip(SEEDS, LRS):
            train_ensemble(LRU([s], N, r_min=0.99, dtype=dtype), teacher, lr=[lr], steps=steps, data_seeds=[s],
                           batch_size=B, seq_len=T, final_window=1)

    batched()  # warm-up
    return timed(batched), timed(loop)


def dense_time_domain(steps: int, dtype) -> tuple[float, float]:
    teacher = make_teacher(0, 0.99, dtype=dtype)
    S = DenseRNN(SEEDS, N, dtype=dtype)
    params = list(S.parameters())
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    lr = torch.tensor(LRS, dtype=dtype) * 1e-2
    active = torch.ones(M, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)

    def step(t: int) -> None:
        x = torch.randn(B, T, 1, generator=gen, dtype=dtype)
        y = teacher.outputs_fft(x)
        loss = 0.5 * ((S(x) - y) ** 2).mean(dim=(1, 2, 3))
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            adam_step(params, grads, m1, m2, lr, t, active)

    step(1)
    t_step = timed(lambda: [step(t + 2) for t in range(steps)]) / steps

    A = torch.randn(M, N, N, dtype=dtype) / N**0.5
    h = torch.randn(M, N, B, dtype=dtype)
    hT = torch.randn(M, B, N, dtype=dtype)
    out = torch.empty(M, N, B, dtype=dtype)
    outA = torch.empty(M, N, N, dtype=dtype)

    def floor() -> None:
        for _ in range(T):
            torch.baddbmm(h, A, h, out=out)  # forward A h + drive
            torch.bmm(A.transpose(1, 2), h, out=out)  # backward: A^T dh
            torch.bmm(h, hT, out=outA)  # backward: dh h^T
    floor()
    t_floor = min(timed(floor) for _ in range(3))
    return t_step, t_floor


def dense_kernel_mode(steps: int, dtype) -> float:
    teacher = make_teacher(0, 0.99)
    S = DenseRNN(SEEDS, N, dtype=dtype)
    lrs = [lr * 1e-2 for lr in LRS]
    train_ensemble(S, teacher, lr=lrs, steps=2, data_seeds=SEEDS, batch_size=B, seq_len=T, final_window=1)
    return timed(lambda: train_ensemble(S, teacher, lr=lrs, steps=steps, data_seeds=SEEDS, batch_size=B,
                                        seq_len=T, final_window=1)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, CPU; "
          f"{M} members, hidden {N}, T {T}, batch {B}, {args.steps} steps\n")

    tb, tl = lru_batched_vs_loop(args.steps, dtype)
    print("[1] LRU students")
    print(f"  batched (one program)      {tb / args.steps * 1e3:9.2f} ms/step")
    print(f"  Python loop over members   {tl / args.steps * 1e3:9.2f} ms/step   "
          f"batched throughput {tl / tb:6.2f}x  (goal >= 5)")

    t_step, t_floor = dense_time_domain(2, dtype)
    print("[2] dense students, time domain (BPTT through the recurrence)")
    print(f"  training step              {t_step * 1e3:9.2f} ms")
    print(f"  3T batched products alone  {t_floor * 1e3:9.2f} ms   speed vs floor {t_floor / t_step:5.2f}"
          "  (goal >= 0.70)")

    t_kernel = dense_kernel_mode(args.steps, dtype)
    print("[3] dense students as train_ensemble trains them (exact quadratic-form loss)")
    print(f"  training step              {t_kernel * 1e3:9.2f} ms   speed-up {t_step / t_kernel:6.1f}x over [2], "
          f"{t_floor / t_kernel:6.1f}x over its floor")


if __name__ == "__main__":
    main()
