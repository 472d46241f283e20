"""Diagonal recurrences: floss_utils' scans against a loop and the JAX associative scan.

    .venv/bin/python benchmarks/bench_scan_peers.py --peers benchmarks/.venv [--repeats R]

``h_t = lambda * h_{t-1} + b_t`` with complex diagonal ``lambda`` (|lambda| in [0.9, 1), an LRU
layer's recurrence), complex64, shape batch x T x units, T in {300, 3000}. Contenders, forward and
forward + backward (gradient of ``sum Re h`` with respect to ``lambda`` and ``b``):

* ``floss_utils.curse_of_memory.scans.diagonal_scan`` (the LRU/complex diagonal layers' kernel: a chunked scan,
  or the loop for large per-step tensors on a CPU, as it dispatches itself);
* ``floss_utils.curse_of_memory.scans.linear_scan`` (the Part II scan: chunk products; time last);
* ``floss_utils.curse_of_memory.scans.diagonal_recurrence`` (a Python loop over time, PyTorch autograd);
* ``jax.lax.associative_scan`` with the LRU binary operator ``(a1, b1), (a2, b2) -> (a1 a2,
  a2 b1 + b2)``, as the public Zucchet-Orvieto / LRU code uses, ``jax.jit``-ed;
* ``jax.lax.scan`` (a sequential loop compiled by XLA), ``jax.jit``-ed.

Every contender is checked against the float64/complex128 loop before any time is compared
(relative max-norm error <= 1e-4, the complex64 round-off over T steps). Times are medians over
repeats with the contenders interleaved; one thread per library (``--threads``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", default=None, help="the peers' venv (benchmarks/.venv) or its site-packages")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
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
import jax.numpy as jnp  # noqa: E402

from floss_utils.curse_of_memory.scans import diagonal_recurrence, diagonal_scan, linear_scan

TOL = 1e-4


def lru_op(x, y):
    a1, b1 = x
    a2, b2 = y
    return a1 * a2, a2 * b1 + b2


def jax_assoc(lam, b):  # b: (batch, T, n), lam: (n,)
    a = jnp.broadcast_to(lam, b.shape)
    return jax.lax.associative_scan(lru_op, (a, b), axis=1)[1]


def jax_seq(lam, b):
    def step(h, bt):
        h = lam * h + bt
        return h, h
    _, hs = jax.lax.scan(step, jnp.zeros_like(b[:, 0]), jnp.swapaxes(b, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def torch_linear_scan(lam, b):  # linear_scan wants time last
    return linear_scan(lam, b.transpose(-1, -2)).transpose(-1, -2)


def case(batch: int, T: int, n: int, repeats: int):
    g = torch.Generator().manual_seed(T + n)
    lam = torch.polar(0.9 + 0.0999 * torch.rand(n, generator=g), torch.rand(n, generator=g) * 3.14)
    b = torch.complex(torch.randn(batch, T, n, generator=g), torch.randn(batch, T, n, generator=g))
    ref = diagonal_recurrence(lam.to(torch.complex128), b.to(torch.complex128))
    scale = float(ref.abs().max())
    lam_j, b_j = jnp.asarray(lam.numpy()), jnp.asarray(b.numpy())

    t_fns = {"floss_utils diagonal_scan": diagonal_scan,
             "floss_utils linear_scan": torch_linear_scan,
             "PyTorch loop (diagonal_recurrence)": diagonal_recurrence}
    j_fns = {"JAX associative_scan (jit)": jax_assoc, "JAX lax.scan loop (jit)": jax_seq}

    fwd, bwd, errs = {}, {}, {}
    for name, f in t_fns.items():
        errs[name] = float((f(lam, b).to(torch.complex128) - ref).abs().max()) / scale

        def fw(f=f):
            with torch.no_grad():
                f(lam, b)

        def fb(f=f):
            lr, br = lam.clone().requires_grad_(True), b.clone().requires_grad_(True)
            torch.autograd.grad(f(lr, br).real.sum(), [lr, br])
        fwd[name], bwd[name] = fw, fb
    for name, f in j_fns.items():
        jf = jax.jit(f)
        jg = jax.jit(jax.grad(lambda l, bb, f=f: jnp.sum(jnp.real(f(l, bb))), argnums=(0, 1)))
        errs[name] = float(np.abs(np.asarray(jf(lam_j, b_j)).astype(np.complex128) - ref.numpy()).max()) / scale
        fwd[name] = lambda jf=jf: jf(lam_j, b_j).block_until_ready()
        bwd[name] = lambda jg=jg: jax.block_until_ready(jg(lam_j, b_j))
    for name, e in errs.items():
        if not e <= TOL:
            raise SystemExit(f"{name} disagrees with the complex128 loop: relative error {e:.1e} > {TOL:.0e}")
    tf = _common.interleaved_medians(fwd, repeats)
    tb = _common.interleaved_medians(bwd, repeats)
    base_f, base_b = tf["floss_utils diagonal_scan"], tb["floss_utils diagonal_scan"]
    rows = [[name, f"{tf[name] * 1e3:.2f}", f"{tf[name] / base_f:.2f}x", f"{tb[name] * 1e3:.2f}",
             f"{tb[name] / base_b:.2f}x", f"{errs[name]:.1e}"] for name in fwd]
    return rows


def main() -> None:
    from importlib.metadata import version
    versions = {"torch": torch.__version__, "numpy": np.__version__, "jax": jax.__version__,
                "jaxlib": version("jaxlib")}
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scan_peers.py --peers benchmarks/.venv " + \
          " ".join(a for a in sys.argv[1:] if not a.startswith("--peers") and a != args.peers)
    rep = _common.Report("scan_peers", "Diagonal recurrences: floss_utils scans vs a loop and JAX",
                         cmd.strip(), versions, args.threads)
    cols = ["contender", "forward ms", "fwd / diagonal_scan", "fwd+bwd ms", "fwd+bwd / diagonal_scan",
            "rel. error vs complex128 loop"]
    for batch, T, n in [(16, 300, 128), (16, 3000, 128), (1, 3000, 16)]:
        rep.table(f"batch {batch}, T = {T}, units {n}, complex64", cols, case(batch, T, n, args.repeats))
    if not args.no_write:
        rep.write()


if __name__ == "__main__":
    main()
