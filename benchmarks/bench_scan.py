"""Benchmark of the chunked diagonal scan: prints ratios from one run on this machine.

    python benchmarks/bench_scan.py [--repeats R]

``floss_utils.curse_of_memory.scans.diagonal_scan`` with its chunked path forced (chunks of ~sqrt(T), all
chunks advanced in parallel, carries across chunks) against ``diagonal_recurrence`` (a Python loop over time), forward and
forward + backward, complex64, for a few shapes of ``h_t = lambda h_{t-1} + b_t``:
batch x T x units. Times are medians over repeats. The maximum relative difference between the
two results is printed too (they must agree to round-off).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from floss_utils.curse_of_memory.scans import diagonal_recurrence, diagonal_scan


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def case(batch: int, T: int, n: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    lam = torch.polar(0.9 + 0.1 * torch.rand(n, generator=g), torch.rand(n, generator=g) * 3.14)
    b = torch.complex(torch.randn(batch, T, n, generator=g), torch.randn(batch, T, n, generator=g))
    L = max(1, round(T ** 0.5))
    scan = lambda lam_, b_: diagonal_scan(lam_, b_, chunk=L)  # the chunked path, forced
    err = float((scan(lam, b) - diagonal_recurrence(lam, b)).abs().max()
                / diagonal_recurrence(lam, b).abs().max())

    def fb(fn):
        lr = lam.clone().requires_grad_(True)
        br = b.clone().requires_grad_(True)
        (fn(lr, br).real.sum()).backward()

    with torch.no_grad():
        t_scan = median_time(lambda: scan(lam, b), repeats)
        t_loop = median_time(lambda: diagonal_recurrence(lam, b), repeats)
    tb_scan = median_time(lambda: fb(scan), repeats)
    tb_loop = median_time(lambda: fb(diagonal_recurrence), repeats)
    print(f"  batch {batch:4d}, T {T:5d}, n {n:4d}: forward  scan {t_scan * 1e3:8.2f} ms  loop {t_loop * 1e3:8.2f} ms"
          f"  speed-up {t_loop / t_scan:5.2f}x")
    print(f"  {'':30s}fwd+bwd  scan {tb_scan * 1e3:8.2f} ms  loop {tb_loop * 1e3:8.2f} ms"
          f"  speed-up {tb_loop / tb_scan:5.2f}x   max rel. difference {err:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, complex64, CPU\n")
    for batch, T, n in [(8, 300, 64), (128, 300, 64), (16, 1000, 256), (4, 4096, 32)]:
        case(batch, T, n, args.repeats)


if __name__ == "__main__":
    main()
