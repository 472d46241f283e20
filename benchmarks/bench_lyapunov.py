"""Benchmark of the Lyapunov spectrum estimator: prints ratios from one run on this machine.

    python benchmarks/bench_lyapunov.py [--repeats R]

1. Large network (N = k = 256, float64, one network): time per step of
   ``lyapunov_spectrum`` against the floor of one (N x N)(N x k) product plus one LAPACK thin QR
   per step, both timed here. Goal: estimator >= 90 % of the floor's speed.
2. Many small networks (the flossing case: 16 networks, N = 80, k = 75, 55 steps): the 16 as one
   batch against the same 16 run one after another. Goal: batched throughput >= 2x.
3. A saturated full spectrum (N = k = 200, g = 3, one network: Cholesky QR breaks down at a large
   share of its steps): ``reorth="switch"`` (Cholesky QR until the first breakdown, Householder QR
   after it) against ``"auto"`` (a Cholesky run, then a replay that redoes each broken step with
   Householder QR) and against ``"qr"`` throughout. Goal: ``"switch"`` within
   ``1 + SWITCH_CHECK_EVERY / steps`` of ``"qr"`` (it runs at most one look's interval of Cholesky
   steps again; 1.12 for 1050 steps).

Times are medians over repeats; everything runs in float64 on the default torch device threads.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from floss_utils.lyapunov.maps import TanhRNN, gaussian_coupling
from floss_utils.lyapunov.estimator import SWITCH_CHECK_EVERY, lyapunov_spectrum, random_orthonormal


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def large_network(repeats: int, n: int = 256, steps: int = 200) -> tuple[float, float, float]:
    gen = torch.Generator().manual_seed(0)
    J = gaussian_coupling(1, n, 2.0, generator=gen)
    h0 = torch.randn(1, n, dtype=torch.float64, generator=gen)
    Q0 = random_orthonormal(1, n, n, generator=gen)
    net = TanhRNN(J)

    def estimator(reorth: str) -> None:
        lyapunov_spectrum(net, h0, steps=steps, k=n, q0=Q0, reorth=reorth)

    def floor() -> None:
        Q = Q0
        for _ in range(steps):
            Q, _ = torch.linalg.qr(J @ Q, mode="reduced")

    t_floor = median_time(floor, repeats) / steps
    t_auto = median_time(lambda: estimator("auto"), repeats) / steps
    t_qr = median_time(lambda: estimator("qr"), repeats) / steps
    return t_floor, t_auto, t_qr


def small_networks(repeats: int, b: int = 16, n: int = 80, k: int = 75, steps: int = 55):
    gen = torch.Generator().manual_seed(1)
    J = gaussian_coupling(b, n, 1.0, generator=gen)
    h0 = torch.randn(b, n, dtype=torch.float64, generator=gen)
    Q0 = random_orthonormal(b, n, k, generator=gen)
    drive = torch.randn(steps, b, n, dtype=torch.float64, generator=gen)
    nets = [TanhRNN(J[i : i + 1]) for i in range(b)]

    def batched(reorth: str) -> torch.Tensor:
        return lyapunov_spectrum(TanhRNN(J), h0, drive, steps=steps, k=k, q0=Q0, reorth=reorth).exponents

    def sequential(reorth: str) -> torch.Tensor:
        return torch.cat([
            lyapunov_spectrum(nets[i], h0[i : i + 1], drive[:, i : i + 1], steps=steps, k=k,
                              q0=Q0[i : i + 1], reorth=reorth).exponents
            for i in range(b)
        ])

    agree = (batched("auto") - sequential("qr")).abs().max().item()
    t_b = median_time(lambda: batched("auto"), repeats)
    t_s_auto = median_time(lambda: sequential("auto"), repeats)
    t_s_qr = median_time(lambda: sequential("qr"), repeats)
    return t_b, t_s_auto, t_s_qr, agree


SATURATED_STEPS, SATURATED_TRANSIENT = 1000, 50


def saturated_full_spectrum(repeats: int, n: int = 200, steps: int = SATURATED_STEPS) -> dict[str, tuple[float, object]]:
    gen = torch.Generator().manual_seed(2)
    J = gaussian_coupling(1, n, 3.0, generator=gen)
    h0 = torch.randn(1, n, dtype=torch.float64, generator=gen)
    Q0 = random_orthonormal(1, n, n, generator=gen)
    net = TanhRNN(J)
    out = {}
    for reorth in ("switch", "auto", "qr"):
        run = lambda: lyapunov_spectrum(net, h0, steps=steps, transient=SATURATED_TRANSIENT, q0=Q0, reorth=reorth)  # noqa: E731
        res = run()
        out[reorth] = (median_time(run, repeats) / (steps + SATURATED_TRANSIENT), res)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, CPU")

    t_floor, t_auto, t_qr = large_network(args.repeats)
    print("\n[1] one network, N = k = 256 (time per step)")
    print(f"  floor: matmul + LAPACK thin QR   {t_floor * 1e6:8.0f} us")
    print(f"  estimator, reorth=auto (cholqr)  {t_auto * 1e6:8.0f} us   speed vs floor {t_floor / t_auto:6.2f}  (goal >= 0.90)")
    print(f"  estimator, reorth=qr             {t_qr * 1e6:8.0f} us   speed vs floor {t_floor / t_qr:6.2f}")

    t_b, t_s_auto, t_s_qr, agree = small_networks(args.repeats)
    print("\n[2] 16 networks, N = 80, k = 75, 55 steps (time per call)")
    print(f"  batched (auto)                   {t_b * 1e3:8.2f} ms")
    print(f"  one after another (auto)         {t_s_auto * 1e3:8.2f} ms   batched speed-up {t_s_auto / t_b:5.2f}x  (goal >= 2)")
    print(f"  one after another (LAPACK qr)    {t_s_qr * 1e3:8.2f} ms   batched speed-up {t_s_qr / t_b:5.2f}x")
    print(f"  max |difference| of exponents, batched cholqr vs sequential LAPACK: {agree:.1e}")

    sat = saturated_full_spectrum(max(3, args.repeats // 2))
    t_qr = sat["qr"][0]
    total = SATURATED_STEPS + SATURATED_TRANSIENT
    bound = 1 + SWITCH_CHECK_EVERY / total
    print(f"\n[3] one saturated network, N = k = 200, g = 3, {total} steps (time per step)")
    for reorth, (t, res) in sat.items():
        how = {"switch": f"switched to Householder QR at step {res.switched_at}",
               "auto": f"{res.fallback_steps} steps redone with Householder QR in a replay",
               "qr": "Householder QR throughout"}[reorth]
        goal = f"  (goal <= {bound:.2f})" if reorth == "switch" else ""
        print(f"  {reorth:6s} {t * 1e6:8.0f} us   time vs qr {t / t_qr:5.2f}{goal}   {how}")
    diff = (sat["switch"][1].exponents - sat["qr"][1].exponents).abs()
    print(f"  max |difference| of exponents, switch vs qr: {diff.max().item():.1e} "
          f"(top half of the spectrum: {diff[:, : diff.shape[1] // 2].max().item():.1e})")


if __name__ == "__main__":
    main()
