"""The LAPACK engine of the Lyapunov estimator (``lyapunov_spectrum(..., engine="lapack")``):
against closed forms, finite differences and the PyTorch engine; its fallbacks and its errors."""

import math

import numpy as np
import pytest
import torch

from floss_utils.lyapunov import LinearMap, NonFiniteError, TanhRNN, gaussian_coupling, lyapunov_spectrum

f64 = torch.float64


def _net(B, N, k, g, seed):
    gen = torch.Generator().manual_seed(seed)
    J = gaussian_coupling(B, N, g, generator=gen)
    x = torch.randn(B, N, dtype=f64, generator=gen)
    q0 = torch.linalg.qr(torch.randn(B, N, k, dtype=f64, generator=gen))[0]
    return J, x, q0, gen


def test_at_the_fixed_point_zero_the_exponents_are_the_log_moduli_of_the_eigenvalues():
    # h0 = 0 stays 0 (tanh 0 = 0, no drive): every Jacobian is J, whose exponents are ln|eig(J)|.
    # J = P diag(mu) P^-1 with known moduli; the QR estimate after T steps is off by at most
    # O(ln cond(P) / T) (the change of basis; the initial basis's overlap with the leading invariant
    # subspaces adds a term of the same order, the basis here being e_1..e_4), so the tolerance is
    # 2 ln(10) / T = 1.2e-3 at T = 4000 for cond(P) < 10
    gen = torch.Generator().manual_seed(1)
    N, T = 6, 4000
    mu = torch.tensor([1.3, -1.1, 0.9, 0.7, -0.5, 0.3], dtype=f64)
    P = torch.eye(N, dtype=f64) + 0.2 * torch.randn(N, N, dtype=f64, generator=gen)
    assert torch.linalg.cond(P) < 10
    J = (P @ torch.diag(mu) @ torch.linalg.inv(P)).unsqueeze(0)
    res = lyapunov_spectrum(TanhRNN(J), torch.zeros(1, N, dtype=f64), steps=T, k=4, engine="lapack",
                            q0=torch.eye(N, 4, dtype=f64).unsqueeze(0))
    expected = torch.log(mu.abs())[:4]
    assert torch.allclose(res.exponents[0], expected, atol=math.log(10) / T * 2)


def test_gradients_match_central_finite_differences():
    # every input the adjoint returns a gradient for: J, bias, drive, initial state, initial basis,
    # from a loss on the exponents, the final state and the final basis
    B, N, k, T = 2, 5, 3, 25
    J, x, q0, gen = _net(B, N, k, 0.9, 3)
    bias = 0.1 * torch.randn(N, dtype=f64, generator=gen)
    drive = 0.2 * torch.randn(T + 2, 1, N, dtype=f64, generator=gen)
    w, wh, wq = (torch.randn(B, k, dtype=f64, generator=gen), torch.randn(B, N, dtype=f64, generator=gen),
                 torch.randn(B, N, k, dtype=f64, generator=gen))
    inputs = [J, bias, drive, x, q0]

    def loss(J, bias, drive, x, q0):
        r = lyapunov_spectrum(TanhRNN(J, bias=bias), x, drive, steps=T - 2, transient=2, k=k, q0=q0, engine="lapack")
        return (r.exponents * w).sum() + (r.final_state * wh).sum() + (r.final_basis * wq).sum()

    leaves = [v.clone().requires_grad_(True) for v in inputs]
    grads = torch.autograd.grad(loss(*leaves), leaves)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for i, (v, g) in enumerate(zip(inputs, grads)):
        for _ in range(4):  # four random entries of each input
            idx = tuple(int(rng.integers(s)) for s in v.shape)
            vp, vm = v.clone(), v.clone()
            vp[idx] += eps
            vm[idx] -= eps
            args_p = [vp if j == i else u for j, u in enumerate(inputs)]
            args_m = [vm if j == i else u for j, u in enumerate(inputs)]
            with torch.no_grad():
                fd = (loss(*args_p) - loss(*args_m)) / (2 * eps)
            # central differences: O(eps^2) truncation, O(u / eps) round-off ~1e-10 on losses of order 1
            assert abs(float(fd) - float(g[idx])) <= 1e-6 * max(1.0, abs(float(fd))), (i, idx, float(fd), float(g[idx]))


@pytest.mark.parametrize("B,N,k,g,steps", [(1, 80, 75, 1.0, 55), (3, 20, 12, 1.5, 200)])
def test_same_values_and_gradients_as_the_torch_engine(B, N, k, g, steps):
    # the same loop in other arithmetic (SciPy's BLAS, not PyTorch's): equal to round-off where the
    # driven network is not chaotic (lambda_1 < 0, asserted below: round-off is not amplified)
    J, x, q0, gen = _net(B, N, k, g, 5)
    W_s = torch.randn(N, dtype=f64, generator=gen)
    bits = torch.randn(steps + 3, B, 1, dtype=f64, generator=gen)
    out = {}
    for engine in ("torch", "lapack"):
        Jg, Wg = J.clone().requires_grad_(True), W_s.clone().requires_grad_(True)
        r = lyapunov_spectrum(TanhRNN(Jg), x, bits * Wg, steps=steps, transient=3, k=k, q0=q0, engine=engine)
        out[engine] = (r.exponents.detach(), *torch.autograd.grad((r.exponents ** 2).sum(), [Jg, Wg]))
    assert float(out["torch"][0][:, 0].max()) < 0
    for a, b in zip(out["torch"], out["lapack"]):  # relative to the largest entry (round-off is per matrix)
        assert float((a - b).abs().max()) <= 1e-9 * float(a.abs().max())


def test_a_batch_is_its_networks_run_alone_and_a_callable_drive_its_tensor():
    J, x, q0, gen = _net(3, 10, 4, 1.2, 7)
    drive = 0.3 * torch.randn(40, 3, 10, dtype=f64, generator=gen)
    both = lyapunov_spectrum(TanhRNN(J), x, drive, steps=40, k=4, q0=q0, engine="lapack")
    by_fn = lyapunov_spectrum(TanhRNN(J), x, lambda t: drive[t], steps=40, k=4, q0=q0, engine="lapack")
    assert torch.equal(both.exponents, by_fn.exponents)
    for b in range(3):
        one = lyapunov_spectrum(TanhRNN(J[b:b + 1]), x[b:b + 1], drive[:, b:b + 1], steps=40, k=4, q0=q0[b:b + 1],
                                engine="lapack")
        assert torch.equal(one.exponents[0], both.exponents[b])


def test_progress_is_reported_up_to_the_total():
    J, x, q0, _ = _net(2, 8, 3, 1.0, 2)
    seen = []
    lyapunov_spectrum(TanhRNN(J), x, steps=20, transient=5, k=3, q0=q0, engine="lapack",
                      on_step=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (25, 25) and all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))


def test_a_cholesky_breakdown_hands_the_run_to_the_torch_engine():
    # strongly saturated units (g = 30): sech^2 ~ 0 makes D_t Q ill-conditioned beyond u^-1/2,
    # where Cholesky QR breaks down; the torch engine then replays with Householder QR at the
    # broken steps, and the LAPACK engine's answer is that run's
    J, x, q0, _ = _net(1, 12, 12, 30.0, 11)
    x = 30 * x
    torch_run = lyapunov_spectrum(TanhRNN(J), x, steps=60, k=12, q0=q0)
    assert torch_run.fallback_steps > 0  # the case does break down
    lapack_run = lyapunov_spectrum(TanhRNN(J), x, steps=60, k=12, q0=q0, engine="lapack")
    assert lapack_run.fallback_steps == torch_run.fallback_steps
    assert torch.equal(lapack_run.exponents, torch_run.exponents)


def test_a_non_finite_state_is_named_as_by_the_torch_engine():
    J, x, q0, _ = _net(2, 6, 3, 1.0, 4)
    J[1, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="b=1"):
        lyapunov_spectrum(TanhRNN(J), x, steps=10, k=3, q0=q0, engine="lapack")


@pytest.mark.parametrize("change,message", [
    (dict(ons=2), "ons=2"), (dict(record=True), "record"), (dict(reorth="qr"), "reorth='qr'"),
    (dict(form="rate"), "form='rate'"), (dict(dtype=torch.float32), "float32"), (dict(linear=True), "LinearMap"),
])
def test_what_the_engine_does_not_run_is_refused_with_the_reason(change, message):
    J, x, q0, _ = _net(1, 6, 3, 1.0, 0)
    dtype = change.pop("dtype", f64)
    J, x, q0 = J.to(dtype), x.to(dtype), q0.to(dtype)
    system = LinearMap(J) if change.pop("linear", False) else TanhRNN(J, form=change.pop("form", "preactivation"))
    with pytest.raises(ValueError, match=message):
        lyapunov_spectrum(system, x, steps=10, k=3, q0=q0, engine="lapack", **change)


def test_an_unknown_engine_is_refused():
    J, x, q0, _ = _net(1, 6, 3, 1.0, 0)
    with pytest.raises(ValueError, match="engine must be"):
        lyapunov_spectrum(TanhRNN(J), x, steps=10, k=3, q0=q0, engine="jax")


def test_flossing_with_the_lapack_engine_takes_the_same_steps():
    # five flossing steps on two GF networks (N = 20, k = 10, W_s, J and b flossed): the parameters
    # after them equal the torch engine's to round-off
    from floss_utils.flossing.flosser import Flosser, FlossingConfig
    from floss_utils.flossing.tanh_network import init_gf_networks

    nets = {}
    for engine in ("torch", "lapack"):
        net = init_gf_networks([0, 1], 20, 2)
        torch.manual_seed(0)  # the flossing inputs and bases
        Flosser(net, FlossingConfig(k=10, steps=40, lr=0.01, engine=engine), [0, 1]).run(5)
        nets[engine] = net
    for name in ("W_s", "J", "b"):
        a, b = getattr(nets["torch"], name).detach(), getattr(nets["lapack"], name).detach()
        assert not torch.equal(a, getattr(init_gf_networks([0, 1], 20, 2), name).detach())  # it did move
        assert float((a - b).abs().max()) <= 1e-9 * float(a.abs().max()), name
    with pytest.raises(ValueError, match="engine"):
        FlossingConfig(engine="jax")


def test_gradients_of_state_drive_and_a_per_network_bias_match_the_torch_engine():
    # a (B, N) bias, a (T, B, N) drive and the initial state, through a loss on exponents and final state
    J, x, q0, gen = _net(2, 12, 5, 1.0, 8)
    bias = 0.1 * torch.randn(2, 12, dtype=f64, generator=gen)
    drive = 0.3 * torch.randn(45, 2, 12, dtype=f64, generator=gen)
    grads = {}
    for engine in ("torch", "lapack"):
        leaves = [v.clone().requires_grad_(True) for v in (bias, drive, x)]
        r = lyapunov_spectrum(TanhRNN(J, bias=leaves[0]), leaves[2], leaves[1], steps=40, transient=4, k=5, q0=q0,
                              engine=engine)
        grads[engine] = torch.autograd.grad((r.exponents ** 2).sum() + r.final_state.sum(), leaves)
    assert float(lyapunov_spectrum(TanhRNN(J, bias=bias), x, drive, steps=40, transient=4, k=5, q0=q0).exponents[:, 0].max()) < 0
    for a, b in zip(grads["torch"], grads["lapack"]):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-9 * float(a.abs().max())


def test_a_callable_drive_may_return_none():
    J, x, q0, _ = _net(2, 8, 3, 1.0, 9)
    plain = lyapunov_spectrum(TanhRNN(J), x, steps=15, k=3, q0=q0, engine="lapack")
    by_fn = lyapunov_spectrum(TanhRNN(J), x, lambda t: None, steps=15, k=3, q0=q0, engine="lapack")
    assert torch.equal(plain.exponents, by_fn.exponents)


def test_tensors_of_another_precision_than_the_state_are_refused():
    J, x, q0, _ = _net(1, 6, 3, 1.0, 0)
    with pytest.raises(ValueError, match="J is torch.float32"):
        lyapunov_spectrum(TanhRNN(J.float()), x, steps=10, k=3, q0=q0, engine="lapack")
    with pytest.raises(ValueError, match="q0 is torch.float32"):
        lyapunov_spectrum(TanhRNN(J), x, steps=10, k=3, q0=q0.float(), engine="lapack")


def test_flossing_config_refuses_what_the_lapack_engine_does_not_run():
    from floss_utils.flossing.flosser import FlossingConfig

    for bad in (dict(ons=2), dict(dtype="float32"), dict(reorth="qr")):
        with pytest.raises(ValueError, match="engine='lapack'"):
            FlossingConfig(engine="lapack", **bad)
