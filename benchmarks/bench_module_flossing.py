"""Benchmark of flossing a torch.nn module in a user's loop: one flossing step / one training step.

    python benchmarks/bench_module_flossing.py [--repeats R] [--hidden H] [--k K] [--traj TP]
        [--batch B] [--seq-len T] [--threads N] [--record NAME]

The module is an ``nn.LSTM(1, H, batch_first=True)`` with an ``nn.Linear`` readout, in PyTorch's
default float32 (on a CPU its training step runs oneDNN's fused LSTM kernel).

* a **training step**: a batch of B sequences of T steps forward, binary cross-entropy, backward,
  one Adam step on the module and the readout;
* a **flossing step**: :meth:`floss_utils.flossing.ModuleFlosser.step` - the k largest Lyapunov
  exponents of the module along input sequences of T_p steps (the first 10 + ceil(T_p/10)
  discarded), backpropagation through the whole trajectory and every QR, one Adam step.

Goal (issue 17): a flossing step costs no more than a training step for H = 128, k = 32,
T_p = 55, B = 16. A flossing step of GF runs one trajectory; the training step's sequence length
is not fixed by the goal, so both GF's task length (T = 300) and T = T_p are reported.

[1] the ratio, flossing on one trajectory (GF) and on a batch of B, against training at T = 300
    and T = T_p;
[2] where the flossing time goes: the exponents without a graph, with one, and the backward pass
    plus the update; the QR method (LAPACK Householder, the estimator's float32 default, against
    Cholesky QR with its hand-written backward), a QR every 3 steps (``ons``; the exponents do not
    depend on it) and float64.

Times are medians over repeats, the contenders timed in turn within every repeat
(:func:`_common.interleaved_medians`), on ``--threads`` threads (default 1, see
:func:`_common.pin_threads`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (first: thread pinning happens before torch is imported)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=128, help="H, hidden units of the nn.LSTM")
    ap.add_argument("--k", type=int, default=32, help="exponents flossed")
    ap.add_argument("--traj", type=int, default=55, help="T_p, steps of a flossing trajectory")
    ap.add_argument("--batch", type=int, default=16, help="B, sequences per training batch")
    ap.add_argument("--seq-len", type=int, default=300, help="T, steps per training sequence (GF: 300)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record", metavar="NAME", default="",
                    help="also write the output to benchmarks/results/NAME.md with provenance")
    a = ap.parse_args()
    _common.pin_threads(a.threads)
    _common.run_or_record(a.record, "bench_module_flossing.py", lambda: run(a))


def run(a) -> None:
    import torch
    import torch.nn.functional as F

    from floss_utils.flossing import ModuleFlosser

    torch.set_num_threads(a.threads)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, load average {load:.2f} at start"
          + ("  (machine shared and loaded: compare ratios, not absolute times)" if load > 1.0 else ""))
    print(f"nn.LSTM(1, {a.hidden}) + readout, float32; k = {a.k}, T_p = {a.traj}, B = {a.batch}; "
          f"medians of {a.repeats} interleaved repeats")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    lstm = torch.nn.LSTM(1, a.hidden, batch_first=True)
    head = torch.nn.Linear(a.hidden, 1)
    task_opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    floss_opt = torch.optim.Adam(lstm.parameters(), lr=1e-5)  # tiny steps: the module stays comparable

    def bits(B: int, T: int) -> "torch.Tensor":
        return torch.randint(0, 2, (B, T, 1), generator=g).float()

    def train_step(T: int):
        x, y = bits(a.batch, T), bits(a.batch, T).squeeze(-1)

        def f() -> None:
            loss = F.binary_cross_entropy_with_logits(head(lstm(x)[0]).squeeze(-1), y)
            task_opt.zero_grad()
            loss.backward()
            task_opt.step()
        return f

    def floss_step(B: int, **opts):
        fl = ModuleFlosser(lstm, a.k, **opts)
        x = bits(B, a.traj)
        return lambda: fl.step(floss_opt, x, generator=g)

    t = _common.interleaved_medians({
        "train_T": train_step(a.seq_len),
        "train_Tp": train_step(a.traj),
        "floss_1": floss_step(1),
        "floss_B": floss_step(a.batch),
    }, a.repeats)
    print(f"\n[1] one flossing step / one training step (goal <= 1 for one trajectory, k = {a.k})")
    print(f"  training step, B = {a.batch}, T = {a.seq_len:<4d}      {1e3 * t['train_T']:8.1f} ms")
    print(f"  training step, B = {a.batch}, T = {a.traj:<4d}      {1e3 * t['train_Tp']:8.1f} ms")
    print(f"  flossing step, 1 trajectory             {1e3 * t['floss_1']:8.1f} ms   "
          f"ratio {t['floss_1'] / t['train_T']:5.2f} (T = {a.seq_len})   {t['floss_1'] / t['train_Tp']:5.2f} (T = {a.traj})")
    print(f"  flossing step, {a.batch} trajectories          {1e3 * t['floss_B']:8.1f} ms   "
          f"ratio {t['floss_B'] / t['train_T']:5.2f} (T = {a.seq_len})   {t['floss_B'] / t['train_Tp']:5.2f} (T = {a.traj})")

    x1 = bits(1, a.traj)
    variants = {"float32, Householder QR every step (default)": {},
                "float32, Cholesky QR every step": {"reorth": "cholqr"},
                "float32, Cholesky QR every 3 steps": {"reorth": "cholqr", "ons": 3},
                "float64 computation (Cholesky QR)": {"dtype": torch.float64}}
    fns = {}
    for name, opts in variants.items():
        fl = ModuleFlosser(lstm, a.k, **opts)

        def fwd(fl=fl) -> None:
            with torch.no_grad():
                fl.exponents(x1, q0=None, generator=g)

        def graph(fl=fl) -> None:
            fl.loss(x1, generator=g)

        fns[name + "|fwd"] = fwd
        fns[name + "|graph"] = graph
        fns[name + "|step"] = lambda fl=fl: fl.step(floss_opt, x1, generator=g)
    tv = _common.interleaved_medians(fns, a.repeats)
    print(f"\n[2] where a flossing step goes (1 trajectory; ms; ratio to the training step at T = {a.seq_len})")
    print(f"  {'variant':46s} {'no graph':>9s} {'forward':>9s} {'backward+update':>16s} {'step':>8s} {'ratio':>6s}")
    for name in variants:
        f, gr, st = (tv[f"{name}|{p}"] for p in ("fwd", "graph", "step"))
        print(f"  {name:46s} {1e3 * f:9.1f} {1e3 * gr:9.1f} {1e3 * (st - gr):16.1f} {1e3 * st:8.1f} "
              f"{st / t['train_T']:6.2f}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
