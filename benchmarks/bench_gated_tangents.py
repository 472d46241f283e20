"""Gated cells' tangents: the Jacobian written out against forward-mode dual numbers, in a flossing step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_gated_tangents.py [--repeats 15] [--record NAME]

One flossing step's work on M gated networks (GRU and LSTM): the exponents over a trajectory of
``--steps`` steps (QR every step) and, for "forward + backward", the gradient of the flossing loss
with respect to every parameter. Tangents ``D_t Q`` by :func:`~floss_utils.flossing.gated_cells.cell_tangent`
(``"closed_form"``, the library's default) or by dual numbers folded into the batch (``"fold"``,
:class:`~floss_utils.flossing.gated_cells.FoldedCellMap`). Sizes: chapter 11's book scale (N 24,
10 networks) with k = 10 (its fair flossing) and k = S (its freezing flossing). Prints the median
time of each (interleaved, one thread) and the ratio fold / closed form (> 1: the closed form is
faster), and the largest difference of the exponents between the two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--repeats", type=int, default=15)
ap.add_argument("--steps", type=int, default=55, help="trajectory steps per flossing step (chapter 11: 55)")
ap.add_argument("--members", type=int, default=10)
ap.add_argument("--hidden", type=int, default=24)
ap.add_argument("--record", default="", help="also write the output to benchmarks/results/NAME.md")
args = ap.parse_args()
_common.pin_threads(1)

import torch  # noqa: E402

from floss_utils.flossing import init_cell_networks  # noqa: E402
from floss_utils.lyapunov.estimator import lyapunov_spectrum  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    seeds = list(range(args.members))
    bits = torch.randint(0, 2, (args.steps, args.members), generator=torch.Generator().manual_seed(0)).double()
    print(f"M = {args.members} networks, N = {args.hidden}, {args.steps} steps, float64, one thread; "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'cell':5s} {'k':>3s} {'pass':18s} {'fold (ms)':>10s} {'closed form (ms)':>17s} {'fold / closed':>14s} "
          f"{'max |diff| of exponents':>24s}")
    for kind in ("gru", "lstm"):
        net = init_cell_networks(kind, seeds, args.hidden, 1)
        for k in (10, net.n_units):
            q0 = torch.linalg.qr(torch.randn(args.members, net.n_units, k, dtype=torch.float64,
                                             generator=torch.Generator().manual_seed(1)))[0]

            def exps(tangents: str, backward: bool):
                params = [p.detach().requires_grad_(backward) for p in (net.J, net.W_s, net.b)]
                n = type(net)(kind, *params, net.w_r, net.c, net.x0)
                lam = lyapunov_spectrum(n.recurrent_map(tangents), n.x0[:, 0], n.drive(bits), steps=args.steps,
                                        k=k, q0=q0, reorth="qr").exponents
                if backward:
                    torch.autograd.grad((lam ** 2).mean(-1).sum(), params)
                return lam.detach()

            diff = float((exps("fold", False) - exps("closed_form", False)).abs().max())
            for backward, name in ((False, "forward"), (True, "forward + backward")):
                t = _common.interleaved_medians({m: (lambda m=m: exps(m, backward)) for m in ("fold", "closed_form")},
                                                args.repeats)
                print(f"{kind:5s} {k:3d} {name:18s} {1e3 * t['fold']:10.1f} {1e3 * t['closed_form']:17.1f} "
                      f"{t['fold'] / t['closed_form']:14.2f} {diff:24.1e}")


_common.run_or_record(args.record, "bench_gated_tangents.py", main)
