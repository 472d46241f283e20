"""The spectrum experiments of floss_utils/lyapunov/random_networks.py against independent ground truths.

Each test states its tolerance and why. Float64 throughout. Ground truths: sample statistics of
the drive, the algebra of the coupling draw, ln|eigenvalues| of the networks' own J below the
transition, exact scaling identities, and a hand-computed ln|det J| for the sum rule.
"""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.lyapunov.maps import TanhRNN
from floss_utils.lyapunov.random_networks import (gaussian_product_spectra, random_tanh_networks,
                                                  sum_rule_terms, tanh_spectra, white_noise_drive)

from conftest import F64, gen

pytestmark = pytest.mark.usefixtures("one_thread")  # loops of tiny ops: a second thread only adds sync


# ---------------------------------------------------------------- white_noise_drive


def test_drive_is_a_deterministic_function_of_t():
    drive = white_noise_drive(3, 5, 0.7, seed=4)
    a, b, c = drive(5), drive(5), drive(6)
    assert a.shape == (3, 5) and a.dtype == F64
    assert torch.equal(a, b)
    assert not torch.isclose(a, c).any()
    # replaying out of order does not change anything (no hidden generator state)
    other = white_noise_drive(3, 5, 0.7, seed=4)
    other(100)
    assert torch.equal(other(5), a)
    assert not torch.equal(white_noise_drive(3, 5, 0.7, seed=5)(5), a)  # the seed matters


def test_drive_has_the_requested_std_per_system():
    # 2500 steps x 8 units = 2e4 samples per system: the sample std has a relative standard
    # error of 1/sqrt(2 * 2e4) = 0.5%, so 3% is 6 standard errors. The mean's standard error is
    # s/sqrt(2e4) = 0.007 s: tolerance 0.04 s. Lag-1 correlation across steps has standard error
    # 1/sqrt(2e4) = 0.007: tolerance 0.04 (white in time). A zero level gives exact zeros.
    std = torch.tensor([0.0, 0.25, 1.0, 3.0], dtype=F64)
    drive = white_noise_drive(4, 8, std, seed=11)
    x = torch.stack([drive(t) for t in range(2500)])  # (T, B, N)
    assert torch.equal(x[:, 0], torch.zeros_like(x[:, 0]))
    flat = x[:, 1:].permute(1, 0, 2).reshape(3, -1)
    rel = flat.std(dim=-1) / std[1:]
    assert ((rel - 1).abs() < 0.03).all(), rel
    assert (flat.mean(dim=-1).abs() < 0.04 * std[1:]).all()
    z = x[:, 1:] / std[1:, None]
    lag1 = (z[1:] * z[:-1]).mean() / (z * z).mean()
    assert abs(lag1) < 0.04
    # units and systems are independent draws, not copies of one another
    assert not torch.equal(z[:, 0], z[:, 1])
    assert not torch.equal(z[..., 0], z[..., 1])


def test_scalar_std_applies_to_every_system():
    # Same statistics as above with 1.2e4 samples per system: relative standard error 0.65%.
    drive = white_noise_drive(2, 6, 0.5, seed=1)
    x = torch.stack([drive(t) for t in range(2000)])
    rel = x.permute(1, 0, 2).reshape(2, -1).std(dim=-1) / 0.5
    assert ((rel - 1).abs() < 0.03).all(), rel


@pytest.mark.parametrize("std", [0.0, torch.zeros(3, dtype=F64)], ids=["scalar", "tensor"])
def test_zero_drive_is_none(std):
    assert white_noise_drive(3, 4, std, seed=0) is None


@pytest.mark.parametrize(
    "std", [-0.1, torch.tensor([0.5, -0.5, 1.0], dtype=F64)], ids=["scalar", "one-entry"]
)
def test_negative_std_is_refused(std):
    with pytest.raises(ValueError, match=">= 0"):
        white_noise_drive(3, 4, std, seed=0)


def test_wrong_length_std_is_refused():
    with pytest.raises(ValueError, match="2 entries for a batch of 3"):
        white_noise_drive(3, 4, torch.tensor([0.5, 1.0], dtype=F64), seed=0)


# ---------------------------------------------------------------- random_tanh_networks


def test_networks_are_gain_major_and_share_the_draw():
    # Gain-major: network g * S + s has gain gains[g] and seed s. The same standard-normal
    # draw is shared by a seed across gains, so J(g2) = (g2 / g1) J(g1); the only difference is
    # the rounding of one multiplication: relative tolerance 1e-14.
    gains, S, N = [0.5, 2.0, 3.0], 2, 5
    net, h0 = random_tanh_networks(N, gains, S, generator=gen(0))
    assert isinstance(net, TanhRNN)
    assert net.J.shape == (6, N, N) and h0.shape == (6, N)
    assert net.J.dtype == F64 and h0.dtype == F64
    J = net.J.reshape(3, S, N, N)
    H = h0.reshape(3, S, N)
    for g in range(1, 3):
        torch.testing.assert_close(J[g], J[0] * gains[g] / gains[0], rtol=1e-14, atol=0)
        assert torch.equal(H[g], H[0])
    assert not torch.equal(J[0, 0], J[0, 1])  # the seeds differ
    assert not torch.equal(H[0, 0], H[0, 1])


def test_network_couplings_have_variance_g2_over_n():
    # J_ij ~ N(0, g^2/N): with N = 150 and 2 seeds (45000 entries) the sample variance has a
    # relative standard error sqrt(2/45000) = 0.7%: tolerance 4%. h0 ~ N(0, 1) over 300 entries:
    # relative standard error 8%, tolerance 35%.
    g, N = 1.7, 150
    net, h0 = random_tanh_networks(N, [g], 2, generator=gen(1))
    var = net.J.var() * N / g**2
    assert abs(var - 1) < 0.04, var
    assert abs(net.J.mean()) < 4 * g / N / math.sqrt(2)  # 4 standard errors of the mean
    assert abs(h0.var() - 1) < 0.35


# ---------------------------------------------------------------- tanh_spectra


def test_tanh_spectra_shape_and_order():
    r = tanh_spectra(6, [0.5, 1.5, 3.0], steps=60, transient=10, k=3, n_seeds=2, seed=0)
    assert r.exponents.shape == (3, 2, 3)
    assert (r.exponents[..., :-1] >= r.exponents[..., 1:]).all()
    assert torch.isfinite(r.exponents).all()
    assert r.networks.J.shape == (6, 6, 6)
    full = tanh_spectra(5, 2.0, steps=40, transient=0, seed=1)
    assert full.exponents.shape == (1, 1, 5)  # k defaults to N, a scalar gain is one condition


def test_tanh_spectra_input_sweep_shares_the_networks():
    # An input sweep changes only s: all conditions of a seed run the same J.
    stds = [0.0, 0.5, 1.0]
    r = tanh_spectra(6, 2.0, input_std=stds, steps=60, transient=10, k=2, n_seeds=2, seed=0)
    assert r.exponents.shape == (3, 2, 2)
    J = r.networks.J.reshape(3, 2, 6, 6)
    assert torch.equal(J[1], J[0]) and torch.equal(J[2], J[0])
    assert not torch.equal(J[0, 0], J[0, 1])


def test_tanh_spectra_refuses_two_sweeps():
    with pytest.raises(ValueError, match="not both"):
        tanh_spectra(4, [1.0, 2.0], input_std=[0.1, 0.2], steps=10, transient=0)


def test_tanh_spectra_is_reproducible():
    kw = dict(input_std=0.5, steps=80, transient=10, k=3, n_seeds=2)
    a = tanh_spectra(6, [1.5, 2.5], seed=7, **kw).exponents
    b = tanh_spectra(6, [1.5, 2.5], seed=7, **kw).exponents
    c = tanh_spectra(6, [1.5, 2.5], seed=8, **kw).exponents
    assert torch.equal(a, b)
    assert not torch.isclose(a, c).any()


def test_tanh_spectra_saturated_full_spectrum_switches_to_householder():
    # Saturated full spectra (k = N) break Cholesky QR; tanh_spectra's default "switch" then rewinds to
    # its last look (every 128 steps) and runs Householder QR from there. This driven g = 2.5 network
    # first breaks down after the first look, so the run is 128 Cholesky steps, a rewind replaying
    # the drive, then Householder steps; its exponents must equal a Householder run's. Tolerance 1e-8:
    # the 128 Cholesky steps differ from Householder's by round-off only, while a rewind that skipped or
    # repeated steps would shift the 650-step averages by O(steps repeated x lambda / 650) >= 1e-3.
    kw = dict(input_std=0.5, steps=600, transient=50, n_seeds=2, seed=2)
    sw = tanh_spectra(30, [1.5, 2.5], **kw)
    qr = tanh_spectra(30, [1.5, 2.5], reorth="qr", **kw)
    assert sw.result.switched_at is not None and sw.result.switched_at > 0, \
        "precondition: Cholesky QR broke down after the first look, so the rewind is exercised"
    assert (sw.exponents - qr.exponents).abs().max() < 1e-8


def test_tanh_spectra_below_one_equal_log_eigenvalue_moduli():
    # g < 1, no input, zero bias: the state decays to 0 (checked: rho(J) < 1 for every drawn
    # network), where D_t = J, so lambda_i = ln|mu_i(J)| of the returned networks. After a
    # 300-step transient the remaining error is the C/T basis-alignment term with C = O(1):
    # a few 1e-4 at T = 5000 (observed max 4e-4): tolerance 2e-3.
    r = tanh_spectra(12, [0.4, 0.7], steps=5000, transient=300, n_seeds=2, seed=3)
    mu = torch.linalg.eigvals(r.networks.J).abs()
    assert (mu.max(dim=-1).values < 1).all(), "precondition: every network below the transition"
    truth = mu.log().sort(dim=-1, descending=True).values.reshape(2, 2, 12)
    assert (r.exponents - truth).abs().max() < 2e-3


# ---------------------------------------------------------------- gaussian_product_spectra


def test_gaussian_product_spectra_shape_order_and_sigma_scaling():
    # Shape and order, plus an exact identity: with the same seed the matrices for sigma = 2 are
    # exactly (a power of two) twice those for sigma = 1, so every exponent shifts by ln 2. Only
    # the rounding of the logs separates the two: tolerance 1e-12.
    one = gaussian_product_spectra(6, 1.0, steps=300, n_systems=3, seed=2)
    two = gaussian_product_spectra(6, 2.0, steps=300, n_systems=3, seed=2)
    assert one.shape == (3, 6)
    assert (one[:, :-1] >= one[:, 1:]).all()
    torch.testing.assert_close(two - one, torch.full_like(one, math.log(2.0)), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- sum rule


@pytest.mark.parametrize("s", [0.0, 0.5], ids=["no-input", "input"])
def test_sum_rule_sides_agree(s):
    # With k = N the product of the R diagonals is |det| of the product of the Jacobians, so the
    # two sides agree for any finite T up to round-off accumulated over 230 steps: relative
    # tolerance 1e-10 (observed ~1e-11).
    net, h0 = random_tanh_networks(8, [1.5, 3.0], 2, generator=gen(4))
    drive = white_noise_drive(4, 8, s, seed=9)
    lhs, rhs = sum_rule_terms(net, h0, drive, steps=200, transient=30)
    assert lhs.shape == rhs.shape == (4,)
    assert torch.isfinite(rhs).all()
    assert ((lhs - rhs).abs() <= 1e-10 * rhs.abs()).all(), (lhs, rhs)


def test_sum_rule_at_rest_is_log_abs_det_by_hand():
    # No input, zero bias, h0 = 0: the state stays exactly at 0, sech^2(0) = 1, so the right
    # side is ln|det J| exactly. J is triangular with diagonal (2, -0.5, 3, 0.25): ln|det J| =
    # ln 0.75 by hand. rhs only adds zeros to slogdet: tolerance 1e-14. The left side (the
    # exponents of the constant map J sum to ln|det J|) is exact up to round-off: 1e-10.
    diag = torch.tensor([2.0, -0.5, 3.0, 0.25], dtype=F64)
    upper = torch.triu(torch.randn(4, 4, dtype=F64, generator=gen(5)), diagonal=1)
    J = (torch.diag(diag) + upper)[None]
    lhs, rhs = sum_rule_terms(TanhRNN(J), torch.zeros(1, 4, dtype=F64), None, steps=50, transient=5)
    assert abs(rhs.item() - math.log(0.75)) < 1e-14
    assert abs(lhs.item() - math.log(0.75)) < 1e-10


def test_sum_rule_at_a_fixed_point_by_hand():
    # J = c I with bias b = x* - c tanh(x*): x* is a fixed point (up to one rounding, and it is
    # stable since c sech^2 < 1), so rhs = N ln c + sum_i ln(1 / cosh^2 x*_i), evaluated here
    # with cosh instead of the function's log1p(-tanh^2). Both formulas are accurate to ~1e-15
    # per unit at |x*| <= 1.5: tolerance 1e-12.
    c = 0.8
    x_star = torch.tensor([[0.3, -1.0, 1.5]], dtype=F64)
    bias = x_star - c * torch.tanh(x_star)
    net = TanhRNN(c * torch.eye(3, dtype=F64)[None], bias=bias)
    lhs, rhs = sum_rule_terms(net, x_star.clone(), None, steps=40, transient=0)
    truth = 3 * math.log(c) - 2 * torch.log(torch.cosh(x_star)).sum().item()
    assert abs(rhs.item() - truth) < 1e-12
    assert abs(lhs.item() - truth) < 1e-10
