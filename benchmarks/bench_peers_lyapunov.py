"""Lyapunov spectra: floss_utils against the tools a researcher would use instead, and the floor.

    .venv/bin/python benchmarks/bench_peers_lyapunov.py --peers benchmarks/.venv [--repeats R]

(the peers live in their own environment, see ``benchmarks/requirements.txt``; ``--peers`` appends
its site-packages to the path, the book's numpy/torch stay first.)

Contenders, all float64, one thread each (``--threads``), on the same random tanh network
``x_{t+1} = J tanh(x_t)``, ``J_ij ~ N(0, g^2/N)``, started from the same post-transient state and
the same initial basis ``Q_0 = I[:, :k]`` (lyapynov's fixed choice):

* ``floss_utils`` ``lyapunov_spectrum`` (``reorth="auto"``: Cholesky QR in float64; and ``"qr"``;
  and ``engine="lapack"``, the same Cholesky QR loop as direct BLAS/LAPACK calls per network);
* a straightforward per-step PyTorch loop (explicit Jacobian, ``torch.linalg.qr``);
* ``lyapax.lyapunov_spectrum`` (JAX, ``jax.lax.scan``, wrapped in ``jax.jit``; compile time
  reported apart and excluded, the starting basis passed through its ``resume`` checkpoint);
* ``lyapynov.LCE`` (NumPy);
* the floor: one ``(N x N)(N x k)`` product and one LAPACK thin QR per step (PyTorch), no state,
  no Jacobian scaling, no logs: what any QR method must at least do.

Cases: (a) N = 64 and N = 256, k = N, g = 2 (chaotic), 2000 steps after a 500-step transient;
(b) the flossing case, N = 80, k = 75, g = 1, 55 steps, called repeatedly (time per call), one
network and 16 networks (floss_utils batched, lyapax ``jax.vmap``-ed, the others in a loop);
(c) the differentiable flossing step (forward, and forward + backward of ``sum lambda_i^2`` with
respect to J) for one network and for 16; (d) the one-network comparison with lyapax (N = 64
forward; the flossing case forward and forward + backward) repeated in ``--runs`` independent
rounds, reported as the median and range of the time ratio over rounds.

Before any time is compared the exponents are checked to agree with the LAPACK loop: in a chaotic
network two codes follow trajectories that separate after ~ln(1e16)/lambda_1 steps, so exponents
from 2000 steps agree only to their finite-time statistical spread; that spread is measured here
by rerunning floss_utils from a state perturbed by 1e-9, and each contender must agree to within
5x of it (and 1e-8 in the 55-step case, where the trajectories do not separate). Times are
medians over repeats, contenders interleaved within each repeat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402  (first: pins threads before numpy/torch/jax start)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default=None, help="the peers' venv (benchmarks/.venv) or its site-packages")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000, help="steps of the agreement check")
    ap.add_argument("--time-steps", type=int, default=200,
                    help="steps per timed call (N = 64, 256): short calls, many repeats, interleaved, so "
                         "that a change of machine load hits every contender alike")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--runs", type=int, default=5,
                    help="independent rounds of the one-network comparison with lyapax (median and range)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    return ap.parse_args()


args = parse()
_common.pin_threads(args.threads)
_common.add_peer_site(args.peers)

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(args.threads)

try:
    import jax  # noqa: E402
except ImportError:
    raise SystemExit("the peers are not importable: python3.11 -m venv benchmarks/.venv && "
                     "benchmarks/.venv/bin/pip install -r benchmarks/requirements.txt, then pass "
                     "--peers benchmarks/.venv") from None

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import lyapax  # noqa: E402
import lyapynov  # noqa: E402
from lyapax.core import LyapunovCheckpoint  # noqa: E402

from floss_utils.lyapunov.maps import TanhRNN, gaussian_coupling
from floss_utils.lyapunov.estimator import lyapunov_spectrum

try:
    from importlib.metadata import version as _v
except ImportError:  # pragma: no cover
    _v = None


def network(n: int, g: float, seed: int, batch: int = 1, transient: int = 500):
    gen = torch.Generator().manual_seed(seed)
    J = gaussian_coupling(batch, n, g, generator=gen)
    x = torch.randn(batch, n, dtype=torch.float64, generator=gen)
    for _ in range(transient):
        x = (J @ torch.tanh(x).unsqueeze(-1)).squeeze(-1)
    return J, x


# ---------------------------------------------------------------- contenders (one network)

def floss(J, x0, steps, k, reorth, engine="torch"):
    q0 = torch.eye(J.shape[-1], k, dtype=J.dtype).expand(J.shape[0], -1, -1).contiguous()
    return lambda: lyapunov_spectrum(TanhRNN(J), x0, steps=steps, k=k, q0=q0, reorth=reorth, engine=engine).exponents


def torch_loop(J, x0, steps, k):
    J1, x1 = J[0], x0[0]

    def run():
        x, Q = x1, torch.eye(J1.shape[0], k, dtype=J1.dtype)
        acc = torch.zeros(k, dtype=J1.dtype)
        for _ in range(steps):
            D = J1 * (1.0 / torch.cosh(x) ** 2)  # Jacobian J diag(sech^2 x)
            Q, R = torch.linalg.qr(D @ Q)
            acc += torch.log(torch.abs(torch.diagonal(R)))
            x = J1 @ torch.tanh(x)
        return (acc / steps).unsqueeze(0)
    return run


def floor(J, steps, k):
    J1 = J[0]
    Q0 = torch.eye(J1.shape[0], k, dtype=J1.dtype)

    def run():
        Q = Q0
        for _ in range(steps):
            Q, _ = torch.linalg.qr(J1 @ Q, mode="reduced")
    return run


def lyapax_fn(steps, k):
    def one(Jn, xn):
        ck = LyapunovCheckpoint(state=xn, Y=jnp.eye(xn.shape[0], k), cum_log_growth=jnp.zeros(k),
                                elapsed_time=jnp.asarray(0.0), dt=1.0)
        return lyapax.lyapunov_spectrum(lambda s: Jn @ jnp.tanh(s), xn, 1.0, steps, k=k,
                                        resume=ck).exponents
    return one


def lyapax_call(J, x0, steps, k):
    f = jax.jit(lyapax_fn(steps, k)) if J.shape[0] == 1 else jax.jit(jax.vmap(lyapax_fn(steps, k)))
    Jj, xj = jnp.asarray(J.numpy()), jnp.asarray(x0.numpy())
    if J.shape[0] == 1:
        return lambda: f(Jj[0], xj[0]).block_until_ready()[None], f, (Jj[0], xj[0])
    return lambda: f(Jj, xj).block_until_ready(), f, (Jj, xj)


def lyapynov_call(J, x0, steps, k):
    Jn_all, xn_all = J.numpy(), x0.numpy()

    def run():
        out = []
        for Jn, xn in zip(Jn_all, xn_all):
            ds = lyapynov.DiscreteDS(xn.copy(), 0, lambda x, t: Jn @ np.tanh(x),
                                     lambda x, t: Jn * (1.0 / np.cosh(x) ** 2))
            out.append(lyapynov.LCE(ds, k, 0, steps, False))
        return np.stack(out)
    return run


def sorted_np(lam) -> np.ndarray:
    return -np.sort(-np.asarray(lam, dtype=np.float64), axis=-1)


# ---------------------------------------------------------------- cases

def contenders(J, x0, steps, k, batch):
    fns = {
        "floss_utils (auto: Cholesky QR)": floss(J, x0, steps, k, "auto"),
        "floss_utils (reorth='qr')": floss(J, x0, steps, k, "qr"),
        "floss_utils (engine='lapack')": floss(J, x0, steps, k, "auto", "lapack"),
    }
    if batch == 1:
        fns["PyTorch per-step loop"] = torch_loop(J, x0, steps, k)
    jl, jf, jargs = lyapax_call(J, x0, steps, k)
    import time
    t0 = time.perf_counter()
    jf.lower(*jargs).compile()
    t_compile = time.perf_counter() - t0
    fns["lyapax (JAX jit" + (", vmap" if batch > 1 else "") + ")"] = jl
    fns["lyapynov (NumPy)" + (" in a loop" if batch > 1 else "")] = lyapynov_call(J, x0, steps, k)
    if batch == 1:
        fns["floor: matmul + LAPACK QR per step"] = floor(J, steps, k)
    return fns, t_compile


def case(n: int, k: int, g: float, steps: int, batch: int, repeats: int, seed: int, exact: bool,
         time_steps: int | None = None):
    """Return rows of the table for one case (times per call and per step, per network)."""
    J, x0 = network(n, g, seed, batch)
    fns, t_compile = contenders(J, x0, steps, k, batch)

    # agreement first
    ref = sorted_np(fns["floss_utils (reorth='qr')"]()) if batch > 1 else sorted_np(fns["PyTorch per-step loop"]())
    if exact:
        tol = 1e-8
        spread = float("nan")
    else:
        xp = x0 + 1e-9 * torch.randn(x0.shape, dtype=x0.dtype, generator=torch.Generator().manual_seed(99))
        spread = float(np.abs(sorted_np(floss(J, xp, steps, k, "qr")()) - ref).max())
        tol = 5 * spread
    errs = {}
    for name, fn in fns.items():
        if name.startswith("floor"):
            continue
        err = float(np.abs(sorted_np(fn()) - ref).max())
        errs[name] = err
        if not err <= tol:
            raise SystemExit(f"exponents disagree: {name} differs from the reference by {err:.2e} > {tol:.2e}")
    check_steps = steps
    if time_steps is not None and time_steps != steps:
        fns, t_compile = contenders(J, x0, time_steps, k, batch)
        steps = time_steps
    times = _common.interleaved_medians(fns, repeats)
    t_floss = times["floss_utils (auto: Cholesky QR)"]
    rows = []
    for name, t in times.items():
        per = t / batch
        if name.startswith("floor"):
            rel = f"floss_utils at {t / t_floss:.2f}x the floor's speed"
            err = "-"
        else:
            rel = f"{t / t_floss:.2f}x"
            err = f"{errs[name]:.1e}"
        extra = f" (+ {t_compile:.1f} s compile once)" if name.startswith("lyapax") else ""
        rows.append([name, f"{per * 1e3:.2f}" + extra, f"{per / steps * 1e6:.1f}", rel, err])
    note = (f"reference: {'floss_utils qr' if batch > 1 else 'PyTorch loop'}; "
            + (f"agreement tolerance {tol:.0e} (trajectories do not separate in {check_steps} steps)" if exact else
               f"statistical spread of {check_steps}-step exponents (rerun from a 1e-9-perturbed state) {spread:.1e}; "
               f"tolerance 5x that = {tol:.1e}"))
    return rows, note


def differentiable_fns(batch: int, n: int = 80, k: int = 75, steps: int = 55):
    """The flossing step's four timed calls (floss_utils and lyapax, forward and forward + backward
    of sum lambda_i^2 w.r.t. J) for ``batch`` networks (one network: no vmap), after checking that
    the two gradients agree; returns the functions and the relative gradient difference."""
    J, x0 = network(n, 1.0, 82, batch)
    q0 = torch.eye(n, k, dtype=J.dtype).expand(batch, -1, -1).contiguous()
    Jg = J.clone().requires_grad_(True)

    def calls(engine: str):
        """The forward call and the forward + backward call (returning the gradient) of one engine."""
        def forward():
            with torch.no_grad():
                lyapunov_spectrum(TanhRNN(Jg), x0, steps=steps, k=k, q0=q0, engine=engine)

        def forward_backward():
            lam = lyapunov_spectrum(TanhRNN(Jg), x0, steps=steps, k=k, q0=q0, engine=engine).exponents
            return torch.autograd.grad((lam ** 2).sum(), Jg)[0]

        return forward, forward_backward

    f_fwd, f_fb = calls("torch")
    l_fwd, l_fb = calls("lapack")

    one = lyapax_fn(steps, k)
    Jj, xj = jnp.asarray(J.numpy()), jnp.asarray(x0.numpy())
    if batch == 1:
        Jj, xj = Jj[0], xj[0]
        jf = jax.jit(one)
        jg = jax.jit(jax.grad(lambda Ja, xa: jnp.sum(one(Ja, xa) ** 2)))
    else:
        jf = jax.jit(jax.vmap(one))
        jg = jax.jit(jax.grad(lambda Ja, xa: jnp.sum(jax.vmap(one)(Ja, xa) ** 2)))
    # the two gradients must agree before their times are compared
    g_t = f_fb().numpy().reshape(np.shape(Jj))
    g_j = np.asarray(jg(Jj, xj))
    g_l = l_fb().numpy().reshape(np.shape(Jj))
    err = float(max(np.abs(g_t - g_j).max(), np.abs(g_l - g_j).max()) / np.abs(g_j).max())
    if not err <= 1e-8:
        raise SystemExit(f"gradients disagree: floss_utils (either engine) vs lyapax relative error {err:.1e}")
    fns = {"floss_utils forward": f_fwd, "floss_utils forward + backward": f_fb,
           "floss_utils lapack forward": l_fwd, "floss_utils lapack forward + backward": l_fb,
           "lyapax forward": lambda: jf(Jj, xj).block_until_ready(),
           "lyapax forward + backward": lambda: jg(Jj, xj).block_until_ready()}
    return fns, err


def differentiable(repeats: int, batch: int = 16):
    """Forward + backward (gradient of sum lambda_i^2 w.r.t. J, the flossing loss) vs forward."""
    fns, err = differentiable_fns(batch)
    t = _common.interleaved_medians(fns, repeats)
    rows = []
    for label, key in [("floss_utils", "floss_utils"), ("floss_utils (engine='lapack')", "floss_utils lapack"),
                       ("lyapax (jit" + (", vmap" if batch > 1 else "") + ")", "lyapax")]:
        fwd, fb = t[f"{key} forward"], t[f"{key} forward + backward"]
        rows.append([label, f"{fwd * 1e3 / batch:.2f}", f"{fb * 1e3 / batch:.2f}", f"{fb / fwd:.2f}"])
    return rows, f"gradients of sum lambda^2 w.r.t. J agree to {err:.1e} (relative, max norm); goal: ratio <= 3"


def headline(runs: int, repeats: int, time_steps: int):
    """The issue's goal, one network: lyapax's time over floss_utils' (> 1: floss_utils faster)
    for N = k = 64 (forward) and the flossing case (forward; forward + backward), measured in
    ``runs`` independent rounds (this machine's speed drifts by up to 2x between runs, and the
    ratio of interleaved medians is what survives the drift); median and range over rounds. Each
    round times lyapax and both engines of floss_utils, interleaved; the goal is judged on the
    LAPACK engine (the estimator's engine for one small network), the torch engine's ratio beside it."""
    J, x0 = network(64, 2.0, 64)
    fns64, _ = contenders(J, x0, time_steps, 64, 1)
    trio64 = {"t": fns64["floss_utils (auto: Cholesky QR)"], "l": fns64["floss_utils (engine='lapack')"],
              "j": fns64["lyapax (JAX jit)"]}
    dfns, _ = differentiable_fns(1)
    trios = {
        f"N = k = 64, g = 2, {time_steps} steps, forward": (trio64, "t", "l", "j"),
        "flossing case (N = 80, k = 75, 55 steps), forward":
            (dfns, "floss_utils forward", "floss_utils lapack forward", "lyapax forward"),
        "flossing case, forward + backward (gradient of sum lambda^2 w.r.t. J)":
            (dfns, "floss_utils forward + backward", "floss_utils lapack forward + backward", "lyapax forward + backward"),
    }
    ratios: dict[str, dict[str, list[float]]] = {name: {"l": [], "t": []} for name in trios}
    for _ in range(runs):
        for name, (fns, t_, l_, j_) in trios.items():
            t = _common.interleaved_medians({t_: fns[t_], l_: fns[l_], j_: fns[j_]}, repeats)
            ratios[name]["l"].append(t[j_] / t[l_])
            ratios[name]["t"].append(t[j_] / t[t_])
    rows = []
    for name, r in ratios.items():
        med, med_t = float(np.median(r["l"])), float(np.median(r["t"]))
        rows.append([name, f"{med:.2f}", f"{min(r['l']):.2f} - {max(r['l']):.2f}", f"{med_t:.2f}",
                     f"{min(r['t']):.2f} - {max(r['t']):.2f}", str(runs), "met" if med >= 1.0 else "not met"])
    note = ("ratio = lyapax time / floss_utils time of interleaved medians (> 1: floss_utils faster); "
            "goal (the small-network issue): median ratio >= 1 for each line, with the engine for one small "
            "network (engine='lapack')")
    return rows, note


def main() -> None:
    versions = {"torch": torch.__version__, "numpy": np.__version__, "jax": jax.__version__,
                "jaxlib": _v("jaxlib"), "lyapax": _v("lyapax"), "lyapynov": _v("lyapynov")}
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers_lyapunov.py --peers benchmarks/.venv " + \
          " ".join(a for a in sys.argv[1:] if not a.startswith("--peers") and a != args.peers)
    rep = _common.Report("peers_lyapunov", "Lyapunov spectra: floss_utils vs peers and the floor",
                         cmd.strip(), versions, args.threads)
    cols = ["contender", "ms per timed call (per network)", "us per step", "time / floss_utils",
            "max abs. difference of exponents vs ref"]
    for n in [int(s) for s in args.sizes.split(",")]:
        rows, note = case(n, n, 2.0, args.steps, 1, max(args.repeats, 5), seed=n, exact=False,
                          time_steps=args.time_steps)
        rep.table(f"N = k = {n}, g = 2, one network: exponents from {args.steps} steps after a 500-step "
                  f"transient, timed on calls of {args.time_steps} steps", cols, rows, note)
    rows, note = case(80, 75, 1.0, 55, 1, max(args.repeats, 20), seed=80, exact=True)
    rep.table("flossing case: N = 80, k = 75, g = 1, 55 steps, one network per call", cols, rows, note)
    rows, note = case(80, 75, 1.0, 55, 16, max(args.repeats, 10), seed=81, exact=True)
    rep.table("flossing case, 16 networks per call (times per network)", cols, rows, note)
    for batch in (1, 16):
        rows, note = differentiable(max(args.repeats, 10), batch)
        rep.table(f"differentiable spectrum (flossing step): {batch} network{'s' if batch > 1 else ''}, "
                  "N = 80, k = 75, 55 steps (times per network)",
                  ["code", "forward ms", "forward + backward ms", "ratio"], rows, note)
    rows, note = headline(args.runs, max(args.repeats, 10), args.time_steps)
    rep.table(f"one network, floss_utils against lyapax over {args.runs} rounds",
              ["comparison", "lyapax / floss_utils lapack engine (median)", "range",
               "lyapax / floss_utils torch engine (median)", "range", "rounds", "goal"], rows, note)
    if not args.no_write:
        rep.write()


if __name__ == "__main__":
    main()
