"""Adam for ensembles: one optimizer state per member of a batch of networks.

Every parameter tensor carries the ensemble as its leading dimension ``M`` (``J`` of shape
(M, N, N), ``b`` of shape (M, N), ...). Training M networks as one batched program needs an
optimizer that treats each member exactly as if it were trained alone:

* **per-member step counts** (Adam's bias correction): members can be skipped in a step (not
  scheduled for flossing, or diverged) without advancing their state;
* **per-member, per-tensor gradient-norm clipping** (Flux's ``ClipNorm``, the public GF code):
  the norm of member m's slice of each tensor is clipped on its own;
* **per-member finiteness**: a member whose gradient is NaN/inf is reported, not updated.

The update is Adam (Kingma & Ba 2015) with torch's defaults ``betas=(0.9, 0.999)``,
``eps=1e-8`` and no weight decay; for one member it equals ``torch.optim.Adam`` (tested).
:func:`adam_update` is the update rule alone (learning rate and step count per member), for
training loops that keep Adam's moments themselves (:mod:`floss_utils.curse_of_memory.student_training`,
:mod:`floss_utils.curse_of_memory.landscape`); :class:`BatchedAdam` is the optimizer object around it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["BatchedAdam", "adam_update", "member_norms", "clip_per_member"]


def member_norms(t: Tensor) -> Tensor:
    """Euclidean norm of each member's slice: (M, ...) -> (M,)."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=-1)


def clip_per_member(grad: Tensor, max_norm: float) -> Tensor:
    """Scale each member's slice of ``grad`` (M, ...) down to norm ``max_norm`` if it is larger
    (``g <- g * max_norm / ||g||``; slices below the bound are untouched)."""
    norms = member_norms(grad)
    scale = torch.clamp(max_norm / torch.clamp(norms, min=torch.finfo(grad.dtype).tiny), max=1.0)
    return grad * scale.reshape((-1,) + (1,) * (grad.ndim - 1))


@torch.no_grad()
def adam_update(params: Sequence[Tensor], grads: Sequence[Tensor], m: Sequence[Tensor], v: Sequence[Tensor], *,
                lr: float | Tensor, steps: Tensor, mask: Tensor, betas: tuple[float, float] = (0.9, 0.999),
                eps: float = 1e-8, clip: Optional[float] = None) -> None:
    """One in-place Adam update of the members in ``mask``; the others keep parameters and moments.

    Args:
        params, grads, m, v: matching lists of ``(M, ...)`` tensors (parameters, their gradients,
            Adam's first and second moments).
        lr: one learning rate, or one per member ``(M,)``.
        steps: ``(M,)`` Adam step count of each member including this update (>= 1; the bias
            correction ``1 - beta^steps``).
        mask: ``(M,)`` bool, the members to update.
        clip: if given, each member's slice of each gradient is clipped to this norm first.

    ``eps`` is added outside the square root (torch's and optax's convention).
    """
    b1, b2 = betas
    for p, g, mi, vi in zip(params, grads, m, v):
        shape = (-1,) + (1,) * (p.ndim - 1)
        mk = mask.reshape(shape)
        g = torch.where(mk, g, torch.zeros((), dtype=g.dtype, device=g.device))
        if clip is not None:
            g = clip_per_member(g, clip)
        mi.copy_(torch.where(mk, b1 * mi + (1 - b1) * g, mi))
        vi.copy_(torch.where(mk, b2 * vi + (1 - b2) * g * g, vi))
        c1 = (1 - b1 ** steps.to(p.dtype)).reshape(shape)
        c2 = (1 - b2 ** steps.to(p.dtype)).reshape(shape)
        lr_p = lr if isinstance(lr, (int, float)) else lr.to(p.dtype).reshape(shape)
        delta = lr_p * (mi / c1) / (torch.sqrt(vi / c2) + eps)
        p.sub_(torch.where(mk, delta, torch.zeros((), dtype=p.dtype, device=p.device)))


class BatchedAdam:
    """Adam over tensors whose first dimension indexes independent ensemble members.

    Args:
        params: leaf tensors, each of shape (M, ...), same M.
        lr: learning rate: one number, or one per member ``(M,)`` (a learning-rate grid run as one
            ensemble).
        betas, eps: Adam's constants.
        clip: if given, per-member per-tensor gradient-norm bound applied before the update.

    Use :meth:`step` with the gradients (e.g. from ``torch.autograd.grad``) and an optional
    boolean mask (M,) of the members to update.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        clip: Optional[float] = None,
    ) -> None:
        params = list(params)
        if not params:
            raise ValueError("BatchedAdam needs at least one parameter tensor")
        M = params[0].shape[0]
        for p in params:
            if p.ndim < 1 or p.shape[0] != M:
                raise ValueError(f"every parameter must have the ensemble size M = {M} as its first "
                                 f"dimension; got shape {tuple(p.shape)}")
        if isinstance(lr, Tensor):
            if lr.shape != (M,) or not bool((lr > 0).all()):
                raise ValueError(f"a per-member lr must have shape ({M},) and be > 0, got shape {tuple(lr.shape)}")
            lr = lr.to(params[0].device)
        elif not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        else:
            lr = float(lr)
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}")
        self.params = params
        self.lr, self.betas, self.eps, self.clip = lr, betas, float(eps), clip
        self.n_members = M
        dev = params[0].device
        self.steps = torch.zeros(M, dtype=torch.long, device=dev)
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def finite_members(self, grads: Sequence[Tensor]) -> Tensor:
        """(M,) bool: members whose every gradient entry is finite."""
        ok = torch.ones(self.n_members, dtype=torch.bool, device=self.steps.device)
        for g in grads:
            ok = ok & torch.isfinite(g.reshape(g.shape[0], -1)).all(dim=-1)
        return ok

    @torch.no_grad()
    def step(self, grads: Sequence[Optional[Tensor]], active: Optional[Tensor] = None) -> Tensor:
        """One Adam update of the ``active`` members (default all) whose gradients are finite.

        Args:
            grads: one gradient per parameter (``None`` = zero gradient).
            active: (M,) bool mask of the members to update.
        Returns:
            (M,) bool: the members actually updated (active and finite).
        """
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        upd = self.finite_members(grads)
        if active is not None:
            upd = upd & active.to(device=upd.device, dtype=torch.bool)
        self.steps += upd.long()
        adam_update(self.params, grads, self.m, self.v, lr=self.lr, steps=self.steps.clamp(min=1), mask=upd,
                    betas=self.betas, eps=self.eps, clip=self.clip)
        return upd
