"""Diagonal (complex, LRU-like) linear recurrences under flossing (Part IV, *ours*).

``h_t = lambda h_{t-1} + gamma B x_t``, ``y_t = Re(C h_t)``: :class:`DiagonalPopulation`, their
Lyapunov exponents through the QR estimator on the real ``2n``-dimensional block form
(:func:`diagonal_exponents`; closed form ``ln|lambda_i|``, each twice), flossing them
(:func:`floss_diagonal`), and the self-teacher loss in a chosen parametrization and
normalization (:func:`diagonal_self_teacher_loss`, :func:`white_noise_hessian_1d`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..common import seeded_generator
from ..curse_of_memory.students import lambda_from_params, params_from_lambda
from ..curse_of_memory.scans import diagonal_scan
from ..flossing.flosser import flossing_loss
from ..lyapunov.estimator import lyapunov_spectrum
from ..lyapunov.maps import LinearMap
from ..optim import BatchedAdam

__all__ = ["DiagonalPopulation", "init_diagonal_population", "diagonal_block_matrix", "diagonal_exponents",
           "floss_diagonal", "diagonal_self_teacher_loss", "white_noise_hessian_1d", "white_noise",
           "DIAG_INIT", "DIAG_FLOSS", "DIAG_INPUT", "PARAMETRIZATIONS"]

#: generator purposes of this module (seeded_generator(seed, purpose, ...))
DIAG_INIT, DIAG_FLOSS, DIAG_INPUT = 24, 25, 26


def white_noise(seeds: Sequence[int], batch: int, steps: int) -> Tensor:
    """Standard normal inputs ``(M, batch, steps)``, member m's from ``(seeds[m], DIAG_INPUT)``."""
    return torch.stack([torch.randn(batch, steps, generator=seeded_generator(int(s), DIAG_INPUT), dtype=torch.float64)
                        for s in seeds])


@dataclass
class DiagonalPopulation:
    """M complex diagonal linear recurrences of n units (one input, one output)::

        h_t = lambda * h_{t-1} + gamma * B x_t,     y_t = Re(sum_i C_i h_{t,i})

    ``nu`` ``(M, n)`` moduli in (0, 1), ``theta`` ``(M, n)`` angles, ``B``, ``C`` ``(M, n)`` complex.
    ``gamma = sqrt(1 - nu^2)`` when normalized (held constant when differentiating), else 1.
    """

    nu: Tensor
    theta: Tensor
    B: Tensor
    C: Tensor

    @property
    def n_members(self) -> int:
        return self.nu.shape[0]

    @property
    def lam(self) -> Tensor:
        return torch.polar(self.nu, self.theta)


def init_diagonal_population(seeds: Sequence[int], n: int, r_min: float = 0.2, r_max: float = 0.8,
                             max_phase: float = math.pi, dtype: torch.dtype = torch.float64,
                             device: str | torch.device = "cpu") -> DiagonalPopulation:
    """Member m from ``seeds[m]``: ring-initialized ``lambda`` (moduli uniform on the ring
    ``r_min <= |lambda| < r_max`` in area, angles ``U[0, max_phase)``), ``B, C ~ CN(0, 1)``
    (real and imaginary parts ``N(0, 1/2)``), ``C`` scaled by ``1/sqrt(n)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < r_min < r_max < 1:
        raise ValueError(f"need 0 < r_min < r_max < 1, got {r_min}, {r_max}")
    parts: dict[str, list[Tensor]] = {k: [] for k in ("nu", "theta", "B", "C")}
    for s in seeds:
        g = seeded_generator(int(s), DIAG_INIT)
        u = torch.rand(n, generator=g, dtype=torch.float64)
        parts["nu"].append(torch.sqrt(u * (r_max**2 - r_min**2) + r_min**2))
        parts["theta"].append(torch.rand(n, generator=g, dtype=torch.float64) * max_phase)
        z = torch.randn(2, 2, n, generator=g, dtype=torch.float64) / math.sqrt(2)
        parts["B"].append(torch.complex(z[0, 0], z[0, 1]))
        parts["C"].append(torch.complex(z[1, 0], z[1, 1]) / math.sqrt(n))
    t = {k: torch.stack(v).to(device) for k, v in parts.items()}
    rdt = dtype
    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    return DiagonalPopulation(nu=t["nu"].to(rdt), theta=t["theta"].to(rdt), B=t["B"].to(cdt), C=t["C"].to(cdt))


def diagonal_block_matrix(lam: Tensor) -> Tensor:
    """The real ``(..., 2n, 2n)`` matrix of ``h -> lambda * h`` on ``(Re h_1, Im h_1, ...)``:
    blocks ``[[Re, -Im], [Im, Re]]`` on the diagonal (differentiable in ``lam``)."""
    a, b = lam.real, lam.imag
    blocks = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (..., n, 2, 2)
    n = lam.shape[-1]
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    W = eye.unsqueeze(-1).unsqueeze(-1) * blocks.unsqueeze(-3)  # (..., n, n, 2, 2)
    return W.transpose(-3, -2).reshape(*lam.shape[:-1], 2 * n, 2 * n)


def diagonal_exponents(lam: Tensor, *, steps: int, k: Optional[int] = None, transient: int = 0,
                       q0: Optional[Tensor] = None) -> Tensor:
    """The ``k`` largest exponents ``(M, k)`` of ``h -> lambda h`` (complex ``(M, n)``, as a real
    ``2n``-dimensional map) by the QR estimator over ``steps`` steps (differentiable). Closed
    form: ``ln|lambda_i|``, each twice, sorted; the estimate approaches it as ``1/steps``."""
    W = diagonal_block_matrix(lam)
    M, n2 = W.shape[0], W.shape[-1]
    h0 = torch.zeros(M, n2, dtype=W.dtype, device=W.device)
    return lyapunov_spectrum(LinearMap(W), h0, steps=steps, k=k or n2, transient=transient, q0=q0,
                             reorth="qr").exponents


def floss_diagonal(pop: DiagonalPopulation, seeds: Sequence[int], targets: Sequence[float] | Tensor, *,
                   steps: int, lr: float, traj_steps: int = 100, ons: int = 10) -> tuple[DiagonalPopulation, Tensor]:
    """Floss every member's ``2n`` exponents to its target through the QR estimator, by Adam on
    the log-moduli ``ln|lambda_i|`` (angles, ``B`` and ``C`` untouched).

    Each flossing step estimates the exponents of ``h -> lambda h`` on one trajectory of
    ``traj_steps`` steps (transient ``10 + ceil(traj_steps / 10)``, a QR every ``ons`` steps, the
    initial basis from ``(seeds[m], DIAG_FLOSS, step)``) and descends
    ``mean_i (lambda_i - lambda*)^2``. Returns the flossed population and the loss history
    ``(steps, M)``. Targets must be negative (a linear recurrence with ``|lambda| >= 1`` has no
    stationary state)."""
    M, n = pop.nu.shape
    tg = torch.as_tensor(targets, dtype=pop.nu.dtype, device=pop.nu.device)
    if tg.shape != (M,):
        raise ValueError(f"targets must have shape (M,) = ({M},), got {tuple(tg.shape)}")
    if bool((tg >= 0).any()):
        raise ValueError("a diagonal linear recurrence needs targets < 0 (|lambda| < 1)")
    if len(seeds) != M:
        raise ValueError(f"need one seed per member: got {len(seeds)} for M = {M}")
    log_nu = torch.log(pop.nu).detach().clone().requires_grad_(True)
    opt = BatchedAdam([log_nu], lr=lr)
    transient = 10 + math.ceil(traj_steps / 10)
    h0 = torch.zeros(M, 2 * n, dtype=pop.nu.dtype, device=pop.nu.device)
    hist = []
    for j in range(steps):
        q0 = torch.stack([torch.linalg.qr(torch.randn(2 * n, 2 * n, generator=seeded_generator(int(s), DIAG_FLOSS, j),
                                                      dtype=torch.float64))[0] for s in seeds]).to(pop.nu)
        W = diagonal_block_matrix(torch.polar(torch.exp(log_nu), pop.theta))
        ex = lyapunov_spectrum(LinearMap(W), h0, steps=traj_steps - transient, transient=transient, q0=q0,
                               ons=ons, reorth="qr").exponents
        loss = flossing_loss(ex, tg)
        (g,) = torch.autograd.grad(loss.sum(), log_nu)
        opt.step([g])
        hist.append(loss.detach())
    nu = torch.exp(log_nu.detach()).clamp(max=1 - 1e-12)
    return DiagonalPopulation(nu=nu, theta=pop.theta.clone(), B=pop.B.clone(), C=pop.C.clone()), torch.stack(hist)


#: name -> (magnitude, angle) of :func:`floss_utils.curse_of_memory.students.lambda_from_params`
PARAMETRIZATIONS = {"polar": ("polar", "raw"), "exp": ("exp", "exp"), "exp_opt": ("exp", "opt")}


def diagonal_self_teacher_loss(pop: DiagonalPopulation, x: Tensor, *, parametrization: str, normalized: bool,
                               burn_in: int = 0) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """Self-teacher loss of the recurrent parameters of each member and the point where it vanishes.

    Args:
        pop: the teachers.
        x: real inputs ``(M, batch, T)``.
        parametrization: ``"polar"`` (``nu``, ``theta`` raw), ``"exp"`` (the LRU's
            ``nu = exp(-exp(a))``, ``theta = exp(b)``) or ``"exp_opt"`` (LRU magnitude, angle
            ``theta = s(nu) b`` with ``s = (1 - nu^2)/(nu sqrt(1 + nu^2))`` held constant: ZO's
            angle reparametrization with unit Hessian).
        normalized: input scaled by ``gamma = sqrt(1 - nu^2)`` (held constant, as in ZO).
        burn_in: leading steps left out of the loss.
    Returns:
        ``(loss_fn, theta0)``: ``theta = (mag, ang)`` ``(M, 2n)``; loss
        ``1/2 mean_{b, t >= burn_in} (y(theta) - y(theta0))^2``.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}")
    if x.ndim != 3 or x.shape[0] != pop.n_members:
        raise ValueError(f"x must have shape (M={pop.n_members}, batch, T), got {tuple(x.shape)}")
    magnitude, angle = PARAMETRIZATIONS[parametrization]
    mag0, ang0 = params_from_lambda(pop.nu, pop.theta, magnitude, angle)
    theta0 = torch.cat([mag0, ang0], -1).detach()
    n = pop.nu.shape[-1]
    gamma = torch.sqrt(1 - pop.nu**2) if normalized else torch.ones_like(pop.nu)
    drive = (gamma * pop.B).unsqueeze(1).unsqueeze(1) * x.unsqueeze(-1).to(pop.B.dtype)  # (M, b, T, n)

    def outputs(theta: Tensor) -> Tensor:
        lam = lambda_from_params(theta[:, :n], theta[:, n:], magnitude, angle)
        h = diagonal_scan(lam.unsqueeze(1), drive)
        return (h * pop.C.unsqueeze(1).unsqueeze(1)).sum(-1).real[..., burn_in:]

    with torch.no_grad():
        target = outputs(theta0)

    def loss_fn(theta: Tensor) -> Tensor:
        return 0.5 * ((outputs(theta) - target) ** 2).mean(dim=(1, 2))

    return loss_fn, theta0


def white_noise_hessian_1d(nu: Tensor | float, parametrization: str = "polar", normalized: bool = False) -> Tensor:
    """ZO's closed form (T -> infinity, white-noise input, one real unit, ``B = C = 1``) of the
    Hessian of the self-teacher loss w.r.t. the magnitude parameter at the optimum:
    ``E[(dh/dnu)^2] = (1 + nu^2)/(1 - nu^2)^3``, times ``gamma^2 = 1 - nu^2`` when normalized,
    times ``(dnu/da)^2 = (nu ln nu)^2`` for ``nu = exp(-exp(a))``. (The loss is ``1/2 E[...]``
    so its Hessian is ``E[(dy)^2]``.)"""
    nu = torch.as_tensor(nu, dtype=torch.float64)
    h = (1 + nu**2) / (1 - nu**2) ** 3
    if normalized:
        h = h * (1 - nu**2)
    if parametrization == "exp":
        h = h * (nu * torch.log(nu)) ** 2
    elif parametrization != "polar":
        raise ValueError(f"parametrization must be 'polar' or 'exp', got {parametrization!r}")
    return h
