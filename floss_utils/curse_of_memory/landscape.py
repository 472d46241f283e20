"""The loss landscape at a parameter point, and Adam's effective learning rates (ZO Fig. 4).

Hessians over **all** parameters of a (member-batched) student, flattened in the order of
``model.named_parameters()``, in the parameters' dtype (use float64: at the optimum the loss is
~1e-25 and its Hessian entries span ten orders of magnitude):

* :func:`flat_parameters` / :class:`FlatLayout` - the flat coordinate system: which parameter,
  which entry, which role group (``model.param_groups()``) each coordinate is.
* :func:`loss_hessian` - ``(M, P, P)``: the Hessian of every member's loss, computed as
  ``P`` Hessian-vector products (forward-mode derivative of the reverse-mode gradient,
  ``torch.func.jvp`` of ``torch.func.grad``, vectorized with ``vmap``). Members of a batched
  student are independent, so the Hessian of the summed loss is block-diagonal over members and
  one tangent ``e_j`` set in every member's block gives column ``j`` of all members' Hessians at
  once: ``P`` products, not ``M P``.
* :func:`residual_jacobian`, :func:`gauss_newton` - ``J^T J / R`` for a mean-squared loss
  ``1/2 mean(r^2)`` over ``R`` residuals: first derivatives only, equal to the Hessian wherever
  the residuals vanish (an independent check of the Hessian at the optimum).
* :func:`hessian_eigen` - eigenvalues (descending) and eigenvectors of the symmetrized Hessian.
* :func:`memory_control` / :class:`MemoryControl` - is the optimum sharp because of the memory?
  The same teachers redrawn with short memory (same seeds, so the same uniform draws, angles,
  eigenbases, ``B``, ``C``, ``D``), their top Hessian eigenvalue and their loss scale.
* Concentration of a vector ``v`` on few coordinates: :func:`participation_ratio`
  ``PR = (sum v_i^2)^2 / sum v_i^4`` (1 for a coordinate vector, ``P`` for a flat one; its
  inverse is the IPR), :func:`top_mass` (fraction of ``|v|^2`` on the ``m`` largest coordinates)
  and :func:`group_mass` (fraction on each parameter group).

Adam (optax / ``torch.optim.Adam`` conventions, ``eps`` outside the square root):

* :func:`train_keep_adam_state` - the teacher-student ensemble training of
  :mod:`floss_utils.curse_of_memory.student_training` (exact quadratic-form batch loss, one fresh batch per step, batched
  over members) that **returns Adam's moment estimates**, which
  :func:`floss_utils.curse_of_memory.student_training.train_ensemble` keeps to itself.
* :func:`effective_learning_rates` - the update Adam would apply to each parameter if the next
  gradient were a **unit gradient** (ZO's measurement: ``opt.update(ones, state)``):

  ``eta_i = lr (b1 m_i + (1 - b1)) / (1 - b1^(t+1)) / (sqrt((b2 v_i + (1 - b2)) / (1 - b2^(t+1))) + eps)``

  with ``m, v`` Adam's first and second moment after ``t`` steps. A parameter whose gradients
  were tiny (``m, v -> 0``) reaches the ceiling ``lr (1 - b1)/sqrt(1 - b2) = sqrt(10) lr`` (for
  ``b1 = 0.9, b2 = 0.999``, large ``t``); one whose gradients were large (``v >> 1 - b2``) has
  ``eta ~ lr (1 - b1) / sqrt(v)``: Adam's per-parameter step size is the inverse of its gradient
  scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from ..optim import adam_update
from .students import LRU, ComplexDiagonalRNN, DenseRNN, Student, params_from_lambda
from .teacher import Teacher
from .student_training import cosine_lr, kernel_error, lagged_gram, quadratic_loss

__all__ = [
    "FlatLayout",
    "flat_parameters",
    "loss_hessian",
    "residual_jacobian",
    "gauss_newton",
    "hessian_eigen",
    "numerical_rank",
    "participation_ratio",
    "eigenvector_concentration",
    "top_mass",
    "group_mass",
    "make_landscape_teacher",
    "eigenvalue_condition_numbers",
    "student_at_teacher",
    "MemoryControl",
    "memory_control",
    "mse_loss_fn",
    "AdamRun",
    "train_keep_adam_state",
    "effective_learning_rates",
    "adam_ceiling",
    "effective_lr_contrast",
]


# ------------------------------------------------------------------------- flat coordinates


@dataclass(frozen=True)
class FlatLayout:
    """The flat coordinate system of a member-batched module's parameters.

    Attributes:
        names: parameter names, in ``named_parameters()`` order.
        shapes: per-member shapes (the member axis removed).
        offsets: start of each parameter in the flat vector; ``size`` the total ``P``.
        members: ``M``.
        groups: role -> list of parameter names (``model.param_groups()`` when available,
            else one group per parameter).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int
    members: int
    groups: dict

    def slice(self, name: str) -> slice:
        """Coordinates of parameter ``name``."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))

    def labels(self) -> list[str]:
        """One label per coordinate, e.g. ``"A[0,1]"``, ``"lam_re[3]"``, ``"D"``."""
        out = []
        for name, shape in zip(self.names, self.shapes):
            if len(shape) == 0:
                out.append(name)
                continue
            for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, len(shape)).tolist():
                out.append(f"{name}[{','.join(str(i) for i in idx)}]")
        return out

    def parameter_of(self) -> list[str]:
        """The parameter name of every coordinate, ``(P,)``."""
        return [n for n, s in zip(self.names, self.shapes) for _ in range(math.prod(s))]

    def group_index(self) -> dict[str, Tensor]:
        """Role -> long tensor of the coordinates in that group (empty groups dropped)."""
        out = {}
        for role, names in self.groups.items():
            idx = [torch.arange(self.slice(n).start, self.slice(n).stop) for n in names]
            if idx:
                out[role] = torch.cat(idx)
        return out

    def boundaries(self) -> list[float]:
        """Positions between consecutive parameters on a ``(P, P)`` image (for grid lines)."""
        return [self.offsets[i] - 0.5 for i in range(1, len(self.names))]

    def ticks(self) -> tuple[list[float], list[str]]:
        """The centre of each parameter's block of coordinates and its name (axis ticks)."""
        return [o + (math.prod(s) - 1) / 2 for o, s in zip(self.offsets, self.shapes)], list(self.names)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """``(M, P)`` -> ``{name: (M, *shape)}``."""
        M = theta.shape[0]
        return {n: theta[:, o:o + math.prod(s)].reshape(M, *s) for n, s, o in zip(self.names, self.shapes, self.offsets)}


def flat_parameters(model: nn.Module) -> tuple[FlatLayout, Tensor]:
    """The layout and the current point ``theta`` ``(M, P)`` (detached) of a batched module whose
    parameters all carry a leading member axis ``M``."""
    named = list(model.named_parameters())
    if not named:
        raise ValueError("model has no parameters")
    M = named[0][1].shape[0] if named[0][1].ndim else 0
    for n, p in named:
        if p.ndim == 0 or p.shape[0] != M:
            raise ValueError(f"parameter {n!r} of shape {tuple(p.shape)} lacks the member axis of size {M}")
    names = tuple(n for n, _ in named)
    shapes = tuple(tuple(p.shape[1:]) for _, p in named)
    sizes = [math.prod(s) for s in shapes]
    offsets = tuple(int(sum(sizes[:i])) for i in range(len(sizes)))
    groups = model.param_groups() if hasattr(model, "param_groups") else {n: [n] for n in names}
    covered = [n for ns in groups.values() for n in ns]
    if sorted(covered) != sorted(names):
        raise ValueError(f"param_groups {groups} must list every parameter {list(names)} exactly once")
    layout = FlatLayout(names, shapes, offsets, int(sum(sizes)), M, dict(groups))
    theta = torch.cat([p.detach().reshape(M, -1) for _, p in named], dim=1)
    return layout, theta


class _Call(nn.Module):
    """Wraps ``fn(model)`` as a forward so ``functional_call`` can swap the parameters."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module], Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self) -> Tensor:
        return self.fn(self.model)


def _functional(model: nn.Module, fn: Callable[[nn.Module], Tensor]) -> tuple[FlatLayout, Tensor, Callable[[Tensor], Tensor]]:
    layout, theta = flat_parameters(model)
    wrapper = _Call(model, fn)

    def f(th: Tensor) -> Tensor:
        params = {f"model.{k}": v for k, v in layout.unflatten(th).items()}
        return functional_call(wrapper, params, ())

    return layout, theta, f


def _block_basis(P: int, M: int, like: Tensor) -> Tensor:
    """``(P, M, P)``: tangent ``j`` is ``e_j`` in every member's block."""
    return torch.eye(P, dtype=like.dtype, device=like.device)[:, None, :].expand(P, M, P).contiguous()


def loss_hessian(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], vectorize: bool = True) -> Tensor:
    """Hessian of each member's loss with respect to all its parameters: ``(M, P, P)``.

    Args:
        model: a member-batched module (every parameter ``(M, ...)``); members must not
            interact (the loss of member ``m`` depends on member ``m``'s parameters only).
        loss_fn: ``loss_fn(model) -> (M,)`` per-member losses (or a scalar when ``M = 1``).
        vectorize: ``vmap`` the ``P`` Hessian-vector products (``False``: a loop, less memory).
    Returns:
        ``H[m, i, j] = d^2 L_m / d theta_i d theta_j`` in the layout of :func:`flat_parameters`.
    """
    layout, theta, f = _functional(model, loss_fn)
    g = grad(lambda th: f(th).sum())

    def hvp(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v,))[1]

    basis = _block_basis(layout.size, layout.members, theta)
    cols = vmap(hvp)(basis) if vectorize else torch.stack([hvp(v) for v in basis])  # (P_j, M, P_i)
    return cols.permute(1, 2, 0).contiguous()


def residual_jacobian(model: nn.Module, residual_fn: Callable[[nn.Module], Tensor]) -> Tensor:
    """``J[m, r, j] = d r_{m,r} / d theta_j`` for residuals ``residual_fn(model) -> (M, R)``:
    ``(M, R, P)``, by ``P`` forward-mode products (the block trick of :func:`loss_hessian`)."""
    layout, theta, f = _functional(model, residual_fn)
    basis = _block_basis(layout.size, layout.members, theta)
    cols = vmap(lambda v: jvp(f, (theta,), (v,))[1])(basis)  # (P, M, R)
    return cols.permute(1, 2, 0).contiguous()


def gauss_newton(model: nn.Module, residual_fn: Callable[[nn.Module], Tensor]) -> Tensor:
    """``J^T J / R`` ``(M, P, P)``: the Hessian of ``1/2 mean_r r^2`` where the residuals vanish."""
    J = residual_jacobian(model, residual_fn)
    return J.transpose(1, 2) @ J / J.shape[1]


def hessian_eigen(H: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``(..., P)`` in descending order and eigenvectors ``(..., P, P)`` (column
    ``k`` belongs to eigenvalue ``k``) of the symmetrized ``H``."""
    if H.shape[-1] != H.shape[-2]:
        raise ValueError(f"H must be square in its last two axes, got {tuple(H.shape)}")
    w, V = torch.linalg.eigh(0.5 * (H + H.transpose(-1, -2)))
    return w.flip(-1), V.flip(-1)


def numerical_rank(H: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """How many eigenvalues of ``H`` stand above its round-off, measured against an independent
    computation ``other`` of the same matrix (e.g. the Gauss-Newton matrix at the optimum).

    By Weyl's inequality every eigenvalue of the exact matrix lies within ``||H - other||_2`` of
    ``H``'s (when ``other`` is at least as accurate); ``P eps ||H||_2`` (float64 ``eps``, ``P`` the
    size) adds the rounding of the eigensolver itself. ``H``, ``other``: ``(..., P, P)``.

    Returns:
        ``(rank, noise)``: ``(...)`` the number of eigenvalues above ``noise``, and ``noise`` itself.
    """
    if H.shape != other.shape or H.shape[-1] != H.shape[-2]:
        raise ValueError(f"H and other must be square matrices of one shape, got {tuple(H.shape)} and {tuple(other.shape)}")
    w = hessian_eigen(H)[0]
    eps = torch.finfo(torch.float64).eps
    noise = (torch.linalg.matrix_norm(H - other, ord=2)
             + H.shape[-1] * eps * torch.linalg.matrix_norm(0.5 * (H + H.transpose(-1, -2)), ord=2))
    return (w > noise[..., None]).sum(-1), noise


# ------------------------------------------------------------------------- concentration


def participation_ratio(v: Tensor, dim: int = -1) -> Tensor:
    """``(sum v_i^2)^2 / sum v_i^4`` along ``dim``: the effective number of coordinates a vector
    occupies (1 for a coordinate vector, ``k`` for ``k`` equal entries). Complex ``v`` uses
    ``|v_i|``. The inverse participation ratio is ``1 / PR``."""
    p = v.abs() ** 2
    denom = (p**2).sum(dim)
    if bool((denom == 0).any()):
        raise ValueError("participation_ratio of a zero vector is undefined")
    return p.sum(dim) ** 2 / denom


def top_mass(v: Tensor, m: int, dim: int = -1) -> Tensor:
    """Fraction of ``sum |v_i|^2`` carried by the ``m`` largest coordinates along ``dim``."""
    n = v.shape[dim]
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= n:
        raise ValueError(f"m must be an int in [1, {n}], got {m!r}")
    p = v.abs() ** 2
    return p.topk(m, dim=dim).values.sum(dim) / p.sum(dim)


def group_mass(v: Tensor, groups: dict[str, Tensor], dim: int = -1) -> dict[str, Tensor]:
    """Fraction of ``sum |v_i|^2`` on each group of coordinates (``{name: index tensor}``)."""
    p = v.abs() ** 2
    total = p.sum(dim)
    return {k: p.index_select(dim % p.ndim, idx.to(p.device)).sum(dim) / total for k, idx in groups.items()}


def eigenvector_concentration(H: Tensor, eigvecs: Tensor, k_top: int, m: int = 4,
                              n_entries: int | None = None) -> dict[str, Tensor]:
    """How concentrated a batch of Hessians and their top eigenvectors are on few coordinates.

    Args:
        H: ``(M, P, P)`` Hessians; eigvecs: ``(M, P, P)`` their eigenvectors as columns, sorted
            by decreasing eigenvalue (:func:`hessian_eigen`).
        k_top: how many top eigenvectors the participation ratio averages over.
        m: how many coordinates (and top eigenvectors) the "top mass" looks at.
        n_entries: how many of the largest Hessian entries the last measure counts (default ``P``).
    Returns:
        ``(M,)`` tensors: ``"PR top-k (mean)"`` — the mean participation ratio of the ``k_top``
        top eigenvectors; ``"top-m mass of top-m vectors"`` — the mean fraction of each of the
        ``m`` top eigenvectors' squared norm on its ``m`` largest coordinates; ``"|H|^2 on n
        largest entries"`` — the fraction of ``sum H_ij^2`` on the ``n_entries`` largest entries.
    """
    P = H.shape[-1] if n_entries is None else n_entries
    h2 = H.flatten(1) ** 2
    return {f"PR top-{k_top} (mean)": participation_ratio(eigvecs[..., :k_top], dim=-2).mean(-1),
            f"top-{m} mass of top-{m} vectors": top_mass(eigvecs[..., :m], m, dim=-2).mean(-1),
            f"|H|^2 on {P} largest entries": h2.topk(P, dim=1).values.sum(1) / h2.sum(1)}


# ----------------------------------------------------------------- the Fig. 4 teacher


def make_landscape_teacher(seed: int, hidden: int = 4, nu_min: float = 0.99, nu_max: float = 0.993,
                           dtype: torch.dtype = torch.float64, device="cpu") -> Teacher:
    """ZO's Fig. 4 teacher: a real linear RNN whose eigenvalues are ``hidden/2`` complex-conjugate
    pairs with moduli ``U[nu_min, nu_max]`` and angles ``U[0, 2 pi)``, in a random complex
    eigenbasis ``V`` (columns ``N(0, 1/8) + i N(0, 1/8)``, conjugate columns for conjugate
    eigenvalues), ``A = Re(V diag(l) V^-1)``; ``B ~ N(0, 1)``, ``C ~ N(0, 1/n)``, ``D ~ N(0, 1)``
    as in :func:`floss_utils.curse_of_memory.teacher.make_teacher`. Everything drawn from ``seed`` (CPU float64).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 2 or hidden % 2:
        raise ValueError(f"hidden must be a positive even int (conjugate pairs), got {hidden!r}")
    if not 0 < nu_min <= nu_max < 1:
        raise ValueError(f"need 0 < nu_min <= nu_max < 1, got nu_min={nu_min}, nu_max={nu_max}")
    g = torch.Generator().manual_seed(seed)
    f64, k = torch.float64, hidden // 2
    mod = nu_min + (nu_max - nu_min) * torch.rand(k, generator=g, dtype=f64)
    ang = 2 * math.pi * torch.rand(k, generator=g, dtype=f64)
    lam = torch.polar(mod, ang)
    lam = torch.cat([lam, lam.conj()])
    s = 1 / (2 * math.sqrt(2))
    V = torch.complex(torch.randn(hidden, k, generator=g, dtype=f64), torch.randn(hidden, k, generator=g, dtype=f64)) * s
    V = torch.cat([V, V.conj()], dim=1)
    A = (V @ torch.diag(lam) @ torch.linalg.inv(V)).real
    B = torch.randn(hidden, generator=g, dtype=f64)
    C = torch.randn(hidden, generator=g, dtype=f64) / math.sqrt(hidden)
    D = torch.randn((), generator=g, dtype=f64)
    return Teacher(A, B, C, D, lam, V, seed, float(nu_min), math.pi).to(device, dtype)


def eigenvalue_condition_numbers(eigvecs: Tensor) -> Tensor:
    """Condition number of each eigenvalue of ``A = V diag(l) V^-1`` (``eigvecs`` = ``V``,
    ``(..., n, n)``, columns the right eigenvectors): ``kappa_k = |V[:, k]| |V^-1[k, :]|``.

    A perturbation ``dA`` moves ``l_k`` by ``V^-1[k, :] dA V[:, k]`` to first order, so
    ``|dl_k| <= kappa_k |dA|`` (spectral or Frobenius norm), with equality for the rank-one
    ``dA`` along ``(V^-1[k, :])^H V[:, k]^H``. ``kappa_k >= 1``, and ``= 1`` for every ``k``
    exactly when ``A`` is normal. Returns ``(..., n)`` real.
    """
    if eigvecs.ndim < 2 or eigvecs.shape[-1] != eigvecs.shape[-2]:
        raise ValueError(f"eigvecs must be square matrices (..., n, n), got {tuple(eigvecs.shape)}")
    inv = torch.linalg.inv(eigvecs)
    return torch.linalg.vector_norm(eigvecs, dim=-2) * torch.linalg.vector_norm(inv, dim=-1)


def student_at_teacher(kind: str, teachers: Teacher | Sequence[Teacher]) -> Student:
    """A student with each teacher's function, one member per teacher: ``"dense"`` (the same
    ``A, B, C, D``), ``"diagonal"`` (complex diagonal RNN without normalization in the
    eigenbasis: ``lambda = eig(A)``, ``B' = V^-1 B``, ``C' = C V``) or ``"lru"`` (exp magnitude,
    exp angle with angles taken in ``(0, 2 pi)``, learned ``gamma = sqrt(1 - |lambda|^2)``,
    ``B' = V^-1 B / gamma``). Teachers of one size; dtype and device of the first teacher."""
    teachers = [teachers] if isinstance(teachers, Teacher) else list(teachers)
    if not teachers or not all(isinstance(t, Teacher) for t in teachers):
        raise TypeError("teachers must be a Teacher or a non-empty list of Teachers")
    n, dtype, dev = teachers[0].hidden, teachers[0].A.dtype, teachers[0].A.device
    if any(t.hidden != n for t in teachers):
        raise ValueError("all teachers must have the same number of hidden units")
    teachers = [t.to(dev, dtype) for t in teachers]
    seeds = list(range(len(teachers)))
    D = torch.stack([t.D.reshape(()) for t in teachers])
    if kind == "dense":
        s = DenseRNN(seeds, n, dtype=dtype, device=dev)
        with torch.no_grad():
            s.A.copy_(torch.stack([t.A for t in teachers]))
            s.B.copy_(torch.stack([t.B for t in teachers]))
            s.C.copy_(torch.stack([t.C for t in teachers]))
            s.D.copy_(D)
        return s
    if kind not in ("diagonal", "lru"):
        raise ValueError(f"kind must be 'dense', 'diagonal' or 'lru', got {kind!r}")
    lam = torch.stack([t.eigvals for t in teachers])
    Bp = torch.stack([torch.linalg.solve(t.eigvecs, t.B.to(t.eigvecs.dtype)) for t in teachers])
    Cp = torch.stack([t.C.to(t.eigvecs.dtype) @ t.eigvecs for t in teachers])
    if kind == "diagonal":
        s = ComplexDiagonalRNN(seeds, n, gamma=False, dtype=dtype, device=dev)
        with torch.no_grad():
            s.lam_re.copy_(lam.real)
            s.lam_im.copy_(lam.imag)
    else:
        s = LRU(seeds, n, magnitude="exp", angle="exp", gamma=True, dtype=dtype, device=dev)
        nu, theta = lam.abs(), torch.remainder(torch.angle(lam), 2 * math.pi)
        mag, ang = params_from_lambda(nu, theta, "exp", "exp")
        gam = torch.sqrt(1 - nu**2)
        Bp = Bp / gam
        with torch.no_grad():
            s.lam_mag.copy_(mag)
            s.lam_ang.copy_(ang)
            s.gamma_log.copy_(torch.log(gam))
    with torch.no_grad():
        s.B_re.copy_(Bp.real)
        s.B_im.copy_(Bp.imag)
        s.C_re.copy_(Cp.real)
        s.C_im.copy_(Cp.imag)
        s.D.copy_(D)
    return s


@dataclass(frozen=True)
class MemoryControl:
    """Top Hessian eigenvalue at the optimum of each student kind, for the long-memory teachers
    and for the same teachers redrawn with short memory (:func:`memory_control`).

    Attributes:
        top_long, top_short: ``{kind: (n_teachers,)}`` the largest eigenvalue of the loss Hessian
            at the teacher's own parameters.
        scale_long, scale_short: ``(n_teachers,)`` the loss of a student that outputs 0,
            ``1/2 mean(y^2)`` on the batch: the loss's scale, which Adam does not see (it ignores
            a global rescaling of the loss).
        moduli_short: the ``(nu_min, nu_max)`` of the short-memory teachers.
    """

    top_long: dict[str, Tensor]
    top_short: dict[str, Tensor]
    scale_long: Tensor
    scale_short: Tensor
    moduli_short: tuple[float, float]

    def gain(self) -> dict[str, Tensor]:
        """``{kind: (n_teachers,)}`` top eigenvalue, long memory over short."""
        return {k: self.top_long[k] / self.top_short[k] for k in self.top_long}

    def relative_gain(self) -> dict[str, Tensor]:
        """``{kind: (n_teachers,)}`` the same gain with each top eigenvalue divided by its loss scale."""
        return {k: g * self.scale_short / self.scale_long for k, g in self.gain().items()}


def _top_eigenvalues(kinds: Sequence[str], teachers: Sequence[Teacher], x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """``({kind: (n_teachers,)} top Hessian eigenvalue at the optimum, (n_teachers,) zero-output loss)``."""
    y = torch.stack([t.outputs(x) for t in teachers])
    loss = mse_loss_fn(x, y, method="kernel")
    top = {k: hessian_eigen(loss_hessian(student_at_teacher(k, teachers), loss))[0][:, 0] for k in kinds}
    return top, 0.5 * (y**2).mean(dim=(1, 2, 3))


def memory_control(teachers: Sequence[Teacher], x: Tensor, nu_min: float = 0.5, nu_max: float = 0.503,
                   kinds: Sequence[str] = ("dense", "diagonal"),
                   top_long: Optional[dict[str, Tensor]] = None) -> MemoryControl:
    """The control of "the optimum is sharp because of the memory": each teacher of
    :func:`make_landscape_teacher` redrawn from its own seed with moduli ``U[nu_min, nu_max]``
    (the same uniform draws, angles, eigenbases, ``B``, ``C`` and ``D``: only the memory changes),
    and the largest Hessian eigenvalue of each student kind at the optimum, long and short.

    Args:
        teachers: the long-memory teachers, all made by :func:`make_landscape_teacher` (one size).
        x: ``(B, T, 1)`` the fixed input batch of the Hessians (the teachers' dtype and device).
        nu_min, nu_max: moduli range of the short-memory teachers, ``0 < nu_min <= nu_max < 1``.
        kinds: student kinds of :func:`student_at_teacher`.
        top_long: the long teachers' top eigenvalues if already computed (``{kind: (n_teachers,)}``,
            from the same ``x``), else computed here.

    Returns:
        :class:`MemoryControl`; ``gain()`` and ``relative_gain()`` are per teacher.
    """
    teachers = list(teachers)
    if not teachers or not all(isinstance(t, Teacher) for t in teachers):
        raise TypeError("teachers must be a non-empty list of Teachers (from make_landscape_teacher)")
    if not kinds:
        raise ValueError("kinds must name at least one student kind")
    t0 = teachers[0]
    short = [make_landscape_teacher(t.seed, hidden=t.hidden, nu_min=nu_min, nu_max=nu_max,
                                    dtype=t0.A.dtype, device=t0.A.device) for t in teachers]
    top_computed, scale_long = _top_eigenvalues(kinds if top_long is None else (), teachers, x)
    if top_long is None:
        top_long = top_computed
    elif set(top_long) != set(kinds) or any(v.shape != (len(teachers),) for v in top_long.values()):
        raise ValueError(f"top_long must hold one (n_teachers,) = ({len(teachers)},) tensor per kind {list(kinds)}")
    top_short, scale_short = _top_eigenvalues(kinds, short, x)
    return MemoryControl(dict(top_long), top_short, scale_long, scale_short, (float(nu_min), float(nu_max)))


def mse_loss_fn(x: Tensor, y: Tensor, method: str = "kernel") -> Callable[[Student], Tensor]:
    """``loss_fn(student) -> (M,)``: ``1/2 mean_{b,t} (student(x) - y)^2`` on a fixed batch.

    ``x``: ``(B, T, 1)``; ``y``: ``(B, T, 1)`` or one target batch per member ``(M, B, T, 1)``.
    ``method``: how the student computes its outputs, ``"time"`` (the recurrence, as ZO's
    ``model.apply``) or ``"kernel"`` (causal FFT convolution with its impulse response; the
    same function to round-off, and 10-100x cheaper to differentiate twice; tested equal).
    """
    if method not in ("time", "kernel"):
        raise ValueError(f"method must be 'time' or 'kernel', got {method!r}")

    def fn(model: Student) -> Tensor:
        return 0.5 * ((model(x, method=method) - y) ** 2).mean(dim=(1, 2, 3))

    return fn


# ------------------------------------------------------------------------------- Adam


@dataclass
class AdamRun:
    """Outcome of :func:`train_keep_adam_state`. ``losses`` ``(M, steps)`` batch losses (NaN
    after a member diverged); ``m``, ``v``: Adam's moments per parameter (``{name: (M, ...)}``);
    ``step``: number of Adam steps taken (``t``); ``lr``: the learning rate of the last step
    ``(M,)``; ``diverged`` ``(M,)`` bool; ``model``: the trained student; ``history``: list of
    ``(step, {name: effective learning rates})`` when recorded."""

    losses: Tensor
    m: dict
    v: dict
    step: int
    lr: Tensor
    diverged: Tensor
    betas: tuple
    eps: float
    model: Student
    history: list

    def final_losses(self, fraction: float = 0.1) -> tuple[Tensor, Tensor]:
        """Mean batch loss over the last ``fraction`` of the steps, and over the same number of
        steps just before (``(M,)`` each): where the run ended, and whether it was still moving."""
        if not 0 < fraction <= 0.5:
            raise ValueError(f"fraction must lie in (0, 0.5], got {fraction}")
        w = max(1, int(self.losses.shape[1] * fraction))
        if 2 * w > self.losses.shape[1]:
            raise ValueError(f"{self.losses.shape[1]} steps are too few for two windows of {w}")
        return self.losses[:, -w:].mean(1), self.losses[:, -2 * w:-w].mean(1)

    def loss_trend(self, fraction: float = 0.5, per: float = 0.1) -> Tensor:
        """Whether the run is still moving: the factor by which the batch loss changes over ``per``
        of the run's steps, from a least-squares line through ``ln(batch loss)`` against the step
        over the last ``fraction`` of the steps (``(M,)``; 1: flat, 0.5: halving every ``per`` of
        training; NaN where a loss in that window is not finite and positive).

        A line through the log of every step, rather than the ratio of two window means, because
        at a constant learning rate Adam's loss near its floor spikes: a few steps can carry a
        window's mean, and two windows of a stationary run then differ by several times."""
        if not (0 < fraction <= 1 and per > 0):
            raise ValueError(f"need 0 < fraction <= 1 and per > 0, got fraction={fraction}, per={per}")
        n = self.losses.shape[1]
        w = int(n * fraction)
        if w < 2:
            raise ValueError(f"{n} steps are too few for a trend over the last {fraction} of them")
        y = self.losses[:, -w:].log()
        t = torch.arange(w, dtype=y.dtype, device=y.device)
        t = t - t.mean()
        slope = ((y - y.mean(1, keepdim=True)) * t).sum(1) / (t * t).sum()  # per step, in ln(loss)
        factor = torch.exp(slope * per * n)
        return torch.where(torch.isfinite(factor), factor, torch.full_like(factor, float("nan"))).cpu()

    def effective_learning_rates(self) -> dict[str, Tensor]:
        """:func:`effective_learning_rates` of every parameter at the end of the run
        (``{name: (M, ...)}``, CPU), with each member's last learning rate."""
        out = {}
        for n, m1 in self.m.items():
            lr = self.lr.to(m1.device, m1.dtype).view((-1,) + (1,) * (m1.ndim - 1))
            out[n] = effective_learning_rates(m1, self.v[n], self.step, lr, self.betas, self.eps).cpu()
        return out


def train_keep_adam_state(models: Student | Sequence[Student], teacher: Teacher, *, lr, steps: int, data_seed: int,
                          batch_size: int = 128, seq_len: int = 300, schedule: str = "constant",
                          lr_min: float = 1e-7, betas=(0.9, 0.999), eps: float = 1e-8,
                          record_every: int = 0) -> AdamRun | list[AdamRun]:
    """Train every member of one or several students on ``teacher`` with Adam; keep Adam's state.

    The loss of a batch is the exact quadratic form of :mod:`floss_utils.curse_of_memory.student_training`
    (``1/2 MSE`` over ``batch_size`` i.i.d. ``N(0, 1)`` sequences of length ``seq_len``, one
    fresh batch per step from ``data_seed``); the update is :func:`floss_utils.optim.adam_update`.
    Several students (e.g. a dense RNN, a complex diagonal RNN and an LRU) train on the **same**
    batches, sharing the batch's lagged Gram matrix (the costliest part of a step).

    Args:
        models: a student or a list of students (each with its own members; same dtype/device).
        lr: one value, or one per member (for a single student).
        schedule: ``"constant"`` (ZO's effective-learning-rate runs) or ``"cosine"`` (to ``lr_min``).
        record_every: if > 0, the runs' ``history`` holds the effective learning rates
            (:func:`effective_learning_rates`) every ``record_every`` steps.
    Returns:
        An :class:`AdamRun` per student (a list when ``models`` is a list). A member whose loss
        is not finite is frozen from that step on (``diverged``).
    """
    single = isinstance(models, Student)
    models = [models] if single else list(models)
    if not models or not all(isinstance(m, Student) for m in models):
        raise TypeError("models must be a floss_utils.curse_of_memory.students Student or a non-empty list of them")
    for name, val in (("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 0:
        raise ValueError(f"record_every must be an int >= 0, got {record_every!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    dtype, device = models[0].D.dtype, models[0].D.device
    t = teacher.to(device, dtype)
    K_t, D_t = t.kernel(seq_len)[None], t.D.reshape(1)
    gen = torch.Generator(device=device).manual_seed(data_seed)
    states = []
    for model in models:
        M = model.n_members
        peak = torch.as_tensor(lr, dtype=dtype).flatten().to(device)
        peak = peak.expand(M).clone() if peak.numel() == 1 else peak
        if peak.numel() != M or not bool(torch.isfinite(peak).all()) or bool((peak <= 0).any()):
            raise ValueError(f"lr must be one positive number or one per member ({M}), got {lr!r}")
        named = list(model.named_parameters())
        states.append({
            "model": model, "peak": peak, "names": [n for n, _ in named], "params": [p for _, p in named],
            "m": [torch.zeros_like(p) for _, p in named], "v": [torch.zeros_like(p) for _, p in named],
            "active": torch.ones(M, dtype=torch.bool, device=device),
            "idx": torch.zeros(M, dtype=torch.long, device=device),
            "losses": torch.full((M, steps), float("nan"), dtype=dtype, device=device),
            "lr": peak, "history": [],
        })
    for s in range(steps):
        with torch.no_grad():
            x = torch.randn(1, batch_size, seq_len, generator=gen, dtype=dtype, device=device)
            G = lagged_gram(x)
        for st in states:
            model, params, active = st["model"], st["params"], st["active"]
            loss = quadratic_loss(kernel_error(model, K_t, D_t, st["idx"], seq_len), G, st["idx"], batch_size * seq_len)
            with torch.no_grad():
                active = active & torch.isfinite(loss.detach())
                st["losses"][:, s] = torch.where(active, loss.detach(), st["losses"][:, s])
            grads = torch.autograd.grad(torch.where(active, loss, torch.zeros_like(loss)).sum(), params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else torch.nan_to_num(g) for p, g in zip(params, grads)]
            lr_s = st["peak"] if schedule == "constant" else cosine_lr(st["peak"], s, steps, lr_min)
            with torch.no_grad():
                adam_update(params, grads, st["m"], st["v"], lr=lr_s, steps=torch.full_like(st["idx"], s + 1),
                            mask=active, betas=betas, eps=eps)
            st["active"], st["lr"] = active, lr_s
            if record_every and (s + 1) % record_every == 0:
                lr_col = torch.as_tensor(lr_s, dtype=dtype, device=device)
                st["history"].append((s + 1, {
                    n: effective_learning_rates(m1, m2, s + 1, lr_col.view((-1,) + (1,) * (m1.ndim - 1)), betas, eps).cpu()
                    for n, m1, m2 in zip(st["names"], st["m"], st["v"])}))
    runs = [AdamRun(losses=st["losses"].cpu(), m=dict(zip(st["names"], st["m"])), v=dict(zip(st["names"], st["v"])),
                    step=steps, lr=torch.as_tensor(st["lr"]).cpu(), diverged=(~st["active"]).cpu(),
                    betas=tuple(betas), eps=eps, model=st["model"], history=st["history"]) for st in states]
    return runs[0] if single else runs


def effective_learning_rates(m: Tensor, v: Tensor, step: int, lr, betas=(0.9, 0.999), eps: float = 1e-8) -> Tensor:
    """Adam's update for a unit gradient from the state ``(m, v)`` after ``step`` steps (see the
    module docstring): ``lr m_hat' / (sqrt(v_hat') + eps)`` with ``m' = b1 m + (1 - b1)``,
    ``v' = b2 v + (1 - b2)``, bias-corrected with ``step + 1``. ``lr``: a number or a tensor
    broadcastable against ``m`` (e.g. ``(M, 1)`` per member). Same shape as ``m``."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if m.shape != v.shape:
        raise ValueError(f"m and v must have the same shape, got {tuple(m.shape)} and {tuple(v.shape)}")
    if bool((v < 0).any()):
        raise ValueError("v (Adam's second moment) must be >= 0")
    b1, b2 = betas
    t = step + 1
    m_hat = (b1 * m + (1 - b1)) / (1 - b1**t)
    v_hat = (b2 * v + (1 - b2)) / (1 - b2**t)
    return lr * m_hat / (torch.sqrt(v_hat) + eps)


def effective_lr_contrast(diagonal, dense) -> tuple[float, float]:
    """How much larger one group's effective learning rates are than another's, over seeds.

    ``diagonal``, ``dense``: 1-d samples (one value per seed, e.g. a parameter's median effective
    learning rate or its fraction of Adam's ceiling). Returns ``(median(diagonal) / median(dense),
    p)`` with ``p`` the exact one-sided Mann-Whitney p-value for "``diagonal`` tends to be larger"
    (its smallest value with ``n`` and ``m`` seeds is ``1 / C(n + m, n)``).
    """
    import numpy as np
    from scipy.stats import mannwhitneyu

    a = np.asarray(diagonal, dtype=float).ravel()
    b = np.asarray(dense, dtype=float).ravel()
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"need two non-empty finite samples, got {a.size} and {b.size} values")
    p = mannwhitneyu(a, b, alternative="greater", method="exact").pvalue
    return float(np.median(a) / np.median(b)), float(p)


def adam_ceiling(lr: float, step: int, betas=(0.9, 0.999), eps: float = 1e-8) -> float:
    """The unit-gradient update of a parameter that never had a gradient (``m = v = 0``):
    ``lr (1-b1)/(1-b1^(t+1)) / (sqrt((1-b2)/(1-b2^(t+1))) + eps)`` -> ``sqrt(10) lr``."""
    b1, b2 = betas
    t = step + 1
    return lr * ((1 - b1) / (1 - b1**t)) / (math.sqrt((1 - b2) / (1 - b2**t)) + eps)
