"""Closed forms and large-N theory that the numerical estimates are checked against.

Part I (Lyapunov spectra):

* :func:`mean_field_lyapunov` - largest exponent of ``h_{t+1} = J tanh(h_t) + xi_t`` with
  ``J_ij ~ N(0, g^2/N)`` and white input of variance ``s^2`` (Molgedey, Schuchhardt & Schuster
  1992), through the self-consistent variance ``q``.
* :func:`newman_spectrum` - the exact spectrum of products of i.i.d. Gaussian matrices
  (Newman 1986) and its large-N limit.

Part II (the curse of memory, Zucchet & Orvieto 2024), at the end of this module: stationary
moments of one linear recurrent unit driven by AR(1) input (real and complex, normalized and
reparametrized), the cross moment ``f`` and its mixed derivative ``S`` (by autodiff), and the
1-D teacher-student loss with its Hessians under each parametrization.

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
import torch
from torch import Tensor
from torch.func import jvp

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


# ============================================================================================
# Part II - The curse of memory (Zucchet & Orvieto 2024): one linear recurrent unit
# ============================================================================================
#
# ``h_{t+1} = lambda h_t + x_{t+1}`` driven by a wide-sense stationary input with
# autocorrelation ``R_x(Delta) = rho^|Delta|`` (unit variance), in the stationary limit
# t -> infinity. Everything here is torch, broadcasts over its arguments, and accepts complex
# ``lambda`` where the docstring says so. The mixed derivative ``S = d^2 f / da db`` of the cross
# moment ``f`` is obtained by nested forward-mode automatic differentiation (exact for the
# holomorphic rational function ``f``), never from a hand-expanded formula.

__all__ += [
    "cross_moment",
    "cross_moment_mixed_derivative",
    "hidden_second_moment",
    "sensitivity_second_moment",
    "complex_moments",
    "normalized_second_moment",
    "reparametrized_sensitivity",
    "teacher_student_loss",
    "teacher_student_hessian_at_optimum",
    "parametrization_hessian_closed_form",
    "MAGNITUDE_PARAMETRIZATIONS",
    "ANGLE_PARAMETRIZATIONS",
]

#: Magnitude parametrizations ``nu = g(omega)`` of the recurrence (Fig. 6 of ZO).
MAGNITUDE_PARAMETRIZATIONS = ("polar", "exp", "tanh")
#: Angle parametrizations ``theta = g(omega)`` (Fig. 6 and 7 of ZO).
ANGLE_PARAMETRIZATIONS = ("raw", "exp", "opt")


def _tensor(x: float | complex | Tensor | ArrayLike, like: Tensor | None = None) -> Tensor:
    """``x`` as a tensor (float64 / complex128 unless it already is a tensor)."""
    if isinstance(x, Tensor):
        return x
    t = torch.as_tensor(np.asarray(x))
    if t.is_floating_point():
        t = t.to(torch.float64)
    elif t.is_complex():
        t = t.to(torch.complex128)
    else:
        t = t.to(torch.float64)
    if like is not None:
        t = t.to(like.device)
    return t


def _check_rho(rho: Tensor) -> None:
    r = rho.real if rho.is_complex() else rho
    if bool(((r < 0) | (r > 1)).any()):
        raise ValueError(f"rho must lie in [0, 1], got {rho}")


def _check_stable(lam: Tensor, name: str = "lam") -> None:
    if bool((lam.abs() >= 1).any()):
        raise ValueError(f"{name} must satisfy |{name}| < 1 (stable recurrence), got {lam}")


def cross_moment(a: Tensor | complex, b: Tensor | complex, rho: Tensor | float) -> Tensor:
    """``f(a, b, rho) = sum_{k,l} a^k b^l rho^|k-l| = (1 - rho^2 ab) / ((1 - ab)(1 - rho a)(1 - rho b))``.

    The stationary cross moment ``E[h(a) h(b)]`` of two units ``h_{t+1} = a h_t + x_{t+1}`` and
    ``h_{t+1} = b h_t + x_{t+1}`` driven by the same unit-variance input with ``R_x = rho^|Delta|``.
    Holomorphic in ``a`` and ``b`` (``|a|, |b| < 1``); broadcasts over all arguments.
    """
    a, b, rho = _tensor(a), _tensor(b), _tensor(rho)
    return (1 - rho**2 * a * b) / ((1 - a * b) * (1 - rho * a) * (1 - rho * b))


def cross_moment_mixed_derivative(a: Tensor | complex, b: Tensor | complex, rho: Tensor | float) -> Tensor:
    """``S(a, b, rho) = d^2 f / da db`` by nested forward-mode autodiff of :func:`cross_moment`.

    ``S(lambda, lambda, rho) = E[(d_lambda h)^2]`` for real ``lambda``; for complex
    ``lambda``, ``S(lambda, conj(lambda), rho) = E|d_lambda h|^2``. Works for complex ``a, b``
    (``f`` is holomorphic, and torch's forward mode propagates holomorphic derivatives exactly).
    Broadcasts; returns a tensor of the broadcast shape.
    """
    a, b, rho = _tensor(a), _tensor(b), _tensor(rho)
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), rho.dtype)
    shape = torch.broadcast_shapes(a.shape, b.shape, rho.shape)
    a, b, rho = (t.to(dtype).expand(shape).clone() for t in (a, b, rho))
    ones = torch.ones(shape, dtype=dtype, device=a.device)

    def d_da(b_: Tensor) -> Tensor:
        return jvp(lambda a_: cross_moment(a_, b_, rho), (a,), (ones,))[1]

    return jvp(d_da, (b,), (ones,))[1]


def hidden_second_moment(lam: Tensor | float, rho: Tensor | float) -> Tensor:
    """``E[h^2] = (1 + rho lambda) / ((1 - lambda rho)(1 - lambda^2))`` for real ``|lambda| < 1``.

    rho = 0: ``1/(1 - lambda^2)``; rho = 1: ``(1 - lambda)^-2``.
    """
    lam, rho = _tensor(lam), _tensor(rho)
    _check_stable(lam), _check_rho(rho)
    return (1 + rho * lam) / ((1 - lam * rho) * (1 - lam**2))


def sensitivity_second_moment(lam: Tensor | float, rho: Tensor | float) -> Tensor:
    """``E[(d_lambda h)^2] = ((1+l^2)(1-l^2 rho^2) + 2(1-l^2) l rho) / ((1-l^2)^3 (1-l rho)^2)``.

    Real ``|lambda| < 1``. rho = 0: ``(1+l^2)/(1-l^2)^3``; rho = 1: ``(1-l)^-4``. Equals
    ``S(lambda, lambda, rho)`` (a test checks the two against each other and Monte Carlo).
    """
    lam, rho = _tensor(lam), _tensor(rho)
    _check_stable(lam), _check_rho(rho)
    l2 = lam**2
    return ((1 + l2) * (1 - l2 * rho**2) + 2 * (1 - l2) * lam * rho) / ((1 - l2) ** 3 * (1 - lam * rho) ** 2)


def complex_moments(nu: Tensor | float, theta: Tensor | float, rho: Tensor | float) -> dict[str, Tensor]:
    """Stationary moments of a complex unit ``lambda = nu e^{i theta}`` driven by a real input.

    Returns ``{"h2": E|h|^2 = f(l, conj l), "dlam2": E|d_lambda h|^2 = S(l, conj l),
    "dtheta2": E|d_theta h|^2 = nu^2 S(l, conj l)}`` (real tensors of the broadcast shape).
    """
    nu, theta, rho = _tensor(nu), _tensor(theta), _tensor(rho)
    _check_stable(nu, "nu"), _check_rho(rho)
    lam = torch.polar(nu.to(torch.float64), theta.to(torch.float64))
    rho_c = rho.to(torch.complex128)
    h2 = cross_moment(lam, lam.conj(), rho_c).real
    s = cross_moment_mixed_derivative(lam, lam.conj(), rho_c).real
    return {"h2": h2, "dlam2": s, "dtheta2": nu**2 * s}


def normalized_second_moment(lam: Tensor | float, rho: Tensor | float) -> Tensor:
    """``E[(gamma h)^2] = (1 + lambda rho)/(1 - lambda rho)`` with ``gamma = sqrt(1 - lambda^2)``:
    the input normalization keeps the variance at 1 for white noise only."""
    lam, rho = _tensor(lam), _tensor(rho)
    _check_stable(lam), _check_rho(rho)
    return (1 + lam * rho) / (1 - lam * rho)


def reparametrized_sensitivity(lam: Tensor | float, rho: Tensor | float) -> Tensor:
    """``gamma^2 E[(d_nu h)^2]`` for ``lambda = exp(-exp(nu))`` with ``gamma = sqrt(1-lambda^2)``
    held constant when differentiating: ``(lambda ln lambda)^2 (1 - lambda^2) S(lambda, lambda, rho)``.

    Limits as lambda -> 1: 1/2 for rho = 0, a rho-dependent constant for rho < 1, ``~2/(1-lambda)``
    for rho = 1. Real ``0 < lambda < 1``.
    """
    lam, rho = _tensor(lam), _tensor(rho)
    _check_stable(lam), _check_rho(rho)
    if bool((lam <= 0).any()):
        raise ValueError(f"lam must be in (0, 1) for lambda = exp(-exp(nu)), got {lam}")
    dlam_dnu = lam * torch.log(lam)
    return dlam_dnu**2 * (1 - lam**2) * cross_moment_mixed_derivative(lam, lam, rho)


def teacher_student_loss(
    lam: Tensor | complex,
    lam_star: Tensor | complex,
    mu: float | Tensor = 0.0,
    sigma: float | Tensor = 1.0,
    *,
    normalize: bool = False,
) -> Tensor:
    """Stationary loss ``1/2 E|y - y*|^2`` of a 1-D student ``lambda`` against a teacher ``lambda*``.

    Both are ``h_{t+1} = lambda h_t + x_{t+1}`` (complex allowed), the input is i.i.d. with mean
    ``mu`` and variance ``sigma^2``, and ``y = h`` (``normalize=False``) or ``y = gamma h`` with
    ``gamma = sqrt(1 - |lambda|^2)`` (``normalize=True``; the teacher uses its own gamma):

    ``L = 1/2 [mu^2 |g/(1-l) - g*/(1-l*)|^2 + sigma^2 (g^2/(1-|l|^2) + g*^2/(1-|l*|^2)
    - 2 g g* Re 1/(1 - l conj(l*)))]``  (``g = g* = 1`` without normalization).

    Differentiable (autograd through complex intermediates); broadcasts.
    """
    lam, lam_star = _tensor(lam), _tensor(lam_star)
    mu, sigma = _tensor(mu), _tensor(sigma)
    if not torch.is_complex(lam):
        lam = lam.to(torch.complex128) if lam.dtype == torch.float64 else torch.complex(lam, torch.zeros_like(lam))
    if not torch.is_complex(lam_star):
        lam_star = lam_star.to(lam.dtype)
    m2 = (lam * lam.conj()).real
    m2_star = (lam_star * lam_star.conj()).real
    if normalize:
        g, g_star = torch.sqrt(1 - m2), torch.sqrt(1 - m2_star)
    else:
        g, g_star = torch.ones_like(m2), torch.ones_like(m2_star)
    mean_part = (g / (1 - lam) - g_star / (1 - lam_star)).abs() ** 2
    var_part = g**2 / (1 - m2) + g_star**2 / (1 - m2_star) - 2 * g * g_star * (1 / (1 - lam * lam_star.conj())).real
    return 0.5 * (mu**2 * mean_part + sigma**2 * var_part)


def teacher_student_hessian_at_optimum(lam: Tensor | float) -> Tensor:
    """``d^2 L / d lambda^2`` at ``lambda = lambda*`` (real, mu = 0, sigma = 1, no normalization):
    ``(1 + lambda^2)/(1 - lambda^2)^3`` (251 263 at 0.99)."""
    lam = _tensor(lam)
    _check_stable(lam)
    return (1 + lam**2) / (1 - lam**2) ** 3


def parametrization_hessian_closed_form(kind: str, nu: Tensor | float, theta: Tensor | float = 0.0) -> Tensor:
    """Hessian of the gamma-normalized loss (mu = 0, sigma = 1) at the optimum with respect to the
    parameter ``omega`` of one parametrization (ZO Fig. 6), as a function of ``nu = |lambda*|``.

    ``kind``: ``"magnitude:polar"`` (``nu = omega``: ``1/(1-nu^2)^2``), ``"magnitude:exp"``
    (``nu = exp(-exp(omega))``: ``(nu ln nu)^2/(1-nu^2)^2 -> 1/4``), ``"magnitude:tanh"``
    (``nu = tanh(omega)``: 1), ``"angle:raw"`` (``theta = omega``: ``nu^2(1+nu^2)/(1-nu^2)^2``),
    ``"angle:exp"`` (``theta = exp(omega)``: ``theta^2`` times the raw one), ``"angle:opt"``
    (``theta = (1-nu^2)/(nu sqrt(1+nu^2)) omega``: 1). With white zero-mean input none of these
    depends on the angle except through ``theta = exp(omega)``'s chain factor.
    """
    nu, theta = _tensor(nu), _tensor(theta)
    _check_stable(nu, "nu")
    one = torch.ones_like(nu * theta)
    polar = 1 / (1 - nu**2) ** 2
    raw_angle = nu**2 * (1 + nu**2) / (1 - nu**2) ** 2
    forms = {
        "magnitude:polar": lambda: polar * one,
        "magnitude:exp": lambda: (nu * torch.log(nu)) ** 2 * polar * one,
        "magnitude:tanh": lambda: one,
        "angle:raw": lambda: raw_angle * one,
        "angle:exp": lambda: theta**2 * raw_angle * one,
        "angle:opt": lambda: one,
    }
    if kind not in forms:
        raise ValueError(f"kind must be one of {list(forms)}, got {kind!r}")
    return forms[kind]()
