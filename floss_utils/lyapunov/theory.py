"""Closed forms and large-N theory the Lyapunov estimates are checked against (Part I).

* :func:`mean_field_lyapunov` - largest exponent of ``h_{t+1} = J tanh(h_t) + xi_t`` with
  ``J_ij ~ N(0, g^2/N)`` and white input of variance ``s^2`` (Molgedey, Schuchhardt & Schuster
  1992), through the self-consistent variance ``q``.
* :func:`newman_spectrum` - the exact spectrum of products of i.i.d. Gaussian matrices
  (Newman 1986) and its large-N limit.

Expectations over a standard normal ``z`` use adaptive quadrature on ``|z| <= 12`` (the tail
beyond carries less than 1e-32 of the mass). Gauss-Hermite quadrature is *not* used: at large
``q`` the integrand ``sech^4(sqrt(q) z)`` is narrower than the node spacing.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.integrate import quad
from scipy.special import digamma

__all__ = [
    "gaussian_expectation",
    "mean_field_variance",
    "mean_field_lyapunov",
    "newman_spectrum",
    "newman_spectrum_large_n",
]


def gaussian_expectation(f: Callable[[float], float], variance: float) -> float:
    """``E[f(sqrt(variance) z)]`` for ``z ~ N(0, 1)`` (adaptive quadrature, rel. error ~1e-12)."""
    if variance < 0:
        raise ValueError(f"variance must be >= 0, got {variance}")
    sd = math.sqrt(variance)
    density = 1.0 / math.sqrt(2.0 * math.pi)

    def integrand(z: float) -> float:
        return f(sd * z) * math.exp(-0.5 * z * z) * density

    value, _ = quad(integrand, -12.0, 12.0, points=[0.0], limit=400, epsabs=1e-15, epsrel=1e-12)
    return float(value)


def _sech(x: float) -> float:
    """Overflow-free ``1/cosh(x)``."""
    e = math.exp(-abs(x))
    return 2.0 * e / (1.0 + e * e)


def mean_field_variance(g: float, s: float = 0.0, *, tol: float = 1e-13, max_iter: int = 100_000) -> float:
    """Self-consistent pre-activation variance ``q = g^2 E[tanh^2(sqrt(q) z)] + s^2``.

    Args:
        g: coupling gain (``J_ij ~ N(0, g^2/N)``), > 0.
        s: standard deviation of the white input, >= 0.
    Returns:
        The stable fixed point ``q*`` (0 when ``g <= 1`` and ``s = 0``).
    """
    if g <= 0 or s < 0:
        raise ValueError(f"need g > 0 and s >= 0, got g={g}, s={s}")
    if s == 0 and g <= 1:
        return 0.0
    q = max(g * g, s * s, 1.0)
    for _ in range(max_iter):
        q_new = g * g * gaussian_expectation(lambda x: math.tanh(x) ** 2, q) + s * s
        if abs(q_new - q) <= tol * max(1.0, q):
            return q_new
        q = q_new
    raise RuntimeError(f"mean-field variance did not converge for g={g}, s={s}")


def mean_field_lyapunov(g: float | ArrayLike, s: float = 0.0) -> float | np.ndarray:
    """Mean-field largest Lyapunov exponent (per step) ``1/2 ln(g^2 E[sech^4(sqrt(q*) z)])``.

    Vectorized over ``g``. Without input and ``g < 1`` it equals ``ln g``; chaos (``lambda > 0``)
    sets in at ``g = 1``; input noise ``s > 0`` shifts the transition to larger ``g``.
    Only the largest exponent is predicted; the rest of the spectrum is not.
    """
    gs = np.atleast_1d(np.asarray(g, dtype=float))
    out = np.empty_like(gs)
    for i, gi in enumerate(gs):
        q = mean_field_variance(float(gi), s)
        sech4 = gaussian_expectation(lambda x: _sech(x) ** 4, q)
        out[i] = 0.5 * math.log(gi * gi * sech4)
    return float(out[0]) if np.ndim(g) == 0 else out


def newman_spectrum(n: int, sigma: float = 1.0) -> np.ndarray:
    """Exact Lyapunov spectrum of products of i.i.d. ``N x N`` Gaussian matrices, entries
    ``N(0, sigma^2/N)`` (Newman 1986): ``lambda_i = ln sigma + 1/2 [ln(2/N) + psi((N-i+1)/2)]``.

    Returns an array of shape (N,), descending, per step.
    """
    if n < 1 or sigma <= 0:
        raise ValueError(f"need n >= 1 and sigma > 0, got n={n}, sigma={sigma}")
    i = np.arange(1, n + 1)
    return math.log(sigma) + 0.5 * (math.log(2.0 / n) + digamma((n - i + 1) / 2.0))


def newman_spectrum_large_n(x: ArrayLike, sigma: float = 1.0) -> np.ndarray:
    """Large-N limit of :func:`newman_spectrum` as a function of ``x = i/N`` in (0, 1):
    ``ln sigma + 1/2 ln(1 - x)``."""
    x = np.asarray(x, dtype=float)
    return math.log(sigma) + 0.5 * np.log1p(-x)
