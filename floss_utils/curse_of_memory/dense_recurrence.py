"""The time-domain recurrence of member-batched dense linear RNNs, with a hand-written backward.

For ``M`` members with ``h_t = A h_{t-1} + B x_t`` (``h_{-1} = 0``) and readout ``y'_t = C h_t``
(the feed-through ``D x_t`` is added by the caller), one step of all members is **one batched
matrix product** with the augmented matrix (rows and columns ordered ``[h (n), x or y (1)]``)::

    W = [[A,     B  ],        [h_t ]   =  W  [h_{t-1}]
         [C^T A, C.B]]        [y'_t]         [x_t    ]

so the drive and the readout ride inside the product instead of being thin per-step operations.
The backward pass (BPTT) is written by hand: per step one product ``W^T [g_t; dy_t]`` (the
gradient flowing to ``h_{t-1}``) and one accumulation ``dW += [g_t; dy_t] [h_{t-1}; x_t]^T``;
autograd then carries ``dW`` to ``A``, ``B`` and ``C`` (through the three lines that build ``W``).
Compared with autograd through the plain loop (``baddbmm`` per step plus readout and drive
operations, see ``floss_utils.curse_of_memory.students.DenseRNN._run``) this removes the per-step readout,
drive and accumulation operations that took as long as the products themselves
(``benchmarks/bench_ensemble.py`` measures both against the floor of the products alone).

Memory layout, chosen for the CPU BLAS path of ``torch.bmm`` (it needs a contiguous output):
the states are stored time-major, ``(T + 1, M, n + 1, B)``, each step's block contiguous; row
``n`` of block ``t`` holds ``x_t`` before step ``t`` and ``y'_{t-1}`` after step ``t - 1``. The
states buffer is kept in a :class:`Workspace` owned by the model and reused by the next forward
once the backward has consumed it: at the benchmark size (50 members, n = 64, T = 300, B = 128)
a fresh 0.5 GB buffer per step made a training step 0.17-0.22 s slower on a CPU (page faults).

Paths not handled by the hand-written backward fall back to autograd through the plain loop,
which gives the same numbers: ``torch.func`` transforms (``grad``, ``jvp``, ``vmap``: the
Hessians of :mod:`floss_utils.curse_of_memory.landscape`), forward-mode AD, and double backward
(``create_graph=True``, where the backward differentiates through :func:`reference_scan`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
import torch.autograd.forward_ad as fwAD

__all__ = ["Workspace", "augmented_matrix", "dense_scan", "reference_scan", "fast_path_applies"]


class Workspace:
    """Holds the states buffer of :func:`dense_scan` between calls (one per model).

    A forward takes the buffer (so a second forward before the first backward allocates its
    own) and the backward gives it back. Copies of a model (``copy.deepcopy``, pickling) get an
    empty workspace: the buffer is scratch memory, not state.
    """

    def __init__(self) -> None:
        self.buffer: Optional[Tensor] = None

    def take(self, shape: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
        buf, self.buffer = self.buffer, None
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(shape, dtype=dtype, device=device)
        return buf

    def give_back(self, buf: Tensor) -> None:
        self.buffer = buf

    def __deepcopy__(self, memo) -> "Workspace":
        return Workspace()

    def __getstate__(self) -> dict:
        return {"buffer": None}

    def __repr__(self) -> str:
        held = "empty" if self.buffer is None else f"{tuple(self.buffer.shape)} {self.buffer.dtype}"
        return f"Workspace({held})"


def augmented_matrix(A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """``W = [[A, B], [C^T A, C.B]]``, ``(M, n + 1, n + 1)``, from ``A`` ``(M, n, n)``, ``B``,
    ``C`` ``(M, n)``: ``W [h_{t-1}; x_t] = [h_t; C.h_t]``."""
    Bc = B.unsqueeze(-1)
    Cr = C.unsqueeze(1)
    return torch.cat([torch.cat([A, Bc], dim=-1), torch.cat([Cr @ A, Cr @ Bc], dim=-1)], dim=1)


def reference_scan(W: Tensor, u: Tensor) -> Tensor:
    """The same map as :func:`dense_scan`, by plain differentiable operations (one ``bmm`` per
    step, autograd for the backward): ``W`` ``(M, n + 1, n + 1)``, ``u`` ``(M or 1, B, T)`` ->
    ``y'`` ``(M, B, T)``. Used for double backward; slower, and stores ``T`` state copies."""
    M, n1, _ = W.shape
    Bsz, T = u.shape[1], u.shape[2]
    h = torch.zeros(M, n1 - 1, Bsz, dtype=W.dtype, device=W.device)
    xs = u.expand(M, Bsz, T).unbind(-1)
    ys = []
    for x_t in xs:
        out = torch.bmm(W, torch.cat([h, x_t.unsqueeze(1)], dim=1))
        h = out[:, :-1]
        ys.append(out[:, -1])
    return torch.stack(ys, dim=-1)


def fast_path_applies(*tensors: Tensor) -> bool:
    """Whether :func:`dense_scan`'s hand-written backward may be used: plain (reverse-mode)
    autograd only, no ``torch.func`` transform active and no forward-mode dual tensors."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)  # private: guard its absence
    if active is None or active():
        return False
    return all(fwAD.unpack_dual(t).tangent is None for t in tensors)


def dense_scan(W: Tensor, u: Tensor, workspace: Optional[Workspace] = None) -> Tensor:
    """Readouts ``y'_t = C h_t`` of the recurrence with augmented matrix ``W`` (see the module
    docstring) for inputs ``u``.

    Args:
        W: ``(M, n + 1, n + 1)`` from :func:`augmented_matrix`.
        u: ``(M, B, T)`` one input batch per member, or ``(1, B, T)`` shared.
        workspace: where the states buffer ``(T + 1, M, n + 1, B)`` is kept between calls
            (``None``: a fresh buffer each call).
    Returns:
        ``(M, B, T)``, differentiable with respect to ``W`` and ``u``.
    """
    if W.ndim != 3 or W.shape[1] != W.shape[2] or W.shape[1] < 2:
        raise ValueError(f"W must have shape (M, n+1, n+1) with n >= 1, got {tuple(W.shape)}")
    if u.ndim != 3 or u.shape[0] not in (1, W.shape[0]):
        raise ValueError(f"u must have shape (M or 1, B, T) for M = {W.shape[0]}, got {tuple(u.shape)}")
    if u.dtype != W.dtype or u.device != W.device:
        raise ValueError(f"u ({u.dtype}, {u.device}) must match W ({W.dtype}, {W.device})")
    if u.shape[2] == 0:
        return u.new_zeros(W.shape[0], u.shape[1], 0)
    keep = torch.is_grad_enabled() and (W.requires_grad or u.requires_grad)
    return _DenseScan.apply(W, u, workspace if workspace is not None else Workspace(), keep)


def _forward_states(W: Tensor, u: Tensor, H: Tensor, keep_all: bool) -> Tensor:
    """Runs the recurrence; fills ``H`` (``(T + 1, M, n + 1, B)`` if ``keep_all``, else a
    ``(2, ...)`` ring) and returns the readouts ``(T, M, B)``."""
    M, n1, _ = W.shape
    n = n1 - 1
    Bsz, T = u.shape[1], u.shape[2]
    xs = u.permute(2, 0, 1).contiguous().expand(T, M, Bsz).unbind(0)  # time-major: rows copy contiguously
    Y = torch.empty(T, M, Bsz, dtype=W.dtype, device=W.device)
    ys = Y.unbind(0)
    blocks = H.unbind(0)
    rows = H.select(2, n).unbind(0)  # row n of each block: x_t in, y'_{t-1} out
    blocks[0][:, :n].zero_()
    rows[0].copy_(xs[0])
    bmm = torch.bmm
    for t in range(T):
        a, b = (t, t + 1) if keep_all else (t & 1, 1 - (t & 1))
        bmm(W, blocks[a], out=blocks[b])
        ys[t].copy_(rows[b])
        if t + 1 < T:
            rows[b].copy_(xs[t + 1])
    return Y


class _DenseScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, W: Tensor, u: Tensor, workspace: Workspace, keep: bool) -> Tensor:
        # keep: a graph is being recorded, so every state is stored for the backward
        M, n1, _ = W.shape
        Bsz, T = u.shape[1], u.shape[2]
        if keep:
            H = workspace.take((T + 1, M, n1, Bsz), W.dtype, W.device)
        else:
            H = torch.empty(2, M, n1, Bsz, dtype=W.dtype, device=W.device)
        Y = _forward_states(W, u, H, keep_all=keep)
        ctx.save_for_backward(W, u)
        ctx.states = H if keep else None
        ctx.workspace = workspace
        return Y.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, gy: Tensor):
        W, u = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that is itself differentiable
            if ctx.states is not None:  # not needed: reference_scan recomputes what it needs
                ctx.workspace.give_back(ctx.states)
                ctx.states = None
            return _double_backward_grads(W, u, gy)
        H = ctx.states
        if H is None:  # a second backward (retain_graph=True): the buffer went back; recompute
            M, n1, _ = W.shape
            H = torch.empty(u.shape[2] + 1, M, n1, u.shape[1], dtype=W.dtype, device=W.device)
            _forward_states(W, u, H, keep_all=True)
        dW, du = _backward(W, u, H, gy, need_du=ctx.needs_input_grad[1])
        if ctx.states is not None:
            ctx.workspace.give_back(ctx.states)
            ctx.states = None
        return (dW if ctx.needs_input_grad[0] else None), du, None, None


def _double_backward_grads(W: Tensor, u: Tensor, gy: Tensor):
    """Gradients of ``<gy, reference_scan(W, u)>`` with a graph (for ``create_graph=True``)."""
    y = reference_scan(W, u)
    inputs = [t for t in (W, u) if t.requires_grad]
    grads = torch.autograd.grad(y, inputs, gy, create_graph=True, allow_unused=True)
    it = iter(grads)
    return (next(it) if W.requires_grad else None), (next(it) if u.requires_grad else None), None, None


def _backward(W: Tensor, u: Tensor, H: Tensor, gy: Tensor, need_du: bool):
    """BPTT through the states ``H`` ``(T + 1, M, n + 1, B)``: returns ``dW`` and ``du``."""
    T = H.shape[0] - 1
    M, n1, _ = W.shape
    n = n1 - 1
    Bsz = H.shape[-1]
    dys = gy.permute(2, 0, 1).contiguous().unbind(0)  # (M, B) each, time-major
    G = torch.empty(2, M, n1, Bsz, dtype=W.dtype, device=W.device)  # [g_t; dy_t], two alternating
    gs = G.unbind(0)
    grows = G.select(2, n).unbind(0)
    blocks_T = H.mT.unbind(0)  # (M, B, n + 1) views
    WT = W.mT.contiguous()
    dW = torch.zeros_like(W)
    dX = torch.empty(T, M, Bsz, dtype=W.dtype, device=W.device) if need_du else None
    gs[0][:, :n].zero_()
    grows[0].copy_(dys[T - 1])
    k = 0
    bmm = torch.bmm
    for t in range(T - 1, -1, -1):
        dW.baddbmm_(gs[k], blocks_T[t])
        if t == 0 and not need_du:
            break
        bmm(WT, gs[k], out=gs[1 - k])  # [g_{t-1}; dx_t]
        if need_du:
            dX[t].copy_(grows[1 - k])
        if t > 0:
            grows[1 - k].copy_(dys[t - 1])
        k = 1 - k
    du = None
    if need_du:
        du = dX.permute(1, 2, 0)
        if u.shape[0] == 1 and M > 1:
            du = du.sum(0, keepdim=True)
    return dW, du
