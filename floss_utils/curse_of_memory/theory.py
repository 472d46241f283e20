"""Closed forms of the curse of memory (Zucchet & Orvieto 2024) for one linear recurrent unit.

``h_{t+1} = lambda h_t + x_{t+1}`` driven by a wide-sense stationary input with
autocorrelation ``R_x(Delta) = rho^|Delta|`` (unit variance), in the stationary limit
t -> infinity: stationary moments (real and complex, normalized and reparametrized), the cross
moment ``f`` and its mixed derivative ``S = d^2 f / da db``, and the 1-D teacher-student loss
with its Hessians under each parametrization. Everything here is torch, broadcasts over its
arguments, and accepts complex ``lambda`` where the docstring says so. ``S`` is obtained by
nested forward-mode automatic differentiation (exact for the holomorphic rational function
``f``), never from a hand-expanded formula.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
import torch
from torch import Tensor
from torch.func import jvp

__all__ = [
    "cross_moment",
    "cross_moment_mixed_derivative",
    "mixed_derivative_fd",
    "zo_notebook_mixed_derivative",
    "hidden_second_moment",
    "sensitivity_second_moment",
    "memory_sensitivity_gain",
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


def mixed_derivative_fd(a: Tensor | complex, b: Tensor | complex, rho: Tensor | float,
                        step: float = 1e-4) -> Tensor:
    """``S(a, b, rho)`` by central second differences of :func:`cross_moment`, Richardson-extrapolated.

    An autodiff-free ground truth for :func:`cross_moment_mixed_derivative`. With
    ``D(e) = (f(a+e, b+e) - f(a+e, b-e) - f(a-e, b+e) + f(a-e, b-e)) / (4 e^2)``, whose error is
    ``c e^2 + O(e^4)``, it returns ``(4 D(e/2) - D(e)) / 3``: truncation ``O(e^4)`` (about
    ``e^4 / d^4`` relative, ``d`` the distance of ``a, b`` to the poles ``1/rho``, ``1/b``, ``1/a``;
    below 1e-10 at ``e = 1e-4`` for ``|a|, |b| <= 0.95``) and round-off about
    ``10 eps |f| / (e^2 |S|)`` (below 1e-7 relative at ``e = 1e-4``, since ``|f| <= |S|`` near the unit
    circle and ``eps = 2.2e-16``). Real steps along both arguments give the holomorphic derivative
    for complex ``a, b``. Broadcasts like :func:`cross_moment`.

    Raises:
        ValueError: ``step`` not positive, or a step would leave the open unit disk (``|a| + step``
            or ``|b| + step`` at least 1), where ``f`` is no stationary moment.
    """
    if not step > 0:
        raise ValueError(f"mixed_derivative_fd: step must be positive, got {step!r}")
    a, b = _tensor(a), _tensor(b)
    if bool((a.abs() + step >= 1).any()) or bool((b.abs() + step >= 1).any()):
        raise ValueError(f"mixed_derivative_fd: |a| + step and |b| + step must stay below 1 (step {step:g})")
    f = lambda x, y: cross_moment(x, y, rho)

    def second_difference(e: float) -> Tensor:
        return (f(a + e, b + e) - f(a + e, b - e) - f(a - e, b + e) + f(a - e, b - e)) / (4 * e * e)

    return (4 * second_difference(step / 2) - second_difference(step)) / 3


def zo_notebook_mixed_derivative(a: Tensor | complex, b: Tensor | complex, rho: Tensor | float) -> Tensor:
    """The hand-expanded estimate of ``S(a, b, rho)`` in ZO's public notebook, kept to show its defect.

    A transcription of ``estimate(l1, l2, r)`` in ``figures/visualization_S.ipynb`` of ZO's
    repository, with which their Fig. 8 (``|S(lambda, lambda_0, rho)|`` over the unit disk) was
    drawn. It equals :func:`cross_moment_mixed_derivative` at ``rho = 0`` and ``rho = 1`` and is
    wrong in between (e.g. 277 instead of 525 at ``a = 0.9 e^{-i pi/4}``,
    ``b = 0.99 e^{i pi/4}``, ``rho = 0.9``). Never use it for anything but that comparison.
    Broadcasts; complex ``a, b`` allowed.
    """
    a, b, rho = _tensor(a), _tensor(b), _tensor(rho)
    ab = a * b
    p1 = (1 - rho) * (1 + ab)
    p2 = rho**2 * (1 - ab) ** 3
    p3 = -rho * (1 - rho) * ab * (2 * a + 2 * b - rho * ab * (1 + ab))
    return (p1 + p2 + p3) / ((1 - rho * a) ** 2 * (1 - rho * b) ** 2 * (1 - ab) ** 3)


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


def memory_sensitivity_gain(lam_short: Tensor | float, lam_long: Tensor | float,
                            rho: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
    """How much more sensitive one real unit is with memory ``lam_long`` than with ``lam_short``:
    ``(E[(d_l h)^2](lam_long) / E[(d_l h)^2](lam_short),`` the same with each divided by its
    ``E[h^2]``, the output's scale``)``. White input (rho = 0), ``lam_short = 0.5`` and
    ``lam_long = 0.99``: about ``8.5e4`` and ``2.3e3``.
    """
    s_long, s_short = sensitivity_second_moment(lam_long, rho), sensitivity_second_moment(lam_short, rho)
    raw = s_long / s_short
    return raw, raw * hidden_second_moment(lam_short, rho) / hidden_second_moment(lam_long, rho)


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
