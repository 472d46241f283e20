"""Linear recurrences ``h_t = a h_{t-1} + u_t`` with a diagonal (elementwise) coefficient, all
time steps at once.

Two scans, for two shapes of work, each with its step-by-step loop as the reference it is
tested against:

=============================  =================================================================
:func:`diagonal_scan`          one coefficient per unit (``lam`` ``(..., n)``, time on axis -2):
                               the diagonal students and deep layers. Chunks of ~sqrt(T) steps run
                               in parallel, chunk ends are carried across; reference
                               :func:`diagonal_recurrence`.
:func:`linear_scan`            a coefficient shared by many sequences (time last): Monte Carlo
                               signal propagation, AR(1) inputs. Inside a chunk the recurrence is
                               one product with the Toeplitz matrix ``a^(t-s)``; reference
                               :func:`linear_scan_loop`.
=============================  =================================================================

Both are exact (no power of ``a`` is inverted), real or complex, and differentiable;
``benchmarks/bench_scan.py`` and ``bench_scan_peers.py`` measure them against the loop and
against other libraries. The dense students' recurrence (a full matrix) is
:mod:`floss_utils.curse_of_memory.dense_recurrence`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["diagonal_scan", "diagonal_recurrence", "linear_scan", "linear_scan_loop", "lower_toeplitz"]


def diagonal_recurrence(lam: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """``h_t = lam * h_{t-1} + b_t`` by a plain loop over time (the reference for the scan).

    Args:
        lam: ``(..., n)``, broadcastable against ``b[..., 0, :]``; real or complex.
        b: ``(..., T, n)`` drives.
        h0: optional initial state ``h_{-1}``, broadcastable to ``b[..., 0, :]`` (default 0).
    Returns:
        ``(..., T, n)`` states ``h_0 .. h_{T-1}``.
    """
    _check_scan_args(lam, b)
    h = torch.zeros_like(b[..., 0, :]) if h0 is None else h0 + torch.zeros_like(b[..., 0, :])
    out = []
    for b_t in b.unbind(-2):  # unbind: one backward node for all steps (indexing b[..., t, :]
        h = lam * h + b_t     # would allocate a full-size gradient per step)
        out.append(h)
    return torch.stack(out, dim=-2)


def _check_scan_args(lam: Tensor, b: Tensor) -> None:
    if not isinstance(lam, Tensor) or not isinstance(b, Tensor):
        raise TypeError("lam and b must be torch tensors")
    if b.ndim < 2:
        raise ValueError(f"b must have shape (..., T, n), got {tuple(b.shape)}")
    if lam.shape[-1:] != b.shape[-1:] and lam.shape[-1:] != (1,):
        raise ValueError(f"lam's last axis ({tuple(lam.shape)}) must match b's units ({tuple(b.shape)})")


def diagonal_scan(lam: Tensor, b: Tensor, h0: Optional[Tensor] = None, chunk: Optional[int] = None) -> Tensor:
    """``h_t = lam * h_{t-1} + b_t`` for all ``t`` at once by a chunked scan.

    Time is cut into ``T/L`` chunks of length ``L`` (default ``round(sqrt(T))``). Pass 1 runs
    the recursion from zero inside **all chunks at once** (``L`` steps on tensors ``T/L`` times
    larger than one time step); pass 2 carries the chunk-end states across chunks with
    ``lam^L`` (``T/L`` small steps); the carried state enters chunk position ``j`` as
    ``lam^(j+1) H``, added in one vectorized operation. ``2 sqrt(T)`` sequential steps instead
    of ``T`` (each of which also costs an autograd node), no power of ``lam`` is ever inverted,
    so the result equals :func:`diagonal_recurrence` to round-off for any ``lam`` (tested),
    real or complex, and it is differentiable.

    When to use which (``benchmarks/bench_scan.py``, one CPU thread, complex64): the chunked
    scan wins where a time step is a small tensor (overhead-bound: 8 x 64 states, T = 300:
    1.8x forward + backward; 4 x 32, T = 4096: 5.8x); where a time step is a large tensor the
    loop is memory-bound and the scan's extra passes cost about 2x (128 x 64 and 16 x 256). So
    with ``chunk=None`` on a CPU, steps of more than ``2048`` state elements go to
    :func:`diagonal_recurrence`; on a GPU (launch-bound) the chunked scan is always used. An
    explicit ``chunk`` always uses the chunked scan.

    Args:
        lam: ``(..., n)`` broadcastable against ``b[..., 0, :]``; real or complex.
        b: ``(..., T, n)``.
        h0: optional initial state (default 0), broadcastable to ``b[..., 0, :]``.
        chunk: chunk length ``L >= 1`` (``None``: ``round(sqrt(T))``, or the loop, see above).
    Returns:
        ``(..., T, n)`` states, same as :func:`diagonal_recurrence`.
    """
    _check_scan_args(lam, b)
    T, n = b.shape[-2], b.shape[-1]
    if chunk is None:
        per_step = math.prod(torch.broadcast_shapes(lam.shape[:-1], b.shape[:-2])) * n
        if b.device.type == "cpu" and per_step > 2048:
            return diagonal_recurrence(lam, b, h0)
        chunk = max(1, int(round(math.sqrt(T))))
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    L = min(chunk, T)
    dtype = torch.promote_types(lam.dtype, b.dtype)
    lam, b = lam.to(dtype), b.to(dtype)
    nc = -(-T // L)
    pad = nc * L - T
    if pad:
        b = torch.cat([b, b.new_zeros(*b.shape[:-2], pad, n)], dim=-2)
    bc = b.reshape(*b.shape[:-2], nc, L, n)
    lam_c = lam.unsqueeze(-2)  # broadcasts over the chunk axis
    # pass 1: every chunk from zero, in parallel over chunks
    steps = bc.unbind(-2)  # one backward node, not a full-size gradient per step
    s = steps[0]
    local = [s]
    for b_j in steps[1:]:
        s = lam_c * s + b_j
        local.append(s)
    h_loc = torch.stack(local, dim=-2)  # (..., nc, L, n)
    # powers lam^1 .. lam^L
    p, powers = lam, [lam]
    for _ in range(L - 1):
        p = p * lam
        powers.append(p)
    pw = torch.stack(powers, dim=-2)  # (..., L, n)
    # pass 2: carry chunk-end states across chunks
    H = torch.zeros_like(h_loc[..., 0, 0, :]) if h0 is None else h0.to(dtype) + torch.zeros_like(h_loc[..., 0, 0, :])
    carries = [H]
    ends = h_loc[..., L - 1, :].unbind(-2)  # chunk-end states
    for c in range(nc - 1):
        H = p * H + ends[c]
        carries.append(H)
    Hprev = torch.stack(carries, dim=-2)  # (..., nc, n): state before each chunk
    h = h_loc + pw.unsqueeze(-3) * Hprev.unsqueeze(-2)
    return h.reshape(*h.shape[:-3], nc * L, n)[..., :T, :]


def lower_toeplitz(column: Tensor) -> Tensor:
    """The lower-triangular Toeplitz matrix with first column ``column``:
    ``out[..., t, s] = column[..., t - s]`` for ``t >= s``, else 0.

    Multiplying a sequence by it is the causal convolution ``y_t = sum_{s <= t} column_{t-s} x_s``.
    Row ``t`` is a window of the reversed column padded with zeros (``unfold``): every entry is
    a copy of an entry of ``column`` (or a zero), and the backward pass sums each entry's windows.

    Args:
        column: ``(..., T)``, real or complex.
    Returns:
        ``(..., T, T)``.
    """
    T = column.shape[-1]
    padded = torch.cat([column.flip(-1), column.new_zeros(*column.shape[:-1], T - 1)], -1)  # (..., 2T - 1)
    return padded.unfold(-1, T, 1).flip(-2)


def _power_matrix(a: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(L, p)`` with ``L[..., t, s] = a^(t-s)`` for ``t >= s`` (else 0), shape ``(*a.shape, k, k)``,
    and ``p[..., t] = a^(t+1)``, shape ``(*a.shape, k)``; powers by cumulative product."""
    pw = torch.cumprod(a.unsqueeze(-1).expand(*a.shape, k), dim=-1)  # a^1 .. a^k
    pw0 = torch.cat([torch.ones_like(pw[..., :1]), pw[..., :-1]], dim=-1)  # a^0 .. a^(k-1)
    return lower_toeplitz(pw0), pw


def linear_scan(a: Tensor, u: Tensor, h0: Tensor | None = None, *, chunk: int = 16) -> Tensor:
    """All states of ``h_t = a h_{t-1} + u_t`` (``t = 0..T-1``, ``h_{-1} = h0``, default 0).

    Args:
        a: the (time-invariant) coefficient, real or complex, broadcastable to ``u.shape[:-1]``.
            Trailing singleton dimensions of ``a`` are treated as "members sharing the same
            ``a``", which is what makes the scan a cheap matrix product.
        u: the drive, shape ``(..., T)`` (time last).
        h0: initial state broadcastable to the batch shape, or ``None`` for zeros.
        chunk: steps per parallel chunk ``K`` (the work per step grows like ``K``; the number of
            sequential iterations is ``T / K``). ``|a| <= 1`` keeps every power bounded.
    Returns:
        ``h`` of shape ``(*batch, T)`` with ``batch = broadcast(a.shape, u.shape[:-1])`` and
        the common dtype of ``a`` and ``u``.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if u.dim() < 1:
        raise ValueError("u must have a time dimension (the last one)")
    a = torch.as_tensor(a, device=u.device)
    dtype = torch.promote_types(a.dtype, u.dtype)
    a, u = a.to(dtype), u.to(dtype)
    T = u.shape[-1]
    batch = torch.broadcast_shapes(a.shape, u.shape[:-1])
    nb = len(batch)
    a_full = a.reshape((1,) * (nb - a.dim()) + tuple(a.shape))
    j = 0  # trailing singleton dims of a: members sharing one coefficient
    while j < nb and a_full.shape[nb - 1 - j] == 1:
        j += 1
    lead = nb - j
    members = math.prod(batch[lead:])
    a_g = a_full.reshape(a_full.shape[:lead])  # (*group,)
    u_full = u.reshape((1,) * (nb - (u.dim() - 1)) + tuple(u.shape))
    u_full = u_full.expand(*u_full.shape[:lead], *batch[lead:], T)
    u_g = u_full.reshape(*u_full.shape[:lead], members, T)  # (*u_group, M, T)
    h_prev = torch.zeros(torch.broadcast_shapes(a_g.shape, u_g.shape[:-2]) + (members,), dtype=dtype, device=u.device)
    if h0 is not None:
        h0 = torch.as_tensor(h0, dtype=dtype, device=u.device).expand(batch)
        h_prev = h_prev + h0.reshape(*batch[:lead], members)
    out = []
    L_full, p_full = _power_matrix(a_g, min(chunk, T))
    for start in range(0, T, chunk):
        k = min(chunk, T - start)
        L, p = (L_full, p_full) if k == L_full.shape[-1] else _power_matrix(a_g, k)
        y = torch.matmul(u_g[..., start:start + k], L.transpose(-1, -2))  # (..., M, k)
        y = y + p.unsqueeze(-2) * h_prev.unsqueeze(-1)
        out.append(y)
        h_prev = y[..., -1]
    h = torch.cat(out, dim=-1)
    return h.reshape(*batch, T)


def linear_scan_loop(a: Tensor, u: Tensor, h0: Tensor | None = None) -> Tensor:
    """Reference implementation of :func:`linear_scan`: one Python step per time step."""
    a = torch.as_tensor(a, device=u.device)
    dtype = torch.promote_types(a.dtype, u.dtype)
    a, u = a.to(dtype), u.to(dtype)
    batch = torch.broadcast_shapes(a.shape, u.shape[:-1])
    h = torch.zeros(batch, dtype=dtype, device=u.device)
    if h0 is not None:
        h = h + torch.as_tensor(h0, dtype=dtype, device=u.device)
    out = []
    for t in range(u.shape[-1]):
        h = a * h + u[..., t]
        out.append(h)
    return torch.stack(out, dim=-1)
