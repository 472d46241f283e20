"""Sharpness: the top Hessian eigenvalue of a per-member loss, for whole populations at once.

* :func:`lanczos_top_eigenvalue` - the largest (algebraic) eigenvalue of a symmetric operator
  given only as a batched matrix-vector product ``(M, P) -> (M, P)``, by Lanczos with full
  re-orthogonalization (one Krylov space per member, all members in one tensor program).
* :func:`hvp_operator` - Hessian-vector products of a per-member loss ``f(theta) -> (M,)`` at
  ``theta`` ``(M, P)``: forward-mode derivative of the reverse-mode gradient
  (``torch.func.jvp`` of ``torch.func.grad``). Members are independent, so the Hessian of the
  summed loss is block-diagonal and one product gives every member's.
* :func:`sharpness` - the two combined: the top Hessian eigenvalue per member.
* :func:`flatten`, :func:`unflatten` - parameter tensors ``(M, ...)`` to and from ``(M, P)``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.func import grad, jvp

from ..common import seeded_generator

__all__ = ["lanczos_top_eigenvalue", "hvp_operator", "sharpness", "flatten", "unflatten", "LANCZOS"]

#: generator purpose of the Lanczos start vectors (seeded_generator(seed, LANCZOS))
LANCZOS = 23


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
