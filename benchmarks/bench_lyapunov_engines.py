"""Where the estimator's LAPACK engine pays: ``engine="lapack"`` against ``engine="torch"`` over sizes and batches.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lyapunov_engines.py [--sizes 16,32,64,128,256] [--batches 1,4,16]

For each network size N (k = N, the full spectrum, g = 1: trajectories that do not separate, so
the two engines must agree to round-off) and batch size B, times ``lyapunov_spectrum`` over
``--steps`` steps (forward) and forward + backward (the gradient of ``sum lambda_i^2`` with
respect to J, the flossing loss's shape) with each engine, interleaved, and prints the time of the
torch engine over the LAPACK engine's (> 1: the LAPACK engine is faster) with the largest
difference of the exponents. The crossover — the smallest B (per N) at which the batched torch
engine is as fast — is what the estimator's docstring cites.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--sizes", default="16,32,64,128,256")
ap.add_argument("--batches", default="1,4,16")
ap.add_argument("--steps", type=int, default=50)
ap.add_argument("--repeats", type=int, default=7)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--record", default="", help="also write benchmarks/results/NAME.md")
args = ap.parse_args()
_common.pin_threads(args.threads)

import torch  # noqa: E402

torch.set_num_threads(args.threads)
from floss_utils.lyapunov import TanhRNN, gaussian_coupling, lyapunov_spectrum  # noqa: E402


def calls(n: int, batch: int):
    gen = torch.Generator().manual_seed(n + batch)
    J = gaussian_coupling(batch, n, 1.0, generator=gen)
    x = torch.randn(batch, n, dtype=torch.float64, generator=gen)
    q0 = torch.eye(n, dtype=torch.float64).expand(batch, -1, -1).contiguous()
    Jg = J.clone().requires_grad_(True)
    fns = {}
    for engine in ("torch", "lapack"):
        def fwd(engine=engine):
            with torch.no_grad():
                return lyapunov_spectrum(TanhRNN(J), x, steps=args.steps, k=n, q0=q0, engine=engine).exponents

        def fb(engine=engine):
            lam = lyapunov_spectrum(TanhRNN(Jg), x, steps=args.steps, k=n, q0=q0, engine=engine).exponents
            torch.autograd.grad((lam ** 2).sum(), Jg)
        fns[engine], fns[engine + " fb"] = fwd, fb
    diff = float((fns["torch"]() - fns["lapack"]()).abs().max())
    return fns, diff


def main() -> None:
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for batch in [int(s) for s in args.batches.split(",")]:
            fns, diff = calls(n, batch)
            t = _common.interleaved_medians(fns, args.repeats)
            per = lambda name: t[name] / (args.steps * batch) * 1e6
            rows.append([n, batch, f"{per('torch'):.0f}", f"{per('lapack'):.0f}", f"{t['torch'] / t['lapack']:.2f}",
                         f"{per('torch fb'):.0f}", f"{per('lapack fb'):.0f}", f"{t['torch fb'] / t['lapack fb']:.2f}",
                         f"{diff:.1e}"])
    rep = _common.Report("lyapunov_engines", "The estimator's engines: torch (batched) against lapack (per network)",
                         "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lyapunov_engines.py " + " ".join(sys.argv[1:]),
                         {"torch": torch.__version__}, args.threads)
    rep.table(f"k = N, g = 1, {args.steps} steps; us per step and network",
              ["N", "B", "torch fwd", "lapack fwd", "torch / lapack", "torch fwd+bwd", "lapack fwd+bwd",
               "torch / lapack (fwd+bwd)", "max abs. exponent difference"], rows,
              "ratio > 1: the LAPACK engine is faster; medians of interleaved repeats")
    if args.record:
        rep.name = args.record
        rep.write()


if __name__ == "__main__":
    main()
