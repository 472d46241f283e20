"""The chunked parallel scan and the Monte Carlo simulator (floss_utils.curse_of_memory.signal_propagation).

Ground truths: the step-by-step recurrence (round-off tolerances), the sensitivity by autograd
through the unrolled recurrence, and the explicit sums h_t = sum_k a^k u_{t-k}. The simulated
moments against the closed forms are in test_theory_part2.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.curse_of_memory.scans import linear_scan, linear_scan_loop, lower_toeplitz
from floss_utils.curse_of_memory.students import causal_convolution
from floss_utils.curse_of_memory.signal_propagation import simulate_moments

from conftest import F64, gen


@pytest.mark.parametrize("chunk", [1, 5, 16, 64, 1000])
def test_scan_matches_loop_real_and_complex(chunk):
    # The scan and the loop perform the same sums in a different order: differences are
    # round-off, ~T eps |h| (1e-12 relative to the largest state).
    u = torch.randn(3, 4, 137, dtype=F64, generator=gen(0))
    a = torch.tensor([0.0, 0.5, -0.9])[:, None].to(F64)
    h0 = torch.randn(3, 4, dtype=F64, generator=gen(1))
    assert torch.allclose(linear_scan(a, u, h0, chunk=chunk), linear_scan_loop(a, u, h0), atol=1e-12)
    ac = torch.polar(torch.tensor([0.99, 0.3], dtype=F64), torch.tensor([0.2, 2.5], dtype=F64))[:, None]
    out = linear_scan(ac, u[:2], chunk=chunk)
    assert out.dtype == torch.complex128
    assert torch.allclose(out, linear_scan_loop(ac, u[:2]), atol=1e-12)


def test_scan_broadcasting_and_explicit_sum():
    # a per leading group, u shared across groups: h_t = sum_{k<=t} a^k u_{t-k}
    a = torch.tensor([0.2, 0.7, 0.95], dtype=F64)[:, None, None]  # (3, 1, 1)
    u = torch.randn(1, 2, 5, 40, dtype=F64, generator=gen(2))  # (1, 2, 5, T)
    h = linear_scan(a, u)
    assert h.shape == (3, 2, 5, 40)
    t = 39
    k = torch.arange(t + 1, dtype=F64)
    explicit = (a[..., None] ** k * u[..., t - k.long()]).sum(-1)
    assert torch.allclose(h[..., t], explicit[..., 0] if explicit.dim() > 3 else explicit, atol=1e-12)
    # scalar a, batch of members
    h2 = linear_scan(torch.tensor(0.5, dtype=F64), u[0])
    assert torch.allclose(h2, linear_scan_loop(torch.tensor(0.5, dtype=F64), u[0]), atol=1e-12)


def test_lower_toeplitz_entries_and_the_causal_convolution_it_computes():
    # entries by definition: out[t, s] = column[t - s] for t >= s, else 0 (real and complex, batched)
    col = torch.randn(2, 3, 7, dtype=F64, generator=gen(4))
    L = lower_toeplitz(col)
    assert L.shape == (2, 3, 7, 7)
    for t in range(7):
        for s_ in range(7):
            expect = col[..., t - s_] if t >= s_ else torch.zeros_like(col[..., 0])
            assert torch.equal(L[..., t, s_], expect)
    colc = torch.complex(col, torch.randn(2, 3, 7, dtype=F64, generator=gen(5)))
    assert torch.equal(lower_toeplitz(colc)[..., 4, 1], colc[..., 3]) and lower_toeplitz(colc)[..., 1, 4].abs().max() == 0
    one = torch.randn(4, 1, dtype=F64, generator=gen(8))  # T = 1: the 1 x 1 matrix of the entry itself
    assert torch.equal(lower_toeplitz(one), one.unsqueeze(-1))
    # against an independent computation: the FFT causal convolution y_t = sum_k column_k x_{t-k}
    x = torch.randn(2, 3, 7, dtype=F64, generator=gen(6))
    assert torch.allclose((L @ x.unsqueeze(-1))[..., 0], causal_convolution(x, col), atol=1e-12)
    # gradient: d sum(w * L) / d column_k = sum of w over the k-th subdiagonal
    colg = col.clone().requires_grad_(True)
    w = torch.randn(2, 3, 7, 7, dtype=F64, generator=gen(7))
    (lower_toeplitz(colg) * w).sum().backward()
    expect = torch.stack([torch.diagonal(w, offset=-k, dim1=-2, dim2=-1).sum(-1) for k in range(7)], -1)
    assert torch.allclose(colg.grad, expect, atol=1e-12)


def test_scan_bad_arguments():
    with pytest.raises(ValueError, match="chunk"):
        linear_scan(torch.tensor(0.5), torch.zeros(3, 10), chunk=0)


def test_sensitivity_recursion_matches_autograd():
    # simulate_moments computes d_t = d h_t / d lambda by the forward recursion; check one
    # trajectory against autograd through the unrolled loop on the same input (round-off).
    lam = torch.tensor(0.93, dtype=F64, requires_grad=True)
    x = torch.randn(300, dtype=F64, generator=gen(3))
    h = torch.zeros((), dtype=F64)
    for t in range(300):
        h = lam * h + x[t]
    (dh,) = torch.autograd.grad(h, lam)
    hs = linear_scan(lam.detach(), x)
    d = linear_scan(lam.detach(), torch.cat([torch.zeros(1, dtype=F64), hs[:-1]]))
    assert float(d[-1]) == pytest.approx(float(dh), rel=1e-10)


def test_simulate_moments_is_seeded_and_checks_arguments():
    lam, rho = torch.tensor([0.5, 0.9], dtype=F64), torch.tensor([0.0, 0.5], dtype=F64)
    a = simulate_moments(lam, rho, n_samples=50, burn_in=100, window=10, generator=gen(4))
    b = simulate_moments(lam, rho, n_samples=50, burn_in=100, window=10, generator=gen(4))
    assert torch.equal(a.mean["h2"], b.mean["h2"]) and a.mean["dlam2"].shape == (2, 2)
    # the scan's chunk only changes how the same sums are split (round-off)
    c = simulate_moments(lam, rho, n_samples=50, burn_in=100, window=10, generator=gen(4), chunk=3)
    assert torch.allclose(a.mean["dlam2"], c.mean["dlam2"], rtol=1e-10)
    with pytest.raises(ValueError, match="lam"):
        simulate_moments(torch.tensor([1.0]), rho, n_samples=10, burn_in=1, generator=gen(0))
    with pytest.raises(ValueError, match="n_samples"):
        simulate_moments(lam, rho, n_samples=1, burn_in=1, generator=gen(0))


@pytest.mark.parametrize("max_bytes", [1, 2 * 10 * 64 * 8 * 3 * 40])
def test_moments_do_not_depend_on_the_memory_budget(max_bytes, monkeypatch):
    # streaming over lambda values and sample groups changes how the work is split, never the
    # numbers (bit for bit): a budget of 1 byte scans one lambda at a time, the second two
    import floss_utils.curse_of_memory.signal_propagation as sp

    monkeypatch.setattr(sp, "SAMPLE_GROUP", 16)  # 40 samples: groups of 16, 16 and 8
    lam = torch.tensor([0.5, 0.9, 0.99], dtype=F64)
    rho = torch.tensor([0.0, 0.9, 0.99], dtype=F64)
    kw = dict(n_samples=40, burn_in=150, window=50, block=64)
    whole = simulate_moments(lam, rho, generator=gen(3), max_bytes=1 << 40, **kw)
    parts = simulate_moments(lam, rho, generator=gen(3), max_bytes=max_bytes, **kw)
    for name in whole.mean:
        assert torch.equal(whole.mean[name], parts.mean[name]), name
        assert torch.equal(whole.sem[name], parts.sem[name]), name


def test_simulated_normalized_exp_parametrized_unit_matches_its_closed_form():
    # the normalized unit driven by gamma x, and the forward-mode recursion of d_nu h for
    # lambda = exp(-exp(nu)), against ZO's closed forms (theory.normalized_second_moment and
    # theory.reparametrized_sensitivity): every point within 5 standard errors
    from floss_utils.curse_of_memory import theory as th

    lam, rho = torch.tensor([0.5, 0.9, 0.97], dtype=F64), torch.tensor([0.0, 0.9], dtype=F64)
    mc = simulate_moments(lam, rho, n_samples=600, burn_in=1200, window=100, normalize=True,
                          exp_parametrized=True, generator=gen(11))
    for key, closed in [("h2", th.normalized_second_moment), ("dnu2", th.reparametrized_sensitivity)]:
        z = (mc.mean[key] - closed(lam[:, None], rho)).abs() / mc.sem[key]
        assert float(z.max()) < 5, (key, z)
    # the recursion is the chain rule: d_nu h = (lambda ln lambda) d_lambda h, sample by sample
    chain2 = (lam * torch.log(lam))[:, None] ** 2
    assert torch.allclose(mc.mean["dnu2"], chain2 * mc.mean["dlam2"], rtol=1e-9)
    with pytest.raises(ValueError, match="exp_parametrized"):
        simulate_moments(torch.tensor([0.0, 0.5], dtype=F64), rho, n_samples=4, burn_in=1, exp_parametrized=True,
                         generator=gen(0))
