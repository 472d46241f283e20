"""Input generators of Part II (floss_utils.curse_of_memory.inputs) against their defining autocorrelations.

Empirical autocorrelations are means over independent sequences; each test compares them with
the target within 5 standard errors (computed from the same samples), plus shape, seeding and
argument checks.
"""

from __future__ import annotations

import pytest
import torch

from floss_utils.curse_of_memory.inputs import (FITTED_AR1_COEFFICIENT, ar1_inputs,
                                                fitted_autocorrelation,
                                                fitted_autocorrelation_inputs, iid_inputs,
                                                structured_embedding_inputs)

from conftest import F64, gen


def lagged_products(x: torch.Tensor, t0: int, lags: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and s.e. over the batch (dim 0) of x[:, t0] x[:, t0 + lag] for each lag; x (n, T, ...)"""
    prods = torch.stack([x[:, t0] * x[:, t0 + d] for d in lags])  # (lags, n, ...)
    n = x.shape[0]
    return prods.mean(1), prods.std(1) / n**0.5


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_ar1_autocorrelation_is_rho_to_the_lag(rho):
    n = 40_000
    x = ar1_inputs((n,), 60, rho, generator=gen(0))
    lags = [0, 1, 3, 10, 30]
    for t0 in (0, 25):  # stationary from the very first step
        mean, sem = lagged_products(x, t0, lags)
        target = torch.tensor([rho**d for d in lags], dtype=F64)
        assert ((mean - target).abs() < 5 * sem + 1e-12).all(), (t0, mean, target)


def test_ar1_batched_rhos_and_continuation():
    rho = torch.tensor([0.0, 0.8], dtype=F64)[:, None]
    x = ar1_inputs((2, 30_000), 20, rho, generator=gen(1))
    assert x.shape == (2, 30_000, 20)
    # continue the sequence: the lag-1 correlation across the chunk boundary is rho
    y = ar1_inputs((2, 30_000), 5, rho, x_prev=x[..., -1], generator=gen(2))
    cross = (x[..., -1] * y[..., 0])
    mean, sem = cross.mean(-1), cross.std(-1) / 30_000**0.5
    assert ((mean - rho[:, 0]).abs() < 5 * sem).all()
    assert ((y**2).mean(1) - 1).abs().max() < 0.05  # unit variance kept (s.e. ~ 0.008)


def test_ar1_is_seeded_and_device_agnostic():
    a = ar1_inputs((3, 4), 50, 0.9, generator=gen(5))
    b = ar1_inputs((3, 4), 50, 0.9, generator=gen(5))
    assert torch.equal(a, b)
    c = ar1_inputs((3, 4), 50, 0.9, generator=gen(5), dtype=torch.float32)
    assert c.dtype == torch.float32 and c.shape == a.shape
    if torch.cuda.is_available():  # the CPU generator gives the same numbers on the GPU
        d = ar1_inputs((3, 4), 50, 0.9, generator=gen(5), device="cuda")
        assert torch.allclose(d.cpu(), a, atol=1e-10)


def test_ar1_bad_arguments():
    with pytest.raises(ValueError, match="rho"):
        ar1_inputs((3,), 10, 1.5)
    with pytest.raises(ValueError, match="steps"):
        ar1_inputs((3,), 0, 0.5)
    with pytest.raises(ValueError, match="broadcast"):
        ar1_inputs((3, 4), 10, torch.tensor([0.1, 0.2]))


def test_iid_inputs_mean_and_std():
    x = iid_inputs((200_000,), mu=0.7, sigma=0.5, generator=gen(3))
    assert float(x.mean()) == pytest.approx(0.7, abs=5 * 0.5 / 200_000**0.5)
    assert float(x.std()) == pytest.approx(0.5, rel=0.01)
    with pytest.raises(ValueError, match="sigma"):
        iid_inputs((3,), sigma=-1.0)


def test_fitted_autocorrelation_generator_matches_r_of_delta():
    # R(0) = 0.332 + 0.0431 = 0.3751; R(Delta > 0) = 0.0431 * 0.99700525^Delta, per coordinate
    x = fitted_autocorrelation_inputs(4000, 400, 8, generator=gen(4), dtype=F64)
    assert x.shape == (4000, 400, 8) and x.dtype == F64
    lags = [0, 1, 10, 100, 300]
    for t0 in (0, 50):
        mean, sem = lagged_products(x, t0, lags)  # (lags, channels)
        target = fitted_autocorrelation(lags)[:, None].expand_as(mean)
        assert ((mean - target).abs() < 5 * sem).all(), (mean, target)
    # and the coordinates are independent: cross-channel product ~ 0
    cross = x[:, 10, 0] * x[:, 10, 1]
    assert abs(float(cross.mean())) < 5 * float(cross.std()) / 4000**0.5
    assert float(fitted_autocorrelation([0])[0]) == pytest.approx(0.3751)
    assert float(fitted_autocorrelation([2])[0]) == pytest.approx(0.0431 * FITTED_AR1_COEFFICIENT**2)
    assert fitted_autocorrelation_inputs(2, 5, 3).dtype == torch.float32  # default dtype for deep nets


def test_structured_inputs_have_their_mean_cross_covariance_and_zo_autocorrelation():
    # Ground truth: by construction E[x_t] = mu and E[(x_t - mu)(x_{t+D} - mu)^T] = R(D)((1 - s) I + s U U^T)
    # with R ZO's fitted autocorrelation; every product is a mean over independent sequences, within 5 s.e.
    n, c = 6000, 6
    out = structured_embedding_inputs(n, 150, c, shared_fraction=0.6, rank=2, generator=gen(7), dtype=F64)
    x = out.x
    assert x.shape == (n, 150, c) and out.mixing.shape == (c, 2)
    assert torch.allclose(torch.linalg.vector_norm(out.mixing, dim=1), torch.ones(c, dtype=F64))
    m, se = x[:, 20].mean(0), x[:, 20].std(0) / n**0.5
    assert ((m - out.mean).abs() < 5 * se).all()
    xc = x - out.mean
    for lag in (0, 10, 100):
        prods = xc[:, 30, :, None] * xc[:, 30 + lag, None, :]  # (n, c, c)
        target = out.covariance(lag)
        assert ((prods.mean(0) - target).abs() < 5 * prods.std(0) / n**0.5).all(), lag
    assert float(out.covariance(0)[0, 0]) == pytest.approx(0.3751)  # each coordinate keeps R(0)
    assert float(out.covariance(0)[0, 1]).__abs__() > 0.01  # and coordinates are correlated
    # limits: s = 0, mean 0 is the fitted generator's law (independent coordinates)
    plain = structured_embedding_inputs(4, 5, 3, shared_fraction=0.0, mean_square=0.0, generator=gen(1))
    assert torch.equal(plain.mean, torch.zeros(3)) and torch.allclose(plain.covariance(0), 0.3751 * torch.eye(3, dtype=F64))
    a = structured_embedding_inputs(4, 5, 3, generator=gen(3)).x
    assert torch.equal(a, structured_embedding_inputs(4, 5, 3, generator=gen(3)).x)
    for bad in (dict(rank=0), dict(shared_fraction=1.5), dict(mean_square=-1.0)):
        with pytest.raises(ValueError):
            structured_embedding_inputs(4, 5, 3, **bad)
