"""Benchmark of ensemble training: prints ratios from one run on this machine.

    python benchmarks/bench_ensemble.py [--steps S] [--repeats R] [--dtype float32|float64] [--record NAME]

The issue's setting: 50 members (10 seeds x 5 learning rates) at hidden 64, T = 300, batch 128.

1. LRU students: ``train_ensemble`` on the 50 members as one program, against a Python loop
   that trains the same 50 members one at a time (same code, one member each).
   Goal: batched throughput >= 5x the loop's.
2. Dense students, time domain: one training step (fresh batch, teacher outputs, loss, BPTT,
   Adam) against the floor set by its matrix products timed alone (per time step: ``A h``
   forward; ``A^T dh`` and ``dh h^T`` backward; 3 T batched products of the same sizes, on the
   same data every step, so from cache). Goal: >= 70 % of the floor's speed. ``S(x)`` runs
   :mod:`floss_utils.curse_of_memory.dense_recurrence`: drive and readout ride inside one product per step with the
   augmented matrix ``[[A, B], [C^T A, C.B]]``, the backward is written by hand (one product
   and one accumulation per step), the states live in a reused buffer laid out for the BLAS
   path of ``torch.bmm`` (contiguous output blocks). For comparison, the same step by autograd
   through the plain loop (one ``baddbmm`` per step with the drive and readout as thin
   per-step operations), which the profiler showed spending as long on those thin operations
   and autograd's accumulations as on the products.
3. Dense students as ``train_ensemble`` trains them (the exact batch loss as a quadratic form in
   the impulse response, see ``floss_utils.curse_of_memory.student_training``): speed-up over the time-domain step, and
   over the time-domain floor of item 2; and its speed against the floor of *its own* matrix
   products timed alone (the doubling products of the impulse response ``K_k = C A^k B`` and
   their backward products, 3 per forward product, plus the data's Gram or FFT products).
   Goal (the issue's, for the path the book trains with): >= 70 % of that floor's speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from floss_utils.curse_of_memory.students import LRU, DenseRNN
from floss_utils.curse_of_memory.teacher import make_teacher
from floss_utils.optim import adam_update
from floss_utils.curse_of_memory.student_training import train_ensemble

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


def dense_time_domain(repeats: int, dtype) -> dict[str, float]:
    """Median times (s) of one time-domain training step, by the book's path (``S(x)``: the
    augmented-matrix scan with its hand-written backward, :mod:`floss_utils.curse_of_memory.dense_recurrence`) and by
    autograd through the plain per-step loop (``DenseRNN._run``), and of the floor: the step's
    3 T batched products alone. Timed in turn within each repeat (``interleaved_medians``)."""
    teacher = make_teacher(0, 0.99, dtype=dtype)
    S = DenseRNN(SEEDS, N, dtype=dtype)
    params = list(S.parameters())
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    lr = torch.tensor(LRS, dtype=dtype) * 1e-2
    active = torch.ones(M, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    count = [0]

    def plain_loop(x: torch.Tensor) -> torch.Tensor:
        u = S._inputs(x)
        return (torch.cat(S._run(u, readout=True)[1], dim=-1) + S.D[:, None, None] * u).unsqueeze(-1)

    def step(outputs) -> None:
        count[0] += 1
        x = torch.randn(B, T, 1, generator=gen, dtype=dtype)
        y = teacher.outputs_fft(x)
        loss = 0.5 * ((outputs(x) - y) ** 2).mean(dim=(1, 2, 3))
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            adam_update(params, grads, m1, m2, lr=lr, steps=torch.full((M,), count[0]), mask=active)

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
    return _common.interleaved_medians({"scan": lambda: step(S), "plain": lambda: step(plain_loop),
                                        "floor": floor}, repeats)


def dense_kernel_mode(steps: int, dtype) -> float:
    teacher = make_teacher(0, 0.99)
    S = DenseRNN(SEEDS, N, dtype=dtype)
    lrs = [lr * 1e-2 for lr in LRS]
    train_ensemble(S, teacher, lr=lrs, steps=2, data_seeds=SEEDS, batch_size=B, seq_len=T, final_window=1)
    return timed(lambda: train_ensemble(S, teacher, lr=lrs, steps=steps, data_seeds=SEEDS, batch_size=B,
                                        seq_len=T, final_window=1)) / steps


def kernel_floor(dtype, streams: int = 10) -> float:
    """Time of the matrix products of one kernel-mode step, alone: the doubling products of
    :meth:`DenseRNN.kernel` (``P V`` and ``P P`` per round, in the dtype the kernel computes
    in) and, per product, the two of its backward (``dC B^T``, ``A^T dC``); plus the data term (``x^T x`` per stream for the Gram
    form, or the FFTs of ``fft_loss``), whichever ``train_ensemble`` picks for this setting."""
    import math

    work = torch.float64  # DenseRNN.kernel's products run in float64 on a CPU (subnormals, see its docstring)
    A = torch.randn(M, N, N, dtype=work) / N**0.5
    shapes = []
    V_cols = 1
    while V_cols < T:
        shapes.append(V_cols)
        V_cols *= 2
    Vs = {w: torch.randn(M, N, min(w, T - w), dtype=work) for w in shapes}  # last round: missing columns only
    x = torch.randn(streams, B, T, dtype=dtype)
    gram = streams * T < 20 * M * math.log2(2 * T)
    g = torch.randn(M, T, dtype=dtype)

    def floor() -> None:
        for w in shapes:
            V = Vs[w]
            PV = torch.bmm(A, V)
            torch.bmm(PV, V.mT)  # dP = dPV V^T
            torch.bmm(A.mT, PV)  # dV = P^T dPV
            if 2 * w < T:  # kernel() squares P only while more columns are needed
                PP = torch.bmm(A, A)
                torch.bmm(PP, A.mT)
                torch.bmm(A.mT, PP)
        if gram:
            torch.matmul(x.transpose(-1, -2), x)
        else:
            X = torch.fft.rfft(x, n=2 * T)
            Gf = torch.fft.rfft(g, n=2 * T)
            torch.fft.irfft(X[torch.arange(M) % streams] * Gf[:, None, :], n=2 * T)
    floor()
    return min(timed(floor) for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of item 2 (medians)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--record", metavar="NAME", default="",
                        help="also write the output to benchmarks/results/NAME.md with provenance")
    args = parser.parse_args()
    _common.run_or_record(args.record, "bench_ensemble.py", lambda: run(args))


def run(args) -> None:
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, CPU; "
          f"{M} members, hidden {N}, T {T}, batch {B}, {args.steps} steps\n")

    tb, tl = lru_batched_vs_loop(args.steps, dtype)
    print("[1] LRU students")
    print(f"  batched (one program)      {tb / args.steps * 1e3:9.2f} ms/step")
    print(f"  Python loop over members   {tl / args.steps * 1e3:9.2f} ms/step   "
          f"batched throughput {tl / tb:6.2f}x  (goal >= 5)")

    td = dense_time_domain(args.repeats, dtype)
    t_step, t_floor = td["scan"], td["floor"]
    print("[2] dense students, time domain (BPTT through the recurrence)")
    print(f"  training step, book's scan  {t_step * 1e3:9.2f} ms   speed vs floor {t_floor / t_step:5.2f}"
          "  (goal >= 0.70)")
    print(f"  autograd through plain loop {td['plain'] * 1e3:9.2f} ms   speed vs floor {t_floor / td['plain']:5.2f}"
          f"   (the scan is {td['plain'] / t_step:4.2f}x faster)")
    print(f"  3T batched products alone   {t_floor * 1e3:9.2f} ms   (medians of {args.repeats}, timed in turn)")

    t_kernel = dense_kernel_mode(args.steps, dtype)
    print("[3] dense students as train_ensemble trains them (exact quadratic-form loss)")
    print(f"  training step              {t_kernel * 1e3:9.2f} ms   speed-up {t_step / t_kernel:6.1f}x over [2], "
          f"{t_floor / t_kernel:6.1f}x over its floor")
    t_kfloor = kernel_floor(dtype)
    print(f"  its own products alone     {t_kfloor * 1e3:9.2f} ms   speed vs floor {t_kfloor / t_kernel:5.2f}"
          "  (goal >= 0.70)")


if __name__ == "__main__":
    main()
