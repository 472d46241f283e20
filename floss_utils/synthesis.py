"""Where gradient flossing meets the curse of memory (Part IV, *ours*): sharpness and Adam's
effective learning rates of flossed networks.

Flossing (GF) pushes Lyapunov exponents toward a target ``lambda*`` (0: long memory). ZO shows
that long memory makes a loss sharply sensitive to the recurrent parameters. This module
measures that sensitivity for member-batched populations:

* :func:`lanczos_top_eigenvalue` - the largest (algebraic) eigenvalue of a symmetric operator
  given only as a batched matrix-vector product ``(M, P) -> (M, P)``, by Lanczos with full
  re-orthogonalization (one Krylov space per member, all members in one tensor program).
* :func:`hvp_operator` - Hessian-vector products of a per-member loss ``f(theta) -> (M,)`` at
  ``theta`` ``(M, P)``: forward-mode derivative of the reverse-mode gradient
  (``torch.func.jvp`` of ``torch.func.grad``). Members are independent, so the Hessian of the
  summed loss is block-diagonal and one product gives every member's.
* :func:`sharpness` - the two combined: the top Hessian eigenvalue per member.
* GF networks as their own teacher: :func:`gf_self_teacher_loss` - ``1/2 mean_{b,t}
  (r_theta - r_theta0)^2``, the readout of the network with parameters ``theta`` against the
  readout of the network itself (``theta0``). At ``theta0`` the loss and its gradient vanish and
  the Hessian is the Gauss-Newton matrix ``E[dr dr^T]``: ZO's teacher-student optimum, with the
  flossed network as the teacher.
* :func:`adam_self_teacher_run` - Adam on ``J`` from a perturbed copy of each network back to
  the network; returns Adam's moments, for :func:`floss_utils.landscape.effective_learning_rates`.
* Diagonal (complex, LRU-like) linear recurrences ``h_t = lambda h_{t-1} + gamma B x_t``,
  ``y_t = Re(C h_t)``: :class:`DiagonalPopulation`, their Lyapunov exponents through the QR
  estimator on the real ``2n``-dimensional block form (:func:`diagonal_exponents`; closed form
  ``ln|lambda_i|``, each twice), flossing them (:func:`floss_diagonal`), and the self-teacher
  loss in a chosen parametrization and normalization (:func:`diagonal_self_teacher_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.func import grad, jvp

from .batched_adam import BatchedAdam
from .dynamics import LinearMap
from .flossing import flossing_loss
from .lyapunov import lyapunov_spectrum
from .models import lambda_from_params, params_from_lambda
from .scans import diagonal_scan
from .networks import GFNetwork, seeded_generator

__all__ = [
    "lanczos_top_eigenvalue",
    "hvp_operator",
    "sharpness",
    "flatten",
    "unflatten",
    "gf_self_teacher_loss",
    "gf_readout_variance",
    "adam_self_teacher_run",
    "task_bits",
    "white_noise",
    "DiagonalPopulation",
    "init_diagonal_population",
    "diagonal_block_matrix",
    "diagonal_exponents",
    "floss_diagonal",
    "diagonal_self_teacher_loss",
    "white_noise_hessian_1d",
]

# generator purposes of this module (seeded_generator(seed, purpose, ...)); 0-5 are taken
SHARP_BITS, ADAM_BITS, ADAM_PERTURB, LANCZOS, DIAG_INIT, DIAG_FLOSS, DIAG_INPUT = 20, 21, 22, 23, 24, 25, 26


# ------------------------------------------------------------------------------ Lanczos


def lanczos_top_eigenvalue(matvec: Callable[[Tensor], Tensor], v0: Tensor, iters: int) -> Tensor:
    """Largest algebraic eigenvalue per member of a symmetric operator, by Lanczos.

    Args:
        matvec: batched product ``(M, P) -> (M, P)``, member m's operator applied to row m.
        v0: ``(M, P)`` start vectors (random; must not be orthogonal to the top eigenvector).
        iters: Krylov dimension, ``1 <= iters <= P`` (``iters = P`` gives the exact spectrum in
            exact arithmetic; a few tens suffice for the top eigenvalue of a Hessian whose top
            is separated).
    Returns:
        ``(M,)`` the largest Ritz value of each member.

    Full re-orthogonalization (twice, against all previous Lanczos vectors) keeps the basis
    orthonormal in floating point; an invariant subspace reached early (``beta ~ 0``) only
    restarts with a vector orthogonal to the space found, so the Ritz values stay exact.
    """
    if v0.ndim != 2:
        raise ValueError(f"v0 must have shape (M, P), got {tuple(v0.shape)}")
    M, P = v0.shape
    if isinstance(iters, bool) or not isinstance(iters, int) or not 1 <= iters <= P:
        raise ValueError(f"iters must be an int in [1, P = {P}], got {iters!r}")
    q = v0 / v0.norm(dim=-1, keepdim=True)
    Qs = [q]
    alphas, betas = [], []
    gen = torch.Generator().manual_seed(0)  # restart vectors: deterministic
    for j in range(iters):
        w = matvec(q)
        a = (w * q).sum(-1)
        alphas.append(a)
        if j == iters - 1:
            break
        Qm = torch.stack(Qs, dim=-1)  # (M, P, j+1)
        for _ in range(2):
            w = w - torch.einsum("mpj,mj->mp", Qm, torch.einsum("mpj,mp->mj", Qm, w))
        b = w.norm(dim=-1)
        scale = torch.stack([x.abs() for x in alphas], -1).amax(-1).clamp_min(1e-300)
        small = b <= 1e-10 * scale
        if bool(small.any()):  # invariant subspace: restart orthogonally, coupling beta = 0
            r = torch.randn(M, P, generator=gen, dtype=torch.float64).to(v0)
            for _ in range(2):
                r = r - torch.einsum("mpj,mj->mp", Qm, torch.einsum("mpj,mp->mj", Qm, r))
            w = torch.where(small.unsqueeze(-1), r, w)
            b_use = torch.where(small, w.norm(dim=-1), b)
            b = torch.where(small, torch.zeros_like(b), b)
        else:
            b_use = b
        betas.append(b)
        q = w / b_use.unsqueeze(-1)
        Qs.append(q)
    a = torch.stack(alphas, -1)  # (M, k)
    T = torch.diag_embed(a)
    if betas:
        bt = torch.stack(betas, -1)
        T = T + torch.diag_embed(bt, 1) + torch.diag_embed(bt, -1)
    return torch.linalg.eigvalsh(T)[..., -1]


def hvp_operator(loss_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Callable[[Tensor], Tensor]:
    """``v -> H v`` per member for a loss ``loss_fn(theta (M, P)) -> (M,)`` at ``theta``
    (jvp of grad; the Hessian of the summed loss is block-diagonal over independent members)."""
    theta = theta.detach()
    g = grad(lambda th: loss_fn(th).sum())

    def matvec(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v.to(theta),))[1]

    return matvec


def sharpness(loss_fn: Callable[[Tensor], Tensor], theta: Tensor, *, iters: int = 20, seed: int = 0,
              mask: Optional[Tensor] = None) -> Tensor:
    """Top Hessian eigenvalue ``(M,)`` of ``loss_fn`` at ``theta`` ``(M, P)`` (Lanczos on
    Hessian-vector products, start vectors from ``seed``).

    ``mask`` ``(P,)`` bool restricts to a block of coordinates (e.g. the magnitudes): the top
    eigenvalue of the principal sub-matrix ``H[mask][:, mask]``."""
    v0 = torch.randn(theta.shape, generator=seeded_generator(seed, LANCZOS), dtype=torch.float64).to(theta)
    hvp = hvp_operator(loss_fn, theta)
    P = theta.shape[-1]
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=theta.device)
        if mask.shape != (P,) or not bool(mask.any()):
            raise ValueError(f"mask must be a (P,) = ({P},) bool tensor selecting at least one coordinate")
        w = mask.to(theta.dtype)
        v0 = v0 * w
        P = int(mask.sum())
        return lanczos_top_eigenvalue(lambda v: hvp(v * w) * w, v0, min(iters, P))
    return lanczos_top_eigenvalue(hvp, v0, min(iters, P))


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """``(M, ...)`` tensors -> ``(M, P)``, concatenated in order."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=-1)


def unflatten(theta: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Inverse of :func:`flatten`: ``(M, P)`` -> tensors shaped as ``like``."""
    out, i = [], 0
    for t in like:
        n = t[0].numel()
        out.append(theta[:, i:i + n].reshape(t.shape))
        i += n
    if i != theta.shape[-1]:
        raise ValueError(f"theta has {theta.shape[-1]} coordinates, the tensors {i}")
    return out


# ---------------------------------------------------------------- GF networks as their own teacher


def _with(net: GFNetwork, names: Sequence[str], values: Sequence[Tensor]) -> GFNetwork:
    kw = {n: getattr(net, n) for n in ("J", "W_s", "b", "w_r", "c", "x0")}
    kw.update(dict(zip(names, values)))
    return GFNetwork(**kw)


def _readout(net: GFNetwork, bits: Tensor, burn_in: int) -> Tensor:
    return net.logits(bits)[burn_in:]  # (T - burn_in, M, B)


def gf_self_teacher_loss(net: GFNetwork, names: Sequence[str], bits: Tensor, burn_in: int = 0
                         ) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """The self-teacher loss of each member and the point ``theta0`` where it vanishes.

    Args:
        net: M GF networks (the teachers; detached copies are used).
        names: the parameters the loss is a function of (e.g. ``("J",)`` or ``("J", "W_s")``).
        bits: inputs ``(T, M, B)`` with ``B = net.batch_size`` (the learned initial states).
        burn_in: leading steps left out of the loss.
    Returns:
        ``(loss_fn, theta0)``: ``loss_fn(theta (M, P)) -> (M,)`` is
        ``1/2 mean_{t > burn_in, b} (r_t(theta) - r_t(theta0))^2``; ``theta0`` ``(M, P)``.
    """
    if bits.ndim != 3 or bits.shape[1:] != (net.n_members, net.batch_size):
        raise ValueError(f"bits must have shape (T, M={net.n_members}, B={net.batch_size}), got {tuple(bits.shape)}")
    if not 0 <= burn_in < bits.shape[0]:
        raise ValueError(f"burn_in must lie in [0, T = {bits.shape[0]}), got {burn_in}")
    teacher = net.clone()
    like = teacher.tensors(names)
    theta0 = flatten(like)
    with torch.no_grad():
        target = _readout(teacher, bits, burn_in)

    def loss_fn(theta: Tensor) -> Tensor:
        r = _readout(_with(teacher, names, unflatten(theta, like)), bits, burn_in)
        return 0.5 * ((r - target) ** 2).mean(dim=(0, 2))

    return loss_fn, theta0


@torch.no_grad()
def gf_readout_variance(net: GFNetwork, bits: Tensor, burn_in: int = 0) -> Tensor:
    """``(M,)`` variance of each member's readout over time steps and batch (the output scale
    against which a sharpness can be normalized)."""
    r = _readout(net, bits, burn_in)
    return r.var(dim=(0, 2), correction=0)


def task_bits(seeds: Sequence[int], purpose: int, key: int, steps: int, batch: int) -> Tensor:
    """Random input bits ``(steps, M, batch)``, member m's from ``(seeds[m], purpose, key)``."""
    return torch.stack([torch.randint(0, 2, (steps, batch), generator=seeded_generator(int(s), purpose, key))
                        for s in seeds], dim=1).to(torch.float64)


def white_noise(seeds: Sequence[int], batch: int, steps: int) -> Tensor:
    """Standard normal inputs ``(M, batch, steps)``, member m's from ``(seeds[m], DIAG_INPUT)``."""
    return torch.stack([torch.randn(batch, steps, generator=seeded_generator(int(s), DIAG_INPUT), dtype=torch.float64)
                        for s in seeds])


@dataclass
class AdamSelfTeacherRun:
    """Outcome of :func:`adam_self_teacher_run`: Adam's moments of ``J`` ``(M, N, N)`` after
    ``steps`` updates, the batch losses ``(steps, M)`` and the gradient norms ``(steps, M)``."""

    m: Tensor
    v: Tensor
    steps: int
    lr: float
    losses: Tensor
    grad_norms: Tensor


def adam_self_teacher_run(net: GFNetwork, seeds: Sequence[int], *, steps: int, lr: float, perturbation: float,
                          seq_len: int, burn_in: int = 0) -> AdamSelfTeacherRun:
    """Train ``J`` of a perturbed copy of every network back to the network with Adam.

    The student starts at ``J + perturbation * Z / sqrt(N)`` (Z standard normal from
    ``(seeds[m], ADAM_PERTURB)``), every step sees fresh bits ``(seq_len, M, B)`` from
    ``(seeds[m], ADAM_BITS, step)`` and minimizes the self-teacher loss of
    :func:`gf_self_teacher_loss`; members are independent (one tensor program).
    """
    if steps < 1 or not lr > 0 or perturbation < 0:
        raise ValueError(f"need steps >= 1, lr > 0, perturbation >= 0; got {steps}, {lr}, {perturbation}")
    teacher = net.clone()
    M, N, B = net.n_members, net.n_units, net.batch_size
    Z = torch.stack([torch.randn(N, N, generator=seeded_generator(int(s), ADAM_PERTURB), dtype=torch.float64)
                     for s in seeds]).to(teacher.J)
    J = (teacher.J + perturbation * Z / math.sqrt(N)).requires_grad_(True)
    opt = BatchedAdam([J], lr=lr)
    losses, norms = [], []
    for step in range(steps):
        bits = task_bits(seeds, ADAM_BITS, step, seq_len, B).to(teacher.J)
        with torch.no_grad():
            target = _readout(teacher, bits, burn_in)
        r = _readout(_with(teacher, ("J",), (J,)), bits, burn_in)
        loss = 0.5 * ((r - target) ** 2).mean(dim=(0, 2))
        (g,) = torch.autograd.grad(loss.sum(), J)
        opt.step([g])
        losses.append(loss.detach())
        norms.append(g.reshape(M, -1).norm(dim=-1))
    return AdamSelfTeacherRun(m=opt.m[0].detach(), v=opt.v[0].detach(), steps=steps, lr=lr,
                              losses=torch.stack(losses), grad_norms=torch.stack(norms))


# ------------------------------------------------------------------- diagonal recurrences


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


#: name -> (magnitude, angle) of :func:`floss_utils.models.lambda_from_params`
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
