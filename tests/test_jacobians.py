"""The long-term Jacobian tools of floss_utils/lyapunov/jacobians.py against independent ground truths.

Each test states its tolerance and why. Float64 throughout. Ground truths: matrix powers for
linear maps, ``torch.autograd.functional.jacobian`` of the unrolled map for tanh networks,
matrices with known singular values, noiseless lines, and Oseledets' theorem for a scaled
orthogonal map (every singular value of ``T_t`` is exactly ``g^t``).
"""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.lyapunov.maps import LinearMap, TanhRNN, gaussian_coupling, scaled_orthogonal
from floss_utils.lyapunov.jacobians import (growth_rate, gradient_norms, log_singular_values,
                                            log_extreme_singular_values, long_term_jacobian)
from floss_utils.lyapunov.estimator import random_orthonormal
from floss_utils.lyapunov.random_networks import white_noise_drive

from conftest import F64, gen

pytestmark = pytest.mark.usefixtures("one_thread")  # loops of tiny ops: a second thread only adds sync


def unrolled_jacobians(net, h0, drive, t):
    """dh_t/dh_0 per system by reverse-mode autograd of the unrolled forward pass (B, N, N)."""

    def f(x):
        h = x
        for s in range(t):
            h = net.step(h, None if drive is None else drive(s))
        return h

    full = torch.autograd.functional.jacobian(f, h0)  # (B, N, B, N)
    B = h0.shape[0]
    blocks = torch.stack([full[b, :, b, :] for b in range(B)])
    off = full.clone()
    for b in range(B):
        off[b, :, b, :] = 0
    assert torch.equal(off, torch.zeros_like(off)), "systems of the batch must not interact"
    return blocks


# ---------------------------------------------------------------- long_term_jacobian


def test_linear_map_full_jacobian_is_the_matrix_power():
    # T_t = W^t for every t. matrix_power multiplies in a different order (repeated squaring),
    # so the two differ by round-off ~ t * eps * ||W||^t: relative tolerance 1e-12 at t <= 25
    # with rho(W) ~ 1.1.
    W = gaussian_coupling(2, 6, 1.1, generator=gen(0))
    h0 = torch.randn(2, 6, dtype=F64, generator=gen(1))
    T = long_term_jacobian(LinearMap(W), h0, None, 25)
    assert T.shape == (25, 2, 6, 6)
    for t in range(1, 26):
        truth = torch.linalg.matrix_power(W, t)
        torch.testing.assert_close(T[t - 1], truth, rtol=1e-12, atol=1e-12 * truth.abs().max().item())


def test_linear_map_with_given_directions_is_power_times_q0():
    # k < N with an explicit q0: T_t Q_0 = W^t Q_0. Same round-off argument: 1e-12.
    W = gaussian_coupling(3, 7, 0.9, generator=gen(2))
    q0 = random_orthonormal(3, 7, 3, generator=gen(3))
    h0 = torch.randn(3, 7, dtype=F64, generator=gen(4))
    T = long_term_jacobian(LinearMap(W), h0, None, 15, k=3, q0=q0)
    assert T.shape == (15, 3, 7, 3)
    for t in (1, 2, 7, 15):
        truth = torch.linalg.matrix_power(W, t) @ q0
        torch.testing.assert_close(T[t - 1], truth, rtol=1e-12, atol=1e-13)


def test_random_directions_are_orthonormal_when_k_below_n():
    # k < N without q0: Q_0 is Haar-random orthonormal, so T_1 = W Q_0 with Q_0^T Q_0 = I, i.e.
    # T_1^T T_1 = Q_0^T W^T W Q_0 and the columns of W^{-1} T_1 are orthonormal (to round-off).
    W = gaussian_coupling(2, 6, 1.0, generator=gen(5))
    T = long_term_jacobian(LinearMap(W), torch.zeros(2, 6, dtype=F64), None, 1, k=4, generator=gen(6))
    q0 = torch.linalg.solve(W, T[0])
    torch.testing.assert_close(q0.mT @ q0, torch.eye(4, dtype=F64).expand(2, 4, 4), rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["preactivation", "rate"])
def test_tanh_jacobian_equals_autograd_of_unrolled_map(form):
    # Independent ground truth: reverse-mode autograd through net.step, never through
    # net.tangent. Both are exact chain rules evaluated in a different order: relative
    # tolerance 1e-11 at t <= 30 for a chaotic g = 2 network with input and bias.
    N, B = 6, 2
    J = gaussian_coupling(B, N, 2.0, generator=gen(7))
    bias = 0.3 * torch.randn(B, N, dtype=F64, generator=gen(8))
    net = TanhRNN(J, bias=bias, form=form)
    h0 = torch.randn(B, N, dtype=F64, generator=gen(9))
    if form == "rate":
        h0 = torch.tanh(h0)
    drive = white_noise_drive(B, N, 0.5, seed=10)
    T = long_term_jacobian(net, h0, drive, 30)
    for t in (1, 2, 11, 30):
        truth = unrolled_jacobians(net, h0, drive, t)
        scale = truth.abs().amax(dim=(-2, -1), keepdim=True)
        assert ((T[t - 1] - truth).abs() <= 1e-11 * scale).all(), t


# Regression: the slope used to be 1 - tanh(x)**2, which cancels to exactly 0 once tanh(x)
# rounds to 1 (|x| >~ 19 in float64) although sech^2(x) is representable up to |x| ~ 355.
def test_saturated_tanh_unit_keeps_its_tiny_slope():
    # D_0 = J diag(sech^2 h0) with J = 0.5 I: the diagonal is 0.5 / cosh(h0)^2 in closed form.
    h0 = torch.tensor([[20.0, 15.0, 1.0]], dtype=F64)
    T = long_term_jacobian(TanhRNN(0.5 * torch.eye(3, dtype=F64)[None]), h0, None, 1)
    truth = 0.5 / torch.cosh(h0[0]) ** 2
    torch.testing.assert_close(torch.diagonal(T[0, 0]), truth, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- gradient_norms


def test_gradient_norms_equal_transposed_jacobian_on_readout():
    # ||T_t^T w|| from two independent routes: long_term_jacobian (analytic tangent) and
    # autograd.functional.jacobian of the unrolled map. Exact chain rules in different orders:
    # relative tolerance 1e-11.
    N, B = 6, 3
    J = gaussian_coupling(B, N, 1.8, generator=gen(11))
    net = TanhRNN(J)
    h0 = torch.randn(B, N, dtype=F64, generator=gen(12))
    drive = white_noise_drive(B, N, 0.2, seed=13)
    horizons = [1, 4, 9, 20]
    for w in (torch.randn(N, dtype=F64, generator=gen(14)), torch.randn(B, N, dtype=F64, generator=gen(15))):
        norms = gradient_norms(net, h0, drive, horizons, w)
        assert norms.shape == (len(horizons), B)
        T = long_term_jacobian(net, h0, drive, horizons[-1])
        wb = w.expand(B, N)
        for i, t in enumerate(horizons):
            via_tangent = torch.linalg.vector_norm(torch.einsum("bij,bi->bj", T[t - 1], wb), dim=-1)
            via_autograd = torch.linalg.vector_norm(
                torch.einsum("bij,bi->bj", unrolled_jacobians(net, h0, drive, t), wb), dim=-1)
            torch.testing.assert_close(norms[i], via_tangent, rtol=1e-11, atol=0)
            torch.testing.assert_close(norms[i], via_autograd, rtol=1e-11, atol=0)


def test_gradient_norms_of_a_scaled_orthogonal_map_grow_like_g_to_the_t():
    # T_t = (g Q)^t is g^t times an orthogonal matrix: ||T_t^T w|| = g^t ||w|| exactly (1e-12).
    g = 1.2
    net = LinearMap(scaled_orthogonal(2, 5, g, generator=gen(16)))
    w = torch.randn(5, dtype=F64, generator=gen(17))
    horizons = [1, 10, 40]
    norms = gradient_norms(net, torch.randn(2, 5, dtype=F64, generator=gen(18)), None, horizons, w)
    truth = torch.tensor([g**t for t in horizons], dtype=F64)[:, None] * torch.linalg.vector_norm(w)
    torch.testing.assert_close(norms, truth.expand(3, 2), rtol=1e-12, atol=0)


@pytest.mark.parametrize("horizons", [[], [0, 3], [-1, 2], [3, 2], [1, 5, 4]],
                         ids=["empty", "zero", "negative", "decreasing", "not-sorted"])
def test_gradient_norms_refuse_bad_horizons(horizons):
    net = LinearMap(torch.eye(3, dtype=F64)[None])
    with pytest.raises(ValueError, match="increasing positive"):
        gradient_norms(net, torch.ones(1, 3, dtype=F64), None, horizons, torch.ones(3, dtype=F64))


# ---------------------------------------------------------------- log_singular_values


def test_log_singular_values_of_known_matrices():
    # diag matrices: singular values are |diagonal|, sorted. U diag(s) V^T (orthonormal U, V):
    # singular values s. The SVD is backward stable: absolute error ~ eps * sigma_1 on each
    # sigma, i.e. ~1e-15 relative on these well-separated values: tolerance 1e-12 on the logs.
    D = torch.diag_embed(torch.tensor([[0.01, -3.0, 1.0], [2.0, 2.0, 0.5]], dtype=F64))
    truth = torch.tensor([[math.log(3.0), 0.0, math.log(0.01)], [math.log(2.0)] * 2 + [math.log(0.5)]], dtype=F64)
    torch.testing.assert_close(log_singular_values(D), truth, rtol=0, atol=1e-12)

    s = torch.tensor([5.0, 1.0, 1e-3], dtype=F64)
    U = random_orthonormal(4, 7, 3, generator=gen(19))  # (4, 7, 3): tall, like T_t Q_0
    V = random_orthonormal(4, 3, 3, generator=gen(20))
    A = U @ torch.diag(s) @ V.mT
    torch.testing.assert_close(log_singular_values(A), s.log().expand(4, 3), rtol=0, atol=1e-12)
    # leading batch dimensions (horizon, B) pass through
    assert log_singular_values(A.reshape(2, 2, 7, 3)).shape == (2, 2, 3)


def test_log_singular_values_below_resolution_are_nan():
    # Float64 resolves singular values down to ~eps * sigma_1 = 2.2e-16 sigma_1. 1e-20 and an
    # exact 0 are below it (NaN, not noise); 1e-10 is far above it (its log is exact to ~1e-6
    # relative, since the SVD's absolute error is ~eps * sigma_1: tolerance 1e-5 on the log).
    D = torch.diag(torch.tensor([1.0, 1e-10, 1e-20, 0.0], dtype=F64))[None]
    out = log_singular_values(D)[0]
    assert abs(out[0].item()) < 1e-14
    assert abs(out[1].item() - math.log(1e-10)) < 1e-5
    assert torch.isnan(out[2:]).all()
    # the floor is relative to sigma_1: scaling the matrix changes nothing but the offset
    out2 = log_singular_values(1e100 * D)[0]
    torch.testing.assert_close(out2[:2], out[:2] + math.log(1e100), rtol=0, atol=1e-5)
    assert torch.isnan(out2[2:]).all()


# ---------------------------------------------------------------- growth_rate


def test_growth_rate_of_a_line_is_its_slope():
    # Least squares on noiseless data returns the slope up to round-off: 1e-12.
    t = torch.arange(1, 61, dtype=F64)
    assert abs(growth_rate(t, 0.37 * t - 2.5).item() - 0.37) < 1e-12
    # uneven times and integer t work alike
    tu = torch.tensor([1, 2, 5, 9, 20, 33], dtype=torch.int64)
    assert abs(growth_rate(tu, -0.8 * tu.to(F64) + 4.0).item() + 0.8) < 1e-12


def test_growth_rate_of_a_batch_of_lines():
    # log_values (T, B, k): each column its own slope and intercept.
    t = torch.arange(0, 40, dtype=F64)
    slopes = torch.randn(3, 4, dtype=F64, generator=gen(21))
    offsets = torch.randn(3, 4, dtype=F64, generator=gen(22))
    y = t[:, None, None] * slopes + offsets
    rate = growth_rate(t, y)
    assert rate.shape == (3, 4)
    torch.testing.assert_close(rate, slopes, rtol=0, atol=1e-12)


def test_growth_rate_respects_t_min():
    # Before t_min the data are garbage (a transient): with t_min the fit sees only the line
    # and is exact (1e-12); without it the slope is visibly wrong.
    t = torch.arange(0, 50, dtype=F64)
    y = 0.2 * t + 1.0
    y = torch.where(t < 10, 40.0 + t, y)
    assert abs(growth_rate(t, y, t_min=10).item() - 0.2) < 1e-12
    assert abs(growth_rate(t, y).item() - 0.2) > 0.05
    assert abs(growth_rate(t, y, t_min=9).item() - 0.2) > 1e-3  # t = 9 is garbage: t_min is inclusive


# ---------------------------------------------------------------- Oseledets


@pytest.mark.parametrize("k", [None, 3])
def test_oseledets_scaled_orthogonal_map(k):
    # T_t = (g Q)^t Q_0: every singular value is g^t exactly, so log sigma_i(T_t) / t = ln g for
    # all i and t. Round-off in t products is ~t * eps relative, i.e. ~t * eps / t in the
    # rate: tolerance 1e-12. The fitted growth rate of the log singular values is also ln g.
    g = 1.3
    net = LinearMap(scaled_orthogonal(2, 8, g, generator=gen(23)))
    horizon = 80
    T = long_term_jacobian(net, torch.randn(2, 8, dtype=F64, generator=gen(24)), None, horizon,
                           k=k, generator=gen(25))
    t = torch.arange(1, horizon + 1, dtype=F64)
    logs = log_singular_values(T)  # (horizon, 2, k)
    assert logs.shape == (horizon, 2, 8 if k is None else k)
    rates = logs / t[:, None, None]
    torch.testing.assert_close(rates, torch.full_like(rates, math.log(g)), rtol=0, atol=1e-12)
    torch.testing.assert_close(growth_rate(t, logs, t_min=5), torch.full_like(logs[0], math.log(g)),
                               rtol=0, atol=1e-12)


def test_resolvable_growth_rate_fits_the_finite_points_only():
    from floss_utils.lyapunov.jacobians import resolvable_growth_rate

    t = torch.arange(1.0, 21.0, dtype=F64)
    exact = torch.stack([0.3 * t - 1.0, -0.2 * t + 4.0], dim=1)  # two columns, known slopes
    exact[15:, 0] = float("nan")  # column 0 unresolved beyond t = 15
    rates = resolvable_growth_rate(t, exact, t_min=5.0)
    assert rates.tolist() == pytest.approx([0.3, -0.2], abs=1e-12)
    few = torch.full((20, 1), float("nan"), dtype=F64)
    few[:3, 0] = torch.tensor([0.0, 1.0, 2.0])  # only 3 finite points, all before t_min: use them
    assert resolvable_growth_rate(t, few, t_min=5.0).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- log_extreme_singular_values


def _extremes_direct(T):
    s = torch.linalg.svdvals(T)
    return torch.stack([s[..., 0].log(), s[..., -1].log()], dim=-1)


@pytest.mark.parametrize("k", [None, 4])
def test_log_extremes_match_the_direct_svd_of_a_short_product(k):
    # Ground truth: the SVD of T_t Q_0 formed directly (long_term_jacobian, itself tested against
    # autograd). Its sigma_k carries an absolute error ~eps sigma_1, i.e. a relative error
    # ~eps kappa: tolerance 1e-10 + 100 eps kappa in the log at each t (and the test needs
    # steps where that is small: kappa < 1e6 over the first steps).
    net = TanhRNN(gaussian_coupling(3, 7, 1.8, generator=gen(40)))
    h0 = torch.randn(3, 7, dtype=F64, generator=gen(41))
    drive = white_noise_drive(3, 7, 0.5, seed=42)
    T = long_term_jacobian(net, h0, drive, 12, k=k, generator=gen(43))
    ext = log_extreme_singular_values(net, h0, drive, 12, k=k, generator=gen(43))
    truth = _extremes_direct(T)
    kappa = (truth[..., 0] - truth[..., 1]).exp()
    assert int((kappa < 1e6).sum()) >= 9
    tol = 1e-10 + 100 * torch.finfo(F64).eps * kappa
    assert bool(((ext[..., 0] - truth[..., 0]).abs() < 1e-10).all())
    assert bool(((ext[..., 1] - truth[..., 1]).abs() < tol).all())


def test_log_extremes_of_a_normal_map_at_a_horizon_beyond_float64():
    # W = O diag(e^a) O^T with O orthogonal: W^t is normal with singular values e^(a_i t)
    # exactly, so ln sigma_1 = a_max t and ln sigma_N = a_min t at every t. At t = 2000 the
    # condition number is e^(3.5 * 2000): far beyond float64's range, let alone its resolution.
    # Round-off: one QR per step, ~eps relative per step, so ~t eps in the log: tolerance 1e-9.
    a = torch.tensor([1.0, 0.4, 0.0, -0.7, -2.5], dtype=F64)
    O, _ = torch.linalg.qr(torch.randn(5, 5, dtype=F64, generator=gen(44)))
    W = (O * a.exp()) @ O.T
    horizon = 2000
    ext = log_extreme_singular_values(LinearMap(W[None]), torch.zeros(1, 5, dtype=F64), None, horizon)
    t = torch.arange(1, horizon + 1, dtype=F64)
    torch.testing.assert_close(ext[:, 0, 0], a.max() * t, rtol=0, atol=1e-9)
    torch.testing.assert_close(ext[:, 0, 1], a.min() * t, rtol=0, atol=1e-9)


def test_log_extremes_of_a_non_normal_triangular_power_in_closed_form():
    # A = [[a, b], [0, c]]: A^t = [[a^t, b (a^t - c^t) / (a - c)], [0, c^t]]; with
    # s = sigma_1^2 + sigma_2^2 = a^2t + b_t^2 + c^2t and sigma_1 sigma_2 = (ac)^t, in units of
    # a^2t: sigma_1^2 = a^2t (s' + sqrt(s'^2 - 4 r^2)) / 2, r = (c/a)^t. The non-normal coupling
    # makes sigma_1 differ from a^t by a factor of order one, a term the first-order QR estimate
    # t ln a misses. Closed form in log space at t up to 400 (kappa ~ e^600); tolerance 1e-10.
    a, b, c = 1.5, 2.0, 0.3
    W = torch.tensor([[[a, b], [0.0, c]]], dtype=F64)
    horizon = 400
    ext = log_extreme_singular_values(LinearMap(W), torch.zeros(1, 2, dtype=F64), None, horizon)
    for t in (1, 2, 10, 50, 400):
        r = (c / a) ** t
        bt = b * (1 - r) / (a - c)  # b_t / a^t
        s = 1 + bt ** 2 + r ** 2
        ln_s1 = t * math.log(a) + 0.5 * math.log((s + math.sqrt(s * s - 4 * r * r)) / 2)
        ln_s2 = t * (math.log(a) + math.log(c)) - ln_s1
        assert ext[t - 1, 0, 0].item() == pytest.approx(ln_s1, abs=1e-10)
        assert ext[t - 1, 0, 1].item() == pytest.approx(ln_s2, abs=1e-10)
        if t >= 50:  # a first-order QR estimate would be off by ln sqrt(1 + (b/(a-c))^2)
            assert abs(ext[t - 1, 0, 0].item() - t * math.log(a)) > 0.5


def test_log_extremes_of_a_tanh_network_against_a_high_precision_product():
    # Ground truth: the per-step Jacobians D_t (exact float64 numbers, from unrolled autograd of
    # one step) multiplied and decomposed in 60-digit arithmetic (mpmath). At t = 60 the
    # condition number exceeds 1e20, where the float64 product's SVD no longer resolves
    # sigma_N; the graded QR route agrees with the exact product to 1e-8 in the log.
    mpmath = pytest.importorskip("mpmath")
    net = TanhRNN(gaussian_coupling(1, 6, 2.5, generator=gen(45)))
    h = torch.randn(1, 6, dtype=F64, generator=gen(46))
    drive = white_noise_drive(1, 6, 0.3, seed=47)
    horizon = 60
    ext = log_extreme_singular_values(net, h, drive, horizon)
    mpmath.mp.dps = 60
    P = mpmath.eye(6)
    for t in range(horizon):
        Dt = torch.autograd.functional.jacobian(lambda x: net.step(x, drive(t)), h)[0, :, 0, :]
        P = mpmath.matrix(Dt.tolist()) * P
        h = net.step(h, drive(t))
    s = mpmath.svd_r(P, compute_uv=False)
    s = sorted([s[i] for i in range(6)], reverse=True)
    ln_k = float(mpmath.log(s[0]) - mpmath.log(s[-1]))
    assert ln_k > math.log(1e20)
    assert ext[-1, 0, 0].item() == pytest.approx(float(mpmath.log(s[0])), abs=1e-8)
    assert ext[-1, 0, 1].item() == pytest.approx(float(mpmath.log(s[-1])), abs=1e-8)
    direct = _extremes_direct(long_term_jacobian(net, torch.randn(1, 6, dtype=F64, generator=gen(46)), drive, horizon))
    assert (direct[-1, 0, 0] - direct[-1, 0, 1]).item() < ln_k - 5  # the direct route saturates
# --- finite_time_rate_tolerance: products of Gaussian matrices, whose spectrum is known exactly
# (Newman 1986: entries N(0, 1/N) -> lambda_i = (ln(2/N) + psi((N - i + 1)/2)) / 2)

def _ginibre_rates(N, k, t, C, n, seed):
    g = torch.Generator().manual_seed(seed)
    q0 = random_orthonormal(C * n, N, k, dtype=F64, generator=g)
    T = q0
    for _ in range(t):
        T = torch.randn(C * n, N, N, generator=g, dtype=F64) @ T / math.sqrt(N)
    return (log_singular_values(T) / t).reshape(C, n, k)


def _ginibre_exponents(N, k):
    i = torch.arange(1, k + 1, dtype=F64)
    return 0.5 * (math.log(2 / N) + torch.special.digamma((N - i + 1) / 2))


@pytest.mark.parametrize("N, k, t, n", [(12, 4, 10, 8), (20, 6, 40, 8), (24, 8, 30, 32), (16, 3, 60, 4)])
def test_rate_tolerance_holds_for_exact_exponents_and_rejects_wrong_ones(N, k, t, n):
    from floss_utils.lyapunov.jacobians import finite_time_rate_tolerance

    C = 3
    rates = _ginibre_rates(N, k, t, C, n, seed=N + t)
    lam = _ginibre_exponents(N, k).expand(C, n, k)
    cmp = finite_time_rate_tolerance(rates, lam, t, N)
    assert cmp.ok, f"exact exponents rejected: worst |error|/tol = {cmp.worst:.2f}"
    # a spectrum off by a bit more than the largest tolerance is rejected
    shift = 1.05 * float(cmp.tolerance.max())
    assert not finite_time_rate_tolerance(rates, lam + shift, t, N).ok
    assert not finite_time_rate_tolerance(rates, lam - shift, t, N).ok
    # one wrong index alone is enough
    wrong = lam.clone()
    wrong[..., -1] += 1.05 * float(cmp.tolerance[:, -1].max())
    assert not finite_time_rate_tolerance(rates, wrong, t, N).ok


def test_rate_tolerance_parts_scale_as_stated():
    from floss_utils.lyapunov.jacobians import finite_time_rate_tolerance

    g = torch.Generator().manual_seed(0)
    dev = torch.randn(2, 10, 4, generator=g, dtype=F64)
    zero = torch.zeros_like(dev)
    a = finite_time_rate_tolerance(dev, zero, 100, 64)
    b = finite_time_rate_tolerance(dev, zero, 200, 64)
    assert torch.allclose(b.orientation, a.orientation / 2)  # O(1/t)
    assert torch.allclose(a.orientation, torch.full_like(a.orientation, (0.5 * math.log(64) + 0.64) / 100))
    c = finite_time_rate_tolerance(3 * dev, zero, 100, 64)  # ordering and sampling scale with the spread
    assert torch.allclose(c.ordering, 3 * a.ordering) and torch.allclose(c.sampling, 3 * a.sampling)
    assert torch.allclose(a.ordering[0], math.sqrt(2 * math.log(8)) * dev[0].std(0).max().expand(4))
    nan = dev.clone()
    nan[0, 0, 0] = float("nan")
    assert not finite_time_rate_tolerance(nan, zero, 100, 64).ok  # an unresolved rate never passes
    with pytest.raises(ValueError):
        finite_time_rate_tolerance(dev[:, :1], zero[:, :1], 100, 64)
    # with 2 or 3 seeds the Bonferroni Student-t quantile is huge: the comparison says it cannot decide
    assert finite_time_rate_tolerance(dev[:, :3], zero[:, :3], 100, 64).quantile > 8
    assert not finite_time_rate_tolerance(dev[:, :3], zero[:, :3], 100, 64).decidable
    assert a.decidable and a.quantile < 8


def test_longest_resolved_rates_stop_where_float64_loses_the_singular_value():
    # diag(1, e^-0.5) applied t times to the identity frame: sigma_2 / sigma_1 = e^{-0.5 t} falls below
    # 10 eps at t > ln(1/(10 eps)) / 0.5 = 68.9: the rate of sigma_2 is read at t = 68, exactly -0.5
    from floss_utils.lyapunov.jacobians import longest_resolved_rates

    W = torch.diag(torch.tensor([1.0, math.exp(-0.5)], dtype=F64))[None]
    T = long_term_jacobian(LinearMap(W), torch.zeros(1, 2, dtype=F64), None, 100)  # (100, 1, 2, 2)
    log_sv = log_singular_values(T)[:, None]  # (t, C=1, n=1, k=2)
    rates, t_used = longest_resolved_rates(log_sv)
    limit = math.floor(math.log(1 / (10 * torch.finfo(F64).eps)) / 0.5)
    assert t_used[0, 0] == 100 and t_used[0, 1] in (limit, limit + 1)
    assert torch.allclose(rates[0, 0], torch.tensor([0.0, -0.5], dtype=F64), atol=1e-12)
    # a seed with an unresolved value from the start leaves no horizon: NaN, which fails the tolerance
    log_sv2 = log_sv.expand(-1, -1, 2, -1).clone()
    log_sv2[:, 0, 1, 1] = float("nan")
    rates2, t2 = longest_resolved_rates(log_sv2)
    assert t2[0, 1] == 0 and torch.isnan(rates2[0, :, 1]).all()


def test_fitted_rate_agreement_has_its_level_on_ginibre_products_and_detects_a_bias():
    # ground truth: for products of Gaussian matrices (entries N(0, 1/N)) the log-norm of a vector
    # grows by i.i.d. increments (rotation invariance) of mean lambda_1 = (ln(2/N) + psi(N/2)) / 2
    # exactly (Newman 1986), so a slope fitted to it is unbiased: over R independent experiments the
    # test rejects at most at its level alpha (up to the Monte Carlo error), the one-network band
    # holds for every network with probability >= 1 - alpha, and a bias of a few standard errors
    # is detected
    from floss_utils.lyapunov.jacobians import fitted_rate_agreement, growth_rate

    N, t, C, n, R, alpha = 12, 30, 3, 8, 300, 0.05
    g = torch.Generator().manual_seed(7)
    x = torch.randn(R * C * n, N, generator=g, dtype=F64)
    logs = []
    for _ in range(t):
        x = torch.einsum("mij,mj->mi", torch.randn(R * C * n, N, N, generator=g, dtype=F64) / math.sqrt(N), x)
        logs.append(x.norm(dim=-1).log())
    steps = torch.arange(1, t + 1, dtype=F64)
    rates = growth_rate(steps, torch.stack(logs)).reshape(R, C, n)
    lam1 = float(_ginibre_exponents(N, 1)[0])
    lam = torch.full((C, n), lam1, dtype=F64)
    results = [fitted_rate_agreement(rates[r], lam, window=t - 1, offset_range=0.0, alpha=alpha) for r in range(R)]
    rejected = sum(not a.ok for a in results)
    # the band is a prediction bound: it is checked on the networks of the next, independent experiment
    outside = sum(bool(((rates[(r + 1) % R] - lam).abs() > a.band[:, None]).any()) for r, a in enumerate(results))
    slack = 3 * math.sqrt(alpha * (1 - alpha) / R)
    assert rejected / R < alpha + slack and outside / R < alpha + slack, (rejected, outside)
    assert rejected > 0  # the test is not vacuous: at level 0.05 some of 300 exact experiments reject
    assert outside > 0  # nor the band: a band several times too wide would hold for every network of 300 experiments
    # a bias of 4 standard errors of the seed mean is found in most experiments
    se = float(torch.stack([a.spread for a in results]).median()) / math.sqrt(n)
    power = sum(not fitted_rate_agreement(rates[r], lam + 4 * se, window=t - 1, offset_range=0.0, alpha=alpha).ok
                for r in range(R)) / R
    assert power > 0.5
    a = results[0]
    from scipy import stats
    assert a.quantile == pytest.approx(stats.t.ppf(1 - alpha / (2 * C), n - 1))
    assert a.band_quantile == pytest.approx(stats.t.ppf(1 - alpha / (2 * C * n), n - 1))
    kw = dict(window=t - 1, offset_range=0.0)
    with pytest.raises(ValueError, match="2 seeds"):
        fitted_rate_agreement(rates[0][:, :1], lam[:, :1], **kw)
    with pytest.raises(ValueError, match="finite"):
        fitted_rate_agreement(rates[0] * float("nan"), lam, **kw)
    with pytest.raises(ValueError, match=r"\(C, n\)"):
        fitted_rate_agreement(rates[0][None], lam[None], **kw)
    # the bias bound adds to both bounds
    b = fitted_rate_agreement(rates[0], lam, window=10.0, offset_range=2.0)
    assert b.bias == pytest.approx(0.3)
    assert torch.allclose(b.tolerance, a.tolerance + 0.3) and torch.allclose(b.band, a.band + 0.3)
    assert torch.allclose(a.band, a.band_quantile * a.spread * math.sqrt(1 + 1 / n))


def test_slope_bias_bound_is_the_largest_slope_of_a_bounded_offset():
    # ground truth: the least-squares slope of any f with values in [0, B] on an even grid of span W is at
    # most 1.5 B / W, reached (up to the grid) by a step at the middle; random and decaying offsets stay below
    from floss_utils.lyapunov.jacobians import growth_rate, slope_bias_bound

    t = torch.linspace(0.0, 100.0, 2001, dtype=F64)
    B, W = 2.0, 100.0
    step = torch.where(t > 50.0, B, 0.0)[:, None]
    assert growth_rate(t, step).item() == pytest.approx(slope_bias_bound(B, W), rel=1e-2)
    g = torch.Generator().manual_seed(0)
    rand = B * torch.rand(2001, 500, generator=g, dtype=F64)
    decay = B * torch.exp(-t[:, None] / torch.tensor([1.0, 10.0, 30.0, 100.0], dtype=F64))
    for f in (rand, decay, -decay):
        assert bool((growth_rate(t, f).abs() <= slope_bias_bound(B, W) * (1 + 1e-12)).all())
    with pytest.raises(ValueError):
        slope_bias_bound(1.0, 0.0)
