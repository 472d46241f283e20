"""Would a compiled step close the small-network gap? Eager against ``torch.compile`` on a bare chunk.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compiled_step.py [--chunk 10] [--cpp-wrapper] [--record NAME]

One tanh network ``x_{t+1} = J tanh(x_t)``, N = k = 64, g = 2, float64, one thread: a chunk of
``--chunk`` steps of the Lyapunov QR loop written with the fewest operations (the tangent
product, Cholesky QR: Gram matrix, Cholesky, triangular solve; the log-diagonal summed; no
breakdown test, no NaN bookkeeping), timed eager and compiled (``fullgraph``, static shapes;
``--cpp-wrapper``: inductor's C++ wrapper, no Python between the kernels). Prints microseconds per
step, the compilation time and the largest difference of the accumulated logs between the two.
This is the exploration behind the status page's "goals not met" note on one small network (the
library's estimator is not compiled); compare with lyapax in ``bench_peers_lyapunov.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--chunk", type=int, default=10, help="steps per compiled call (unrolled)")
ap.add_argument("--cpp-wrapper", action="store_true")
ap.add_argument("--calls", type=int, default=200)
ap.add_argument("--record", default="", help="also write the output to benchmarks/results/NAME.md")
args = ap.parse_args()
_common.pin_threads(1)

import torch  # noqa: E402

torch.set_num_threads(1)
if args.cpp_wrapper:
    import torch._inductor.config as ic
    ic.cpp_wrapper = True

N = k = 64
gen = torch.Generator().manual_seed(0)
J = torch.randn(N, N, dtype=torch.float64, generator=gen) * 2 / N**0.5
h = torch.randn(N, dtype=torch.float64, generator=gen)
Q = torch.eye(N, k, dtype=torch.float64)
acc = torch.zeros(k, dtype=torch.float64)


def chunk(J, h, Q, acc):
    for _ in range(args.chunk):
        a = torch.tanh(h)
        A = J @ ((1 - a * a).unsqueeze(-1) * Q)
        h = J @ a
        L, _ = torch.linalg.cholesky_ex(A.mT @ A)
        Q = torch.linalg.solve_triangular(L.mT, A, upper=True, left=False)
        acc = acc + torch.log(torch.diagonal(L))
    return h, Q, acc


def per_step(f) -> float:
    for _ in range(5):
        f()
    t0 = time.perf_counter()
    for _ in range(args.calls):
        f()
    return (time.perf_counter() - t0) / args.calls / args.chunk * 1e6


def main() -> None:
    eager = per_step(lambda: chunk(J, h, Q, acc))
    t0 = time.perf_counter()
    compiled = torch.compile(chunk, fullgraph=True, dynamic=False)
    compiled(J, h, Q, acc)
    t_compile = time.perf_counter() - t0
    fast = per_step(lambda: compiled(J, h, Q, acc))
    diff = (chunk(J, h, Q, acc)[2] - compiled(J, h, Q, acc)[2]).abs().max().item()
    print(f"machine: {_common.machine()}; torch {torch.__version__}; chunk {args.chunk}; cpp_wrapper {args.cpp_wrapper}")
    print(f"eager {eager:.1f} us/step; compiled {fast:.1f} us/step (ratio {eager / fast:.2f}); compile {t_compile:.1f} s; "
          f"largest difference of the accumulated logs {diff:.1e}")


_common.run_or_record(args.record, "bench_compiled_step.py", main)
