"""The one-dimensional teacher-student problem of ZO (Part II of the book): parametrizations of
``lambda = nu e^{i theta}``, Hessians at the optimum by autograd, and learning the angle with Adam.

The loss is the closed form :func:`floss_utils.curse_of_memory.theory.teacher_student_loss` (validated against
a direct simulation in the tests). A parametrization maps a raw parameter ``omega`` to the
magnitude or the angle:

========================  ==============================================  =========================
kind                      map                                             Hessian at the optimum
========================  ==============================================  =========================
``magnitude:polar``       ``nu = omega``                                  ``1/(1-nu^2)^2``
``magnitude:exp``         ``nu = exp(-exp(omega))``                       ``-> 1/4``
``magnitude:tanh``        ``nu = tanh(omega)``                            ``1``
``angle:raw``             ``theta = omega``                               ``nu^2(1+nu^2)/(1-nu^2)^2``
``angle:exp``             ``theta = exp(omega)``                          ``theta^2`` x raw
``angle:opt``             ``theta = (1-nu^2)/(nu sqrt(1+nu^2)) omega``    ``1``
========================  ==============================================  =========================

(Hessians of the gamma-normalized loss with zero-mean, unit-variance white input; closed forms
in :func:`floss_utils.curse_of_memory.theory.parametrization_hessian_closed_form`.)

:func:`learn_angle` trains several angle parametrizations at once, each both with a proper
``torch.optim.Adam`` (state carried across steps) and with the public anchor code's behaviour,
where the optimizer state is never carried over so every step is Adam's *first* step,
``lr * g / (|g| + eps)``: sign descent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .theory import ANGLE_PARAMETRIZATIONS, MAGNITUDE_PARAMETRIZATIONS, teacher_student_loss

__all__ = [
    "PARAMETRIZATION_KINDS",
    "magnitude",
    "magnitude_inverse",
    "angle",
    "angle_inverse",
    "opt_angle_scale",
    "parametrized_lambda",
    "parametrization_hessian",
    "AngleTraining",
    "learn_angle",
    "loss_curvature_at_optimum",
]

#: every parametrization ``kind``, ``"magnitude:..."`` and ``"angle:..."``.
PARAMETRIZATION_KINDS = tuple(f"magnitude:{k}" for k in MAGNITUDE_PARAMETRIZATIONS) + tuple(
    f"angle:{k}" for k in ANGLE_PARAMETRIZATIONS
)


def _check(kind: str, allowed: Sequence[str], what: str) -> None:
    if kind not in allowed:
        raise ValueError(f"{what} parametrization must be one of {list(allowed)}, got {kind!r}")


def magnitude(kind: str, omega: Tensor) -> Tensor:
    """``nu`` from the raw parameter: ``polar`` identity, ``exp`` ``exp(-exp(omega))``, ``tanh``."""
    _check(kind, MAGNITUDE_PARAMETRIZATIONS, "magnitude")
    if kind == "polar":
        return omega
    if kind == "exp":
        return torch.exp(-torch.exp(omega))
    return torch.tanh(omega)


def magnitude_inverse(kind: str, nu: Tensor) -> Tensor:
    """The raw parameter ``omega`` with ``magnitude(kind, omega) = nu`` (``0 < nu < 1``)."""
    _check(kind, MAGNITUDE_PARAMETRIZATIONS, "magnitude")
    if kind == "polar":
        return nu.clone()
    if kind == "exp":
        return torch.log(-torch.log(nu))
    return torch.atanh(nu)


def opt_angle_scale(nu: Tensor) -> Tensor:
    """``(1 - nu^2) / (nu sqrt(1 + nu^2))``: the angle scale that makes the Hessian 1."""
    return (1 - nu**2) / (nu * torch.sqrt(1 + nu**2))


def angle(kind: str, omega: Tensor, nu: Tensor) -> Tensor:
    """``theta`` from the raw parameter: ``raw`` identity, ``exp`` ``exp(omega)``,
    ``opt`` ``opt_angle_scale(nu) * omega``."""
    _check(kind, ANGLE_PARAMETRIZATIONS, "angle")
    if kind == "raw":
        return omega
    if kind == "exp":
        return torch.exp(omega)
    return opt_angle_scale(nu) * omega


def angle_inverse(kind: str, theta: Tensor, nu: Tensor) -> Tensor:
    """The raw parameter ``omega`` with ``angle(kind, omega, nu) = theta`` (``theta > 0`` for exp)."""
    _check(kind, ANGLE_PARAMETRIZATIONS, "angle")
    if kind == "raw":
        return theta.clone()
    if kind == "exp":
        return torch.log(theta)
    return theta / opt_angle_scale(nu)


def parametrized_lambda(kind: str, omega: Tensor, nu_star: Tensor, theta_star: Tensor) -> Tensor:
    """``lambda`` when only the parameter of ``kind`` varies: ``magnitude:*`` gives
    ``nu(omega) e^{i theta*}``, ``angle:*`` gives ``nu* e^{i theta(omega)}``."""
    _check(kind, PARAMETRIZATION_KINDS, "the")
    part, name = kind.split(":")
    if part == "magnitude":
        return torch.polar(magnitude(name, omega), theta_star.expand_as(omega))
    return torch.polar(nu_star.expand_as(omega), angle(name, omega, nu_star))


def parametrization_hessian(
    kind: str,
    nu_star: Tensor,
    theta_star: float | Tensor = 0.0,
    *,
    normalize: bool = True,
    mu: float = 0.0,
    sigma: float = 1.0,
) -> Tensor:
    """Second derivative of the loss with respect to the raw parameter of ``kind`` at the
    optimum ``lambda = lambda* = nu* e^{i theta*}``, by autograd (double backward).

    Vectorized over ``nu_star`` (shape ``(n,)``, float64 recommended): the loss of each entry
    depends on its own parameter only, so the double backward of the summed loss gives every
    second derivative at once.
    """
    _check(kind, PARAMETRIZATION_KINDS, "the")
    nu_star = torch.as_tensor(nu_star, dtype=torch.float64)
    if bool(((nu_star <= 0) | (nu_star >= 1)).any()):
        raise ValueError(f"nu_star must lie in (0, 1), got {nu_star.tolist()}")
    theta_star = torch.as_tensor(theta_star, dtype=nu_star.dtype, device=nu_star.device).expand_as(nu_star)
    part, name = kind.split(":")
    if part == "magnitude":
        omega0 = magnitude_inverse(name, nu_star)
    else:
        omega0 = angle_inverse(name, theta_star, nu_star)
    omega = omega0.detach().clone().requires_grad_(True)
    lam_star = torch.polar(nu_star, theta_star)
    loss = teacher_student_loss(parametrized_lambda(kind, omega, nu_star, theta_star), lam_star,
                                mu, sigma, normalize=normalize)
    (grad,) = torch.autograd.grad(loss.sum(), omega, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), omega)
    return hess


@dataclass
class AngleTraining:
    """Result of :func:`learn_angle`.

    Attributes:
        kinds: the angle parametrization of each run (last axis, K runs).
        learn_magnitude: whether run k also learns ``nu`` (else ``nu`` stays at ``|lam0|``).
        optimizers: ``("adam", "adam-first-step")``, the order of the middle axis.
        loss: (steps, 2, K) loss before each step.
        theta: (n_records, 2, K) the angle ``theta`` every ``record_every`` steps (step 0 first).
        nu: (n_records, 2, K) the magnitude ``nu``, same steps.
        record_steps: (n_records,) the step of each record.
    """

    kinds: tuple[str, ...]
    learn_magnitude: tuple[bool, ...]
    optimizers: tuple[str, str]
    loss: Tensor
    theta: Tensor
    nu: Tensor
    record_steps: Tensor


def _batched_lambda(p: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """``(nu, theta)`` for raw parameters ``p`` (..., K, 2) = (omega_nu, omega_theta) with
    ``nu = tanh(omega_nu)`` and the angle parametrization given per column by ``codes``
    (0 raw, 1 exp, 2 opt)."""
    nu = torch.tanh(p[..., 0])
    w = p[..., 1]
    is_raw, is_exp, is_opt = (codes == 0), (codes == 1), (codes == 2)
    theta = (w * is_raw + torch.exp(torch.where(is_exp, w, torch.zeros_like(w))) * is_exp
             + opt_angle_scale(nu) * w * is_opt)
    return nu, theta


def learn_angle(
    kinds: Sequence[str] = ANGLE_PARAMETRIZATIONS,
    *,
    learn_magnitude: Sequence[bool] | bool = True,
    lam0: complex = 0.99 * complex(math.cos(math.pi / 4), math.sin(math.pi / 4)),
    lam_star: complex = 0.99 * complex(math.cos(math.pi / 100), math.sin(math.pi / 100)),
    lr: float = 1e-3,
    steps: int = 50_000,
    record_every: int = 100,
    mu: float = 0.0,
    sigma: float = 1.0,
    normalize: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> AngleTraining:
    """Learn ``lambda* = nu* e^{i theta*}`` from ``lam0`` with ``nu = tanh(omega_nu)`` and each
    angle parametrization in ``kinds`` (one run per entry of ``kinds``; ``learn_magnitude`` per
    run, or one bool for all: ``False`` freezes ``nu`` at ``|lam0|`` by zeroing its gradient), both with ``torch.optim.Adam`` keeping its state (proper)
    and with the state discarded before every step (the anchor code's behaviour, sign descent).

    All ``2 x len(kinds)`` runs are one tensor program: one loss evaluation and one backward
    per step, two Adam optimizers (their updates are elementwise, so runs do not interact).
    Defaults are ZO Fig. 7 (start ``0.99 e^{i pi/4}``, target ``0.99 e^{i pi/100}``, lr 1e-3,
    unnormalized loss, zero-mean unit-variance white input).
    """
    for k in kinds:
        _check(k, ANGLE_PARAMETRIZATIONS, "angle")
    if steps < 1 or record_every < 1 or not (lr > 0):
        raise ValueError(f"need steps >= 1, record_every >= 1, lr > 0; got {steps}, {record_every}, {lr}")
    if not 0 < abs(lam0) < 1 or not 0 < abs(lam_star) < 1:
        raise ValueError(f"lam0 and lam_star must satisfy 0 < |.| < 1, got {lam0}, {lam_star}")
    K = len(kinds)
    if isinstance(learn_magnitude, bool):
        learn_magnitude = [learn_magnitude] * K
    learn_magnitude = tuple(bool(b) for b in learn_magnitude)
    if len(learn_magnitude) != K:
        raise ValueError(f"learn_magnitude has {len(learn_magnitude)} entries for {K} kinds")
    grad_mask = torch.ones(K, 2, dtype=dtype, device=device)
    grad_mask[:, 0] = torch.tensor(learn_magnitude, dtype=dtype, device=device)
    codes = torch.tensor([ANGLE_PARAMETRIZATIONS.index(k) for k in kinds], device=device)
    nu0 = torch.full((K,), abs(lam0), dtype=dtype, device=device)
    theta0 = torch.full((K,), math.atan2(lam0.imag, lam0.real), dtype=dtype, device=device)
    w0 = torch.stack([angle_inverse(k, theta0[i], nu0[i]) for i, k in enumerate(kinds)])
    p0 = torch.stack([torch.atanh(nu0), w0], dim=-1)  # (K, 2)
    params = [p0.clone().requires_grad_(True), p0.clone().requires_grad_(True)]  # proper, reset
    opts = [torch.optim.Adam([params[0]], lr=lr), torch.optim.Adam([params[1]], lr=lr)]
    target = torch.tensor(lam_star, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64,
                          device=device)
    n_rec = steps // record_every + 1
    losses = torch.empty(steps, 2, K, dtype=dtype, device=device)
    thetas = torch.empty(n_rec, 2, K, dtype=dtype, device=device)
    nus = torch.empty_like(thetas)
    for step in range(steps + 1):
        p = torch.stack(params)  # (2, K, 2)
        nu, theta = _batched_lambda(p, codes)
        if step % record_every == 0:
            thetas[step // record_every] = theta.detach()
            nus[step // record_every] = nu.detach()
        if step == steps:
            break
        loss = teacher_student_loss(torch.polar(nu, theta), target, mu, sigma, normalize=normalize)
        losses[step] = loss.detach()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        for p_ in params:  # a zero gradient leaves Adam's update at exactly 0
            p_.grad.mul_(grad_mask)
        opts[0].step()
        opts[1].state.clear()  # the anchor never carries the optimizer state: a first step each time
        opts[1].step()
    return AngleTraining(tuple(kinds), learn_magnitude, ("adam", "adam-first-step"), losses, thetas, nus,
                         torch.arange(n_rec) * record_every)


def loss_curvature_at_optimum(lam_star: Tensor, direction: str) -> Tensor:
    """Second derivative of the 1-D teacher-student loss at the optimum ``lambda = lambda*``
    (white input, zero mean), by double backward through
    :func:`~floss_utils.curse_of_memory.theory.teacher_student_loss`.

    Args:
        lam_star: ``(K,)`` real teachers ``lambda*`` in (-1, 1).
        direction: ``"real"`` (move ``lambda`` along the real axis) or ``"circle"`` (move its
            angle on the circle ``|lambda| = |lambda*|``).
    Returns:
        ``(K,)`` curvatures, to compare with the closed forms (real:
        :func:`~floss_utils.curse_of_memory.theory.teacher_student_hessian_at_optimum`).
    """
    if direction not in ("real", "circle"):
        raise ValueError(f"direction must be 'real' or 'circle', got {direction!r}")
    x = torch.zeros_like(lam_star, requires_grad=True)
    lam = lam_star + x if direction == "real" else torch.polar(lam_star, x)
    (g,) = torch.autograd.grad(teacher_student_loss(lam, lam_star).sum(), x, create_graph=True)
    return torch.autograd.grad(g.sum(), x)[0]
