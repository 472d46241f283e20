"""The Lyapunov estimator against independent ground truths (numbered 1-6 as on the book's page
'Methods and reference values', section "Ground truths for the exponents").

Each test states its tolerance and why. Float64 throughout unless a test says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from floss_utils.lyapunov.maps import (CellMap, LinearMap, RandomGaussianProduct, RateNetwork,
                                       TanhRNN, gaussian_coupling, scaled_orthogonal)
from floss_utils.lyapunov.estimator import (NonFiniteError, cholesky_qr, entropy_rate,
                                            kaplan_yorke_dimension, lyapunov_spectrum,
                                            orthonormalize, random_orthonormal)
from floss_utils.lyapunov.theory import mean_field_lyapunov, newman_spectrum

from conftest import F64, gen


# ---------------------------------------------------------------- 1. scaled orthogonal map


@pytest.mark.parametrize("reorth", ["qr", "cholqr", "cholqr2"])
@pytest.mark.parametrize("k", [1, 4, 10])
def test_scaled_orthogonal_map_has_all_exponents_ln_g(reorth, k):
    # h <- g Q h: every tangent vector grows by exactly g per step, so every exponent is ln g.
    # Only round-off separates the estimate from ln g: tolerance 1e-12 (~1e4 ulps).
    g = 1.3
    W = scaled_orthogonal(3, 10, g, generator=gen(0))
    res = lyapunov_spectrum(LinearMap(W), torch.randn(3, 10, dtype=F64, generator=gen(1)),
                            steps=300, k=k, reorth=reorth, generator=gen(2))
    assert res.exponents.shape == (3, k)
    assert torch.allclose(res.exponents, torch.full_like(res.exponents, math.log(g)), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- 2. constant linear map


def test_constant_linear_map_gives_log_eigenvalue_moduli():
    # Exponents of h <- W h are ln|mu_i(W)|. The estimate converges like C/T, with C set by the
    # initial overlap with the eigenvectors (log of condition numbers, O(1-10)); with T = 2e4
    # steps the error is a few 1e-4: tolerance 2e-3.
    W = gaussian_coupling(3, 8, 0.9, generator=gen(3))
    res = lyapunov_spectrum(LinearMap(W), torch.zeros(3, 8, dtype=F64), steps=20_000, generator=gen(4))
    truth = torch.linalg.eigvals(W).abs().log().sort(dim=-1, descending=True).values
    assert (res.exponents - truth).abs().max() < 2e-3


def test_input_free_tanh_network_below_one_converges_to_linearization():
    # g < 1, zero bias, no input: the state decays to 0, where D_t = J, so the exponents are
    # ln|mu_i(J)|. After a 200-step transient (state ~ 0.6^200) the only error is the C/T
    # alignment term, as in the linear-map test: tolerance 2e-3 at T = 2e4.
    J = gaussian_coupling(2, 10, 0.6, generator=gen(5))
    h0 = torch.randn(2, 10, dtype=F64, generator=gen(6))
    res = lyapunov_spectrum(TanhRNN(J), h0, steps=20_000, transient=200, generator=gen(7))
    truth = torch.linalg.eigvals(J).abs().log().sort(dim=-1, descending=True).values
    assert (res.exponents - truth).abs().max() < 2e-3


# ---------------------------------------------------------------- 3. Newman's Gaussian products


def test_products_of_gaussian_matrices_match_newman():
    # Newman (1986): exact spectrum for i.i.d. N(0, sigma^2/N) matrices. Each per-step log R_ii
    # has variance psi'((N-i+1)/2)/4 <= 1.24, so 4 systems x 2e4 steps give a standard error
    # <= 0.004 for every exponent; tolerance 0.02 (5 standard errors of the noisiest one).
    sigma, n = 1.5, 40
    m = RandomGaussianProduct(4, n, sigma, generator=gen(8))
    res = lyapunov_spectrum(m, torch.randn(4, n, dtype=F64, generator=gen(9)), steps=20_000, generator=gen(10))
    estimate = res.exponents.mean(dim=0).numpy()
    assert np.abs(estimate - newman_spectrum(n, sigma)).max() < 0.02


# ---------------------------------------------------------------- 4. mean-field largest exponent


def test_largest_exponent_matches_mean_field_at_large_n():
    # Mean-field value (Molgedey et al. 1992): a QR estimate at N = 1000 lands within ~0.005 of it
    # (the finite-N bias is negative and O(1/N)). 2500 steps after a 300-step transient give a
    # statistical error of ~1e-3; tolerance 0.006.
    gains = torch.tensor([1.5, 2.0, 4.0], dtype=F64)
    J = gaussian_coupling(3, 1000, gains, generator=gen(11))
    h0 = torch.randn(3, 1000, dtype=F64, generator=gen(12))
    res = lyapunov_spectrum(TanhRNN(J), h0, steps=2500, transient=300, k=1, generator=gen(13))
    theory = mean_field_lyapunov(gains.numpy())
    assert np.abs(res.exponents[:, 0].numpy() - theory).max() < 0.006


def test_noise_driven_largest_exponent_matches_mean_field():
    # Same ground truth with white input of std s (Molgedey et al. 1992): noise suppresses chaos.
    # At g = 2, s = 1 mean-field predicts lambda_max below its noise-free value; the N = 1000
    # estimate agrees within the same 0.006 as above.
    g, s, n, steps = 2.0, 1.0, 1000, 2500
    J = gaussian_coupling(2, n, g, generator=gen(14))
    drive = s * torch.randn(steps + 300, 2, n, dtype=F64, generator=gen(15))
    res = lyapunov_spectrum(TanhRNN(J), torch.zeros(2, n, dtype=F64), drive, steps=steps,
                            transient=300, k=1, generator=gen(16))
    theory = mean_field_lyapunov(g, s)
    assert theory < mean_field_lyapunov(g)
    assert np.abs(res.exponents[:, 0].numpy() - theory).max() < 0.006


# ---------------------------------------------------------------- 5. sum rule


@pytest.mark.parametrize("reorth", ["qr", "cholqr"])
def test_sum_rule_discrete_tanh_holds_to_round_off(reorth):
    # With k = N: sum_i lambda_i = ln|det J| + <sum_i ln phi'(a_{i,t})>_t exactly for any finite T
    # (the product of the R diagonals is |det| of the product of the Jacobians). Relative
    # tolerance 1e-10 leaves room for round-off accumulated over 500 steps.
    n, steps = 12, 500
    J = gaussian_coupling(2, n, 2.0, generator=gen(17))
    h0 = torch.randn(2, n, dtype=F64, generator=gen(18))
    drive = 0.3 * torch.randn(steps, 2, n, dtype=F64, generator=gen(19))
    net = TanhRNN(J)
    res = lyapunov_spectrum(net, h0, drive, steps=steps, reorth=reorth, generator=gen(20))
    # independent evaluation of the right-hand side along the same trajectory
    h, logphi = h0, torch.zeros(2, dtype=F64)
    for t in range(steps):
        logphi = logphi + torch.log(1 - torch.tanh(h) ** 2).sum(-1)  # D_t = J diag(sech^2 x_t)
        h = net.step(h, drive[t])
    rhs = torch.linalg.slogdet(J).logabsdet + logphi / steps
    assert torch.allclose(res.exponents.sum(-1), rhs, rtol=1e-10, atol=1e-10)


def test_sum_rule_continuous_time_zero_diagonal():
    # Rate network with J_ii = 0: sum_i lambda_i = -N per tau in the dt -> 0 limit. The Euler map
    # gives ln det((1-dt) I + dt J S) / dt = -N - O(dt N): relative tolerance dt.
    n, dt = 20, 0.01
    J = gaussian_coupling(2, n, 2.0, zero_diagonal=True, generator=gen(21))
    net = RateNetwork(J, dt=dt)
    res = lyapunov_spectrum(net, torch.randn(2, n, dtype=F64, generator=gen(22)), steps=4000,
                            transient=500, generator=gen(23))
    total = res.exponents.sum(-1)
    assert torch.all((total / n + 1).abs() < dt)


# ---------------------------------------------------------------- 6. derivative dlambda/dg = 1/g


@pytest.mark.parametrize("reorth", ["qr", "cholqr"])
def test_derivative_of_exponents_wrt_gain_is_one_over_g(reorth):
    # For h <- g Q h, lambda_i = ln g, so dlambda_i/dg = 1/g. Checked twice, independently:
    # central finite differences through the whole QR algorithm (step 1e-5: truncation error
    # ~1e-10, round-off ~1e-11) and autograd through it.
    g0, n, k = 1.7, 8, 5
    Q = scaled_orthogonal(1, n, 1.0, generator=gen(24))
    h0 = torch.randn(1, n, dtype=F64, generator=gen(25))
    q0 = random_orthonormal(1, n, k, generator=gen(26))

    def spectrum(g):
        return lyapunov_spectrum(LinearMap(g * Q), h0, steps=50, k=k, q0=q0, reorth=reorth).exponents

    eps = 1e-5
    fd = (spectrum(g0 + eps) - spectrum(g0 - eps)) / (2 * eps)
    assert torch.allclose(fd, torch.full_like(fd, 1 / g0), atol=1e-8)
    g = torch.tensor(g0, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(spectrum(g).sum(), g)
    assert abs(grad.item() - k / g0) < 1e-10


@pytest.mark.parametrize("reorth", ["qr", "cholqr", "cholqr2"])
def test_gradcheck_through_the_qr_iteration(reorth):
    # torch.autograd.gradcheck compares autograd with finite differences in float64, on the small
    # case of the book's page 'Methods and reference values' (N = 6, k = 3, T = 10), w.r.t. the
    # couplings, bias and input weights.
    n, k, steps = 6, 3, 10
    J = (gaussian_coupling(1, n, 1.5, generator=gen(27))).requires_grad_()
    b = (0.1 * torch.randn(1, n, dtype=F64, generator=gen(28))).requires_grad_()
    w_in = torch.randn(n, 1, dtype=F64, generator=gen(29)).requires_grad_()
    x = torch.randn(steps, 1, 1, dtype=F64, generator=gen(30))
    h0 = torch.randn(1, n, dtype=F64, generator=gen(31))
    q0 = random_orthonormal(1, n, k, generator=gen(32))

    def f(J, b, w_in):
        drive = x @ w_in.T  # (T, 1, N)
        return lyapunov_spectrum(TanhRNN(J, bias=b), h0, drive, steps=steps, k=k, q0=q0, reorth=reorth).exponents

    assert torch.autograd.gradcheck(f, (J, b, w_in), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_cholesky_qr_step_backward_is_the_qr_derivative():
    # The hand-written backward of one Cholesky QR step (used when gradients are needed) against
    # (a) finite differences (gradcheck, float64) and (b) autograd through the same operations
    # (Gram matrix, Cholesky, triangular solve) on a batch of 5 random 9 x 4 matrices: 1e-12
    # relative (different order of round-off only). Forward values are the same operations.
    from floss_utils.lyapunov.estimator import _CholeskyQRStep, _cholesky_qr_step

    A = torch.randn(5, 9, 4, dtype=F64, generator=gen(40)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: _CholeskyQRStep.apply(a)[:2], (A,), eps=1e-6, atol=1e-8)
    dQ = torch.randn(5, 9, 4, dtype=F64, generator=gen(41))
    dl = torch.randn(5, 4, dtype=F64, generator=gen(42))
    Q1, l1, margin, info = _CholeskyQRStep.apply(A)
    g1 = torch.autograd.grad((Q1 * dQ).sum() + (l1 * dl).sum(), A)[0]
    Q2, l2, _, _, _ = _cholesky_qr_step(A)
    g2 = torch.autograd.grad((Q2 * dQ).sum() + (l2 * dl).sum(), A)[0]
    assert torch.equal(Q1, Q2) and torch.equal(l1, l2) and not bool((margin > 0).any() or (info != 0).any())
    assert float((g1 - g2).abs().max() / g2.abs().max()) < 1e-12


# ---------------------------------------------------------------- batched Cholesky QR vs LAPACK


def test_cholesky_qr_matches_lapack_householder_qr():
    # For a well-conditioned batch (Gaussian 80 x 75: cond <= ~100), the factorizations agree
    # to ~u cond^2 (1e-12). Orthogonality: one pass loses ~u cond^2 (Cholesky QR's known bound;
    # measured 2e-13 here, the exact value depends on the BLAS kernel the CPU selects), a
    # second pass restores it to ~n u (measured 1e-15).
    A = torch.randn(16, 80, 75, dtype=F64, generator=gen(33))
    u_cond2 = torch.finfo(F64).eps * float(torch.linalg.cond(A).max()) ** 2
    assert u_cond2 < 5e-12
    Qh, Rh = torch.linalg.qr(A)
    sign = torch.sign(torch.diagonal(Rh, dim1=-2, dim2=-1))
    Qh, Rh = Qh * sign.unsqueeze(-2), Rh * sign.unsqueeze(-1)
    for passes in (1, 2):
        Q, logdiag, info = cholesky_qr(A, passes=passes)
        assert torch.all(info == 0)
        assert (Q - Qh).abs().max() < 1e-12
        assert (logdiag - torch.log(torch.diagonal(Rh, dim1=-2, dim2=-1))).abs().max() < 1e-12
        eye = torch.eye(75, dtype=F64)
        assert (Q.mT @ Q - eye).abs().max() < (u_cond2 if passes == 1 else 1e-14)


def test_cholesky_qr_spectrum_matches_lapack_on_flossing_case():
    # The flossing case (N = 80, k = 75, 55 steps, input-driven, g = 1): batched Cholesky QR and
    # LAPACK QR give the same exponents to 1e-10 (measured: ~1e-13).
    b, n, k, steps = 4, 80, 75, 55
    J = gaussian_coupling(b, n, 1.0, generator=gen(34))
    h0 = torch.randn(b, n, dtype=F64, generator=gen(35))
    drive = torch.randn(steps, b, n, dtype=F64, generator=gen(36))
    q0 = random_orthonormal(b, n, k, generator=gen(37))
    kw = dict(steps=steps, k=k, q0=q0)
    chol = lyapunov_spectrum(TanhRNN(J), h0, drive, reorth="cholqr", **kw).exponents
    lapack = lyapunov_spectrum(TanhRNN(J), h0, drive, reorth="qr", **kw).exponents
    assert (chol - lapack).abs().max() < 1e-10


def _squashing_map():
    # W = Q diag(1, 0.5, 0.2, 1e-12): one direction squashed by 1e-12 per step makes D Q's
    # condition number 1e12 > u^-1/2, so the Gram matrix is numerically singular and Cholesky
    # either fails or returns a pivot made of rounding noise.
    scales = torch.tensor([1.0, 0.5, 0.2, 1e-12], dtype=F64)
    return scaled_orthogonal(1, 4, 1.0, generator=gen(38)) * scales, scales


def _check_squashing_result(res, scales):
    # W's exponents are the log-moduli of its eigenvalues, whose sum is sum(log s). Householder
    # QR resolves the 1e-12 direction to a relative u * cond = 1e-4 per step, so the sum rule
    # holds to 1e-4 (a silently broken Cholesky factor would be off by ~10).
    assert abs(res.exponents.sum().item() - torch.log(scales).sum().item()) < 1e-4


def test_cholesky_breakdown_is_detected():
    W, _ = _squashing_map()
    A = W @ random_orthonormal(1, 4, 4, generator=gen(39))
    assert cholesky_qr(A)[2].item() != 0
    assert cholesky_qr(random_orthonormal(1, 4, 4, generator=gen(39)))[2].item() == 0


def test_hot_loop_breakdown_test_matches_cholesky_qr():
    # The loop's unreduced test (margin > 0 or info != 0, kept as a running maximum without a
    # host sync) flags exactly what cholesky_qr's info flags: the squashed basis (cond 1e12 >
    # u^-1/2) and not an orthonormal one.
    from floss_utils.lyapunov.estimator import _broke_down, _cholesky_qr_step

    W, _ = _squashing_map()
    for A in (W @ random_orthonormal(1, 4, 4, generator=gen(39)), random_orthonormal(1, 4, 4, generator=gen(39))):
        _, _, margin, info, _ = _cholesky_qr_step(A)
        assert bool(_broke_down(margin, info).item()) == (cholesky_qr(A)[2].item() != 0)


def test_spectrum_with_and_without_a_graph_is_the_same_number():
    # Without a graph the loop calls the Cholesky step directly, with one the custom autograd
    # Function: the forward operations are the same, so the exponents are bitwise equal.
    J = gaussian_coupling(3, 20, 1.5, generator=gen(43))
    h0 = torch.randn(3, 20, dtype=F64, generator=gen(44))
    q0 = random_orthonormal(3, 20, 6, generator=gen(45))
    with torch.no_grad():
        plain = lyapunov_spectrum(TanhRNN(J), h0, steps=50, k=6, q0=q0).exponents
    graph = lyapunov_spectrum(TanhRNN(J.clone().requires_grad_()), h0, steps=50, k=6, q0=q0).exponents
    assert graph.requires_grad and torch.equal(plain, graph.detach())


def test_cholesky_breakdown_on_cpu_redoes_the_step_with_householder():
    W, scales = _squashing_map()
    res = lyapunov_spectrum(LinearMap(W), torch.zeros(1, 4, dtype=F64), steps=40, reorth="cholqr",
                            generator=gen(40))
    assert res.fallback_steps == 40
    _check_squashing_result(res, scales)


def test_cholesky_breakdown_without_per_step_checks_recomputes_or_refuses():
    # The accelerator path (no host sync in the loop): "auto" recomputes with LAPACK and warns;
    # an explicit "cholqr" refuses; "switch" switches to Householder QR from its last look at the
    # breakdown record (here the start: 40 steps < one look's interval).
    W, scales = _squashing_map()
    h0 = torch.zeros(1, 4, dtype=F64)
    with pytest.warns(RuntimeWarning, match="Householder"):
        res = lyapunov_spectrum(LinearMap(W), h0, steps=40, reorth="auto", generator=gen(40),
                                per_step_checks=False)
    assert res.reorth == "qr"
    _check_squashing_result(res, scales)
    res = lyapunov_spectrum(LinearMap(W), h0, steps=40, reorth="switch", generator=gen(40))
    assert res.reorth == "qr" and res.switched_at == 0
    _check_squashing_result(res, scales)
    with pytest.raises(FloatingPointError, match="reorth='qr'"):
        lyapunov_spectrum(LinearMap(W), h0, steps=40, reorth="cholqr", generator=gen(40),
                          per_step_checks=False)


class _SquashesLater(LinearMap):
    """A linear map that is the identity until step ``start`` and the squashing map after it."""

    def __init__(self, W, start):
        super().__init__(W)
        self.start = start

    def step(self, h, u):
        return h if u is None else h + u

    def tangent(self, h, u, h_next, Q):  # the step index travels in the drive's first entry
        return torch.matmul(self.W, Q) if bool(u[0, 0] >= self.start) else Q


@pytest.mark.parametrize("record", [False, True])
def test_switch_goes_to_householder_at_the_look_before_a_breakdown(record):
    # Identity for 300 steps (no breakdown), then W squashes one direction by 1e-12 per step.
    # Ground truth: the exponents sum to ln|det W| = sum(log s) times the share of the averaged
    # steps that apply W, which Householder QR resolves to 1e-4 (see _check_squashing_result);
    # a Cholesky factor kept through the breakdown would be off by ~10; "switch" must look at its
    # record at 256 (the last look before 300), rewind there and give Householder's numbers.
    from floss_utils.lyapunov.estimator import SWITCH_CHECK_EVERY

    W, scales = _squashing_map()
    total = 500
    drive = torch.zeros(total, 1, 4, dtype=F64)
    drive[:, 0, 0] = torch.arange(total, dtype=F64)  # only the tangent reads it (the state is not used)
    seen = []
    kw = dict(steps=total - 10, transient=10, record=record)
    auto = lyapunov_spectrum(_SquashesLater(W, 300), torch.zeros(1, 4, dtype=F64), drive, reorth="switch",
                             generator=gen(41), on_step=lambda done, tot: seen.append(done), **kw)
    lapack = lyapunov_spectrum(_SquashesLater(W, 300), torch.zeros(1, 4, dtype=F64), drive, reorth="qr",
                               generator=gen(41), **kw)
    assert auto.switched_at == (300 // SWITCH_CHECK_EVERY) * SWITCH_CHECK_EVERY and auto.reorth == "qr"
    assert auto.fallback_steps == 0
    expected = torch.log(scales).sum().item() * (total - 300) / (total - 10)
    assert abs(auto.exponents.sum().item() - expected) < 1e-4
    assert torch.allclose(auto.exponents, lapack.exponents, rtol=0, atol=1e-9)
    assert seen == list(range(1, total + 1))  # every step reported once, in order, despite the rewind
    if record:
        assert torch.equal(auto.times, lapack.times) and auto.history.shape == lapack.history.shape
        assert torch.allclose(auto.history, lapack.history, rtol=0, atol=1e-9)


def test_gradients_through_the_history_survive_a_switch():
    # A rotation (scaled by 1.1) until step 300, then [[1, 1], [0, 1e-9]], which breaks Cholesky
    # QR down: "switch" discards steps 256..299 of Cholesky QR (whose factors are broken after 300)
    # and redoes them with Householder QR. Gradients through the recorded estimates, the first one
    # included, must be finite and equal Householder's (the discarded steps must not stay in the graph).
    class Later(LinearMap):
        def __init__(self, W, W2, start):
            super().__init__(W)
            self.W2, self.start = W2, start

        def step(self, h, u):
            return h

        def tangent(self, h, u, h_next, Q):
            return torch.matmul(self.W if bool(u[0, 0] >= self.start) else self.W2, Q)

    total = 500
    drive = torch.zeros(total, 1, 2, dtype=F64)
    drive[:, 0, 0] = torch.arange(total, dtype=F64)
    grads = {}
    for reorth in ("switch", "qr"):
        W = torch.tensor([[[1.0, 1.0], [0.0, 1e-9]]], dtype=F64, requires_grad=True)
        W2 = torch.tensor([[[0.0, -1.1], [1.1, 0.0]]], dtype=F64, requires_grad=True)
        res = lyapunov_spectrum(Later(W, W2, 300), torch.zeros(1, 2, dtype=F64), drive, steps=total - 10,
                                transient=10, reorth=reorth, generator=gen(45), record=True)
        (res.history[0].sum() + res.history.sum()).backward()
        grads[reorth] = (W.grad, W2.grad, res.switched_at)
    assert grads["switch"][2] == 256
    for a, b in zip(grads["switch"][:2], grads["qr"][:2]):
        assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-6, atol=1e-9 * b.abs().max().item())


def test_switch_without_breakdown_stays_cholesky_and_equals_auto():
    J = gaussian_coupling(2, 20, 1.5, generator=gen(42))
    h0 = torch.randn(2, 20, dtype=F64, generator=gen(43))
    res = lyapunov_spectrum(TanhRNN(J), h0, steps=300, k=5, generator=gen(44), reorth="switch")
    auto = lyapunov_spectrum(TanhRNN(J), h0, steps=300, k=5, generator=gen(44))
    assert res.reorth == "cholqr" and res.switched_at is None and torch.equal(res.exponents, auto.exponents)


def test_running_breakdown_record_survives_a_later_nan():
    # a breakdown (positive margin) then a NaN margin and a clean step: the record still says
    # "broke down" (torch.maximum would have turned it into NaN, which reads as no breakdown)
    from floss_utils.lyapunov.estimator import _broke_down, _record_breakdown

    ok = torch.zeros(1, dtype=torch.int32)
    wm, wi = _record_breakdown(None, None, torch.tensor([[1.0, -1.0]], dtype=F64), ok)
    for m in (torch.tensor([[float("nan"), float("nan")]], dtype=F64), torch.tensor([[-1.0, -1.0]], dtype=F64)):
        wm, wi = _record_breakdown(wm, wi, m, ok)
    assert bool(_broke_down(wm, wi).all())
    _, wi = _record_breakdown(None, None, None, torch.tensor([2], dtype=torch.int32))
    _, wi = _record_breakdown(None, wi, None, ok)
    assert bool(wi.all())  # a failed factorization (info != 0) is remembered too


def test_breakdown_then_nan_is_reported_at_the_nan_step():
    # Cholesky breaks down at every step (the squashing map), then the drive poisons the state at
    # t = 30 and the tangent with it. On every path (CPU replay with per-step checks, the
    # accelerator path that recomputes with Householder QR, "switch"), the run must end in NonFiniteError
    # naming step 30, not in a result or a message about the breakdown.
    W, _ = _squashing_map()

    class Poisoned(LinearMap):
        def tangent(self, h, u, h_next, Q):  # the tangent sees the state: NaN there makes it NaN too
            return torch.matmul(self.W, Q) + 0 * h_next.sum(-1)[..., None, None]

    drive = torch.zeros(40, 1, 4, dtype=F64)
    drive[30] = float("nan")
    h0 = torch.zeros(1, 4, dtype=F64)
    with pytest.raises(NonFiniteError, match="t=30"):
        lyapunov_spectrum(Poisoned(W), h0, drive, steps=40, reorth="cholqr", generator=gen(40))
    with pytest.warns(RuntimeWarning, match="Householder"), pytest.raises(NonFiniteError, match="t=30"):
        lyapunov_spectrum(Poisoned(W), h0, drive, steps=40, reorth="auto", generator=gen(40), per_step_checks=False)
    with pytest.raises(NonFiniteError, match="t=30"):
        lyapunov_spectrum(Poisoned(W), h0, drive, steps=40, reorth="switch", generator=gen(40))


# ---------------------------------------------------------------- equivalences


def test_orthonormalization_interval_does_not_change_the_exponents():
    # QR of a product equals the product of the stepwise R factors (uniqueness of QR with a
    # positive diagonal), so ons = 5 and ons = 1 agree up to round-off: tolerance 1e-10.
    J = gaussian_coupling(2, 20, 1.5, generator=gen(41))
    h0 = torch.randn(2, 20, dtype=F64, generator=gen(42))
    q0 = random_orthonormal(2, 20, 6, generator=gen(43))
    kw = dict(steps=200, transient=20, k=6, q0=q0)
    a = lyapunov_spectrum(TanhRNN(J), h0, ons=1, **kw).exponents
    b = lyapunov_spectrum(TanhRNN(J), h0, ons=5, **kw).exponents
    c = lyapunov_spectrum(TanhRNN(J), h0, ons=7, **kw).exponents  # 7 does not divide 20 or 200
    assert (a - b).abs().max() < 1e-10 and (a - c).abs().max() < 1e-10


def test_rate_and_preactivation_forms_share_the_spectrum():
    # r_{t+1} = tanh(J r_t + u) and x_{t+1} = J tanh(x_t) + u are conjugate (x = J r + u): the
    # Jacobian products differ only by boundary factors, so the exponents differ by O(1/T).
    # With T = 4000, tolerance 0.01.
    J = gaussian_coupling(2, 30, 2.0, generator=gen(44))
    x0 = torch.randn(2, 30, dtype=F64, generator=gen(45))
    pre = lyapunov_spectrum(TanhRNN(J), x0, steps=4000, transient=100, k=5, generator=gen(46)).exponents
    rate = lyapunov_spectrum(TanhRNN(J, form="rate"), torch.tanh(x0), steps=4000, transient=100, k=5,
                             generator=gen(46)).exponents
    assert (pre - rate).abs().max() < 0.01


def test_generic_cell_via_jvp_matches_analytic_jacobian():
    # The Jacobian-vector-product path must reproduce the analytic tangent map to round-off.
    J = gaussian_coupling(3, 15, 1.8, generator=gen(47))
    bias = 0.1 * torch.randn(3, 15, dtype=F64, generator=gen(48))
    net = TanhRNN(J, bias=bias)
    cell = CellMap(net.step, 3, 15)
    h0 = torch.randn(3, 15, dtype=F64, generator=gen(49))
    q0 = random_orthonormal(3, 15, 7, generator=gen(50))
    drive = torch.randn(100, 3, 15, dtype=F64, generator=gen(51))
    a = lyapunov_spectrum(net, h0, drive, steps=100, k=7, q0=q0).exponents
    b = lyapunov_spectrum(cell, h0, drive, steps=100, k=7, q0=q0).exponents
    assert (a - b).abs().max() < 1e-12


def test_float32_agrees_with_float64():
    # float32 uses LAPACK QR ("auto"); over 500 steps of a g = 2 network the exponents agree with
    # float64 to ~1e-4 (u32 ~ 6e-8 per step, but chaotic trajectories decorrelate, so the
    # comparison is statistical: tolerance 0.02 from the finite-time fluctuations of lambda_1).
    J = gaussian_coupling(1, 50, 2.0, generator=gen(52))
    h0 = torch.randn(1, 50, dtype=F64, generator=gen(53))
    e64 = lyapunov_spectrum(TanhRNN(J), h0, steps=3000, transient=200, k=3, generator=gen(54)).exponents
    e32 = lyapunov_spectrum(TanhRNN(J.float()), h0.float(), steps=3000, transient=200, k=3,
                            generator=gen(54))
    assert e32.exponents.dtype == torch.float32 and e32.reorth == "qr"
    assert (e32.exponents.double() - e64).abs().max() < 0.02


def test_same_seed_same_numbers():
    def run():
        g = gen(55)
        J = gaussian_coupling(2, 20, 2.0, generator=g)
        return lyapunov_spectrum(TanhRNN(J), torch.randn(2, 20, dtype=F64, generator=g), steps=100,
                                 generator=g).exponents

    assert torch.equal(run(), run())


def test_history_records_running_estimate():
    J = gaussian_coupling(1, 10, 2.0, generator=gen(56))
    res = lyapunov_spectrum(TanhRNN(J), torch.randn(1, 10, dtype=F64, generator=gen(57)), steps=100,
                            transient=10, ons=2, record=True, generator=gen(58))
    assert res.history.shape == (50, 1, 10) and res.times.shape == (50,)
    assert res.times[-1].item() == 100
    assert torch.equal(res.history[-1], res.exponents)


@pytest.mark.parametrize("steps, transient, ons, every", [(100, 10, 2, 1), (101, 7, 3, 2), (5, 0, 7, 1), (64, 3, 1, 5)])
def test_history_holds_every_recorded_point_and_nothing_else(steps, transient, ons, every):
    # the buffer is sized up front: its length must be the number of recorded QR points, counted
    # here by hand (QR every ons-th step and at the last one; every `every`-th after the transient)
    total = transient + steps
    qr_after = [t for t in range(transient, total) if (t + 1) % ons == 0 or t == total - 1]
    kept = [t + 1 - transient for i, t in enumerate(qr_after, 1) if i % every == 0]
    J = gaussian_coupling(1, 6, 2.0, generator=gen(59))
    res = lyapunov_spectrum(TanhRNN(J), torch.randn(1, 6, dtype=F64, generator=gen(60)), steps=steps,
                            transient=transient, ons=ons, record=True, record_every=every, generator=gen(61))
    if not kept:
        assert res.history is None and res.times is None or res.times.numel() == 0
        return
    assert res.times.tolist() == kept and res.history.shape == (len(kept), 1, 6)
    assert torch.isfinite(res.history).all()
    if kept[-1] == steps:
        assert torch.equal(res.history[-1], res.exponents)


def test_continuous_time_exponents_are_per_tau():
    # The same flow with dt and dt/2 must give the same exponents per tau (up to O(dt) Euler
    # error): a direct check that time_step scales the estimate. Linear flow dh/dt = (-1 + a) h
    # has lambda = a - 1 per tau exactly in the limit; Euler gives ln(1 + dt(a-1))/dt.
    a = 0.7
    for dt in (0.1, 0.05):
        W = torch.full((1, 1, 1), a, dtype=F64)
        # J tanh(h) with tiny h is linear: use a LinearMap-equivalent through CellMap
        cell = CellMap(lambda h, u: h + dt * (-h + a * h), 1, 1, time_step=dt)
        res = lyapunov_spectrum(cell, torch.ones(1, 1, dtype=F64), steps=100)
        assert abs(res.exponents.item() - math.log(1 + dt * (a - 1)) / dt) < 1e-12
        assert abs(res.exponents.item() - (a - 1)) < dt


# ---------------------------------------------------------------- derived quantities


def test_kaplan_yorke_dimension_and_entropy_rate():
    lam = torch.tensor([[0.5, 0.1, -0.3, -1.0], [-0.1, -0.2, -0.3, -0.4], [0.3, 0.2, 0.1, 0.05]])
    # partial sums 0.5, 0.6, 0.3, -0.7 -> k* = 3, D = 3 + 0.3 / 1.0
    expected = torch.tensor([3.3, 0.0, 4.0])
    assert torch.allclose(kaplan_yorke_dimension(lam), expected, atol=1e-6)
    # order of the input must not matter
    assert torch.allclose(kaplan_yorke_dimension(lam.flip(-1)), expected, atol=1e-6)
    assert torch.allclose(entropy_rate(lam), torch.tensor([0.6, 0.0, 0.65]), atol=1e-6)


def test_kaplan_yorke_of_single_positive_exponent():
    # lambda = (0.2, -0.4): k* = 1, D = 1 + 0.2/0.4 = 1.5
    assert abs(kaplan_yorke_dimension(torch.tensor([0.2, -0.4])).item() - 1.5) < 1e-7


# ---------------------------------------------------------------- bad input


def test_k_larger_than_n_is_refused():
    J = gaussian_coupling(1, 5, 1.0, generator=gen(59))
    with pytest.raises(ValueError, match=r"k = 6 .* N = 5"):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(1, 5, dtype=F64), steps=10, k=6)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(steps=10.0), TypeError, "steps must be an int"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(steps=10, transient=-1), ValueError, "transient"),
    (dict(steps=10, reorth="svd"), ValueError, "reorth"),
    (dict(steps=10, k=True), TypeError, "k must be an int"),
])
def test_ill_typed_arguments_are_refused(kwargs, exc, match):
    J = gaussian_coupling(1, 5, 1.0, generator=gen(60))
    with pytest.raises(exc, match=match):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(1, 5, dtype=F64), **kwargs)


def test_shape_mismatches_are_refused():
    J = gaussian_coupling(2, 5, 1.0, generator=gen(61))
    with pytest.raises(ValueError, match="h0 must be"):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(1, 5, dtype=F64), steps=10)
    with pytest.raises(ValueError, match="drive has 5 steps"):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(2, 5, dtype=F64), torch.zeros(5, 2, 5, dtype=F64), steps=10)
    with pytest.raises(ValueError, match="shape"):
        TanhRNN(torch.zeros(2, 5, 4, dtype=F64))


def test_non_finite_state_names_the_system_and_step():
    # A drive that turns NaN at step 7 for system 1 only: the error names b=1 and t=7.
    J = gaussian_coupling(2, 5, 1.0, generator=gen(62))
    drive = torch.zeros(20, 2, 5, dtype=F64)
    drive[7, 1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"b=1 .* t=7"):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(2, 5, dtype=F64), drive, steps=20)
    with pytest.raises(NonFiniteError, match="h0"):
        lyapunov_spectrum(TanhRNN(J), torch.full((2, 5), float("inf"), dtype=F64), steps=20)


def test_huge_but_finite_states_are_not_mistaken_for_non_finite():
    # The hot loop detects NaN/inf through running sums of the states, which overflow for states
    # near the float64 maximum although every state is finite; the locating replay must then find
    # nothing and return the result. Ground truth: the identity map's exponents are 0; each
    # re-orthonormalization of an orthonormal basis gives R_ii = 1 to a few u, hence 1e-14.
    W = torch.eye(2, dtype=F64).unsqueeze(0)
    res = lyapunov_spectrum(LinearMap(W), torch.full((1, 2), 1e308, dtype=F64), steps=5, generator=gen(63))
    assert res.exponents.abs().max().item() < 1e-14


def test_non_finite_state_is_named_on_the_accelerator_path_too():
    # per_step_checks=False (the default on CUDA: no host sync in the loop) must locate the same
    # system and step as the CPU path, through the replay that follows the cheap detection.
    J = gaussian_coupling(2, 5, 1.0, generator=gen(62))
    drive = torch.zeros(20, 2, 5, dtype=F64)
    drive[7, 1, 0] = float("nan")
    # (the NaN also fails that step's Cholesky factorization: "auto" first says it falls back)
    with pytest.raises(NonFiniteError, match=r"b=1 .* t=7"), pytest.warns(RuntimeWarning, match="Householder"):
        lyapunov_spectrum(TanhRNN(J), torch.zeros(2, 5, dtype=F64), drive, steps=20, per_step_checks=False)
