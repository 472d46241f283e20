"""The QR loop of a tanh network as direct BLAS/LAPACK calls on a CPU, with its hand-written adjoint.

:func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum` with ``engine="lapack"`` runs here. The
algorithm is the estimator's Cholesky QR loop (``reorth="cholqr"``) for
:class:`~floss_utils.lyapunov.maps.TanhRNN` in its pre-activation form, step for step::

    a = tanh(x_t),  s = sech^2(x_t),  x_{t+1} = J a + b + u_{t+1}
    A = J diag(s) Q,  G = A^T A = R^T R (Cholesky),  Q <- A R^{-1},  accumulate log R_ii

but each step is five calls into SciPy's BLAS/LAPACK (``gemv``, ``gemm``, ``syrk``, ``potrf``,
``trsm``) on column-major NumPy arrays instead of about twenty PyTorch operations. For one small
network a PyTorch step costs more in per-operation dispatch than in arithmetic (N = k = 64: about
20 us of arithmetic per product, a few us of dispatch per operation, twenty operations); here the
Python between two calls is about a microsecond. Networks of a batch run one after another (the
arithmetic is the same as batched; the batched PyTorch engine amortizes dispatch over the batch
instead, which wins for batches of tiny networks: ``benchmarks/bench_lyapunov_engines.py`` measures
the crossover, ``benchmarks/results/lyapunov_engines.md``).

Gradients: the run is one node of autograd's graph, whose backward is the adjoint of the loop
written out by hand (per step: the Cholesky QR derivative of
the estimator's ``_CholeskyQRStep``, then the chain rule through
``A = J diag(s) Q`` and ``x_{t+1} = J tanh(x_t) + ...``), with respect to ``J``, the bias, the
drive, the initial state and the initial basis, from the gradients of the exponents, the final
state and the final basis. It keeps each step's state's ``tanh`` and ``sech^2``, basis and ``R`` (``(T + 1) N k + T k^2 + 2 T N`` numbers).

The breakdown test is the estimator's (a failed factorization, or a pivot with
``R_ii^2 < 16 k u G_ii``), and so is the rule for non-finite values: where either happens this
engine gives up (:func:`run` returns ``None``) and the estimator runs the PyTorch engine from
the start, which replays, falls back to Householder QR or names the first bad step exactly as
it always does. Supported: float64, ``reorth`` ``"auto"`` or ``"cholqr"``, ``ons = 1``, no
``record``, the pre-activation form, CPU tensors; :func:`unsupported` says what else is asked for.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from scipy.linalg import blas, lapack
from torch import Tensor

# internal: reached through ``lyapunov_spectrum(..., engine="lapack")``
__all__: list[str] = []


def unsupported(system: object, h0: Tensor, *, ons: int, record: bool, reorth: str, q0: Optional[Tensor] = None,
                drive: Optional[Tensor] = None) -> list[str]:
    """What of a :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum` call the LAPACK engine
    does not do (empty: it runs here); ``drive`` a tensor or None (a callable is materialized first)."""
    from .maps import TanhRNN

    why = []
    if type(system) is not TanhRNN:
        why.append(f"the map is a {type(system).__name__} (the engine runs TanhRNN only)")
    elif system.form != "preactivation":
        why.append(f"TanhRNN form={system.form!r} (the engine runs the 'preactivation' form)")
    tensors = {"h0": h0, "q0": q0, "drive": drive}
    if isinstance(system, TanhRNN):
        tensors |= {"J": system.W, "bias": system.bias}
    for name, x in tensors.items():
        if x is None:
            continue
        if x.dtype != torch.float64:
            why.append(f"{name} is {x.dtype} (the engine runs float64)")
        if x.device.type != "cpu":
            why.append(f"{name} is on {x.device} (the engine runs on a CPU)")
    if reorth not in ("auto", "cholqr"):
        why.append(f"reorth={reorth!r} (the engine runs Cholesky QR: 'auto' or 'cholqr')")
    if ons != 1:
        why.append(f"ons={ons} (the engine orthonormalizes at every step)")
    if record:
        why.append("record=True (the engine keeps no running estimates)")
    return why


def _np(x: Tensor) -> np.ndarray:
    return x.detach().numpy()


class _Trajectory:
    """What the backward pass needs of one network's run, per step ``t``: ``tanh`` and ``sech^2`` of
    the state before it (T, N), the bases (T + 1, N, k; index 0 the initial one) and the Cholesky
    factors R (T, k, k), each matrix column-major."""

    def __init__(self, total: int, n: int, k: int) -> None:
        self.a = np.empty((total, n))
        self.s = np.empty((total, n))
        self.Q = np.empty((total + 1, k, n)).transpose(0, 2, 1)  # each Q[t] column-major
        self.R = np.empty((total, k, k)).transpose(0, 2, 1)


def _forward_one(W: np.ndarray, h: np.ndarray, Q: np.ndarray, drive: Optional[np.ndarray], transient: int,
                 total: int, keep: Optional[_Trajectory], on_step: Optional[Callable[[int, int], None]]):
    """One network's loop. ``W`` (N, N) and ``Q`` (N, k) column-major, ``h`` (N,), ``drive``
    (total, N) (bias included) or None. Returns ``(sum of log R_ii after the transient, final
    state, final basis)`` or ``None`` on a breakdown or a non-finite value."""
    k = Q.shape[1]
    loss = 16.0 * k * np.finfo(np.float64).eps
    acc = np.zeros(k)
    if keep is not None:
        keep.Q[0] = Q
    for t in range(total):
        a = np.tanh(h)
        with np.errstate(over="ignore"):  # cosh overflows beyond |x| ~ 710, where sech^2 is 0 (as in torch)
            s = np.cosh(h) ** -2.0
        h_next = blas.dgemv(1.0, W, a)
        if drive is not None:
            h_next += drive[t]
        A = blas.dgemm(1.0, W, s[:, None] * Q)
        G = blas.dsyrk(1.0, A, trans=1)  # upper triangle of A^T A (the lower one is zero)
        g_diag = G.diagonal().copy()
        R, info = lapack.dpotrf(G, lower=0, clean=0, overwrite_a=1)
        r = R.diagonal()
        if info != 0 or bool((r * r < loss * g_diag).any()):
            return None  # a Cholesky breakdown: the PyTorch engine replays it (NaN makes info != 0 or lands in acc)
        Q = blas.dtrsm(1.0, R, A, side=1, lower=0)  # A R^{-1}
        if t >= transient:
            acc += np.log(r)
        if keep is not None:
            keep.a[t], keep.s[t], keep.Q[t + 1], keep.R[t] = a, s, Q, R
        h = h_next
        if on_step is not None:
            on_step(t + 1, total)
    if not (np.isfinite(acc).all() and np.isfinite(h).all()):
        return None
    return acc, h, Q


#: steps whose contributions to the gradient of J are summed in one matrix product (two per step otherwise)
_BLOCK = 32


def _backward_one(W: np.ndarray, traj: _Trajectory, drive_given: bool, transient: int, g_log: np.ndarray,
                  g_h: np.ndarray, g_Q: np.ndarray):
    """The adjoint of :func:`_forward_one` for one network: gradients with respect to ``W``, the
    drive per step (total, N; the bias's is its sum), the initial state and the initial basis,
    from ``g_log`` (k,) (the gradient of each accumulated ``log R_ii``), ``g_h`` (N,) and ``g_Q``
    (N, k) (those of the final state and basis)."""
    total, n = traj.a.shape
    k = g_log.shape[0]
    gW = np.zeros((n, n), order="F")
    g_drive = np.empty((total, n)) if drive_given else None
    gh, gQ = g_h.copy(), np.array(g_Q, order="F")  # copies: gQ is overwritten in place below
    zero = np.zeros_like(g_log)
    # the gradient of J sums gA_t (s_t Q_{t-1})^T + gh_{t+1} a_t^T over steps: blocks of steps in one product each
    gA_buf, SQ_buf = np.empty((n, _BLOCK * k), order="F"), np.empty((n, _BLOCK * k), order="F")
    gh_buf, a_buf = np.empty((n, _BLOCK), order="F"), np.empty((n, _BLOCK), order="F")
    j = 0
    for t in range(total - 1, -1, -1):
        a, s, Qp, Qn, R = traj.a[t], traj.s[t], traj.Q[t], traj.Q[t + 1], traj.R[t]
        # Cholesky QR: dA = (dQ + Q C) R^{-T}, C = copyltu(diag(dlog) - dQ^T Q)
        M = blas.dgemm(-1.0, gQ, Qn, trans_a=1)
        C = np.tril(M, -1)
        C = C + C.T
        C[np.diag_indices_from(C)] += M.diagonal() + (g_log if t >= transient else zero)
        X = blas.dgemm(1.0, Qn, C.T, beta=1.0, c=gQ, overwrite_c=1)  # C symmetric: C.T is its column-major view
        gA = blas.dtrsm(1.0, R, X, side=1, lower=0, trans_a=1, overwrite_b=1)  # X R^{-T}
        # A = W diag(s) Qp
        cols = slice(j * k, (j + 1) * k)
        gA_buf[:, cols] = gA
        np.multiply(s[:, None], Qp, out=SQ_buf[:, cols])
        Y = blas.dgemm(1.0, W, gA, trans_a=1)  # W^T gA
        gQ = s[:, None] * Y
        g_s = np.einsum("ij,ij->i", Y, Qp)
        # x_{t+1} = W tanh(x_t) + drive_t, gh the gradient of x_{t+1}
        if g_drive is not None:
            g_drive[t] = gh
        gh_buf[:, j], a_buf[:, j] = gh, a
        j += 1
        if j == _BLOCK or t == 0:
            gW = blas.dgemm(1.0, gA_buf[:, : j * k], SQ_buf[:, : j * k], trans_b=1, beta=1.0, c=gW, overwrite_c=1)
            gW = blas.dgemm(1.0, gh_buf[:, :j], a_buf[:, :j], trans_b=1, beta=1.0, c=gW, overwrite_c=1)
            j = 0
        g_a = blas.dgemv(1.0, W, gh, trans=1)
        gh = s * (g_a - 2.0 * a * g_s)  # d tanh = s, d sech^2 = -2 s tanh
    return gW, g_drive, gh, gQ


class _Run(torch.autograd.Function):
    """The finished run as one node of autograd's graph (the forward pass was computed before,
    see :func:`run`); its backward is :func:`_backward_one` per network."""

    @staticmethod
    def forward(ctx, state: dict, W: Tensor, bias: Optional[Tensor], drive: Optional[Tensor], h0: Tensor, q0: Tensor):
        ctx.state = state
        ctx.shapes = (None if bias is None else bias.shape, None if drive is None else drive.shape)
        return state["exponents"].clone(), state["final_state"].clone(), state["final_basis"].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_exp: Tensor, g_h: Tensor, g_Q: Tensor):
        st = ctx.state  # autograd passes zeros for outputs that did not reach the loss
        B, k = g_exp.shape
        W_np = st["W"]
        n = W_np[0].shape[0]
        total = st["total"]
        g_exp, g_h, g_Q = _np(g_exp) / st["elapsed"], _np(g_h), _np(g_Q)
        needs = ctx.needs_input_grad  # (state, W, bias, drive, h0, q0)
        drive_given = needs[2] or needs[3]
        gW, g_drive, gh0, gq0 = (np.zeros((B, n, n)), np.zeros((total, B, n)) if drive_given else None,
                                 np.zeros((B, n)), np.zeros((B, n, k)))
        for b in range(B):
            gW[b], gd, gh0[b], gq0[b] = _backward_one(W_np[b], st["trajectories"][b], drive_given,
                                                      st["transient"], g_exp[b], g_h[b], g_Q[b])
            if gd is not None:
                g_drive[:, b] = gd
        bias_shape, drive_shape = ctx.shapes
        as_t = lambda x: torch.from_numpy(np.ascontiguousarray(x))
        g_bias = g_dr = None
        if needs[2]:  # the bias is added at every step: the sum over steps, summed to its shape
            g_bias = as_t(g_drive.sum(0))
            g_bias = g_bias.sum(0) if len(bias_shape) == 1 else g_bias
        if needs[3]:  # steps beyond the run get zero
            full = np.zeros((drive_shape[0], B, n))
            full[:total] = g_drive
            g_dr = as_t(full.sum(1, keepdims=True) if drive_shape[1] == 1 else full)
        return (None, as_t(gW) if needs[1] else None, g_bias, g_dr, as_t(gh0) if needs[4] else None,
                as_t(gq0) if needs[5] else None)


def run(system, h0: Tensor, q0: Tensor, drive: Optional[Tensor], total: int, transient: int,
        on_step: Optional[Callable[[int, int], None]] = None):
    """The spectrum of ``system`` (a :class:`~floss_utils.lyapunov.maps.TanhRNN`, pre-activation
    form, float64, CPU) from ``h0`` (B, N) and ``q0`` (B, N, k) over ``total`` steps of which the
    first ``transient`` are not averaged; ``drive`` (T >= total, B or 1, N) or None.

    Returns ``(exponents (B, k), final state (B, N), final basis (B, N, k))`` as tensors, inside
    autograd's graph where an input requires gradients; ``None`` where a network's Cholesky QR
    broke down or a value went non-finite (the caller then runs the PyTorch engine).
    """
    B, n = h0.shape
    k = q0.shape[-1]
    W, bias = system.W, system.bias
    grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (W, bias, drive, h0, q0))
    W_np = [np.array(_np(W)[b], order="F") for b in range(B)]  # column-major copies (never views of W)
    u = None
    if drive is not None or bias is not None:
        u = np.zeros((total, B, n))
        if drive is not None:
            u += _np(drive)[:total]
        if bias is not None:
            u += _np(bias)
    exps, hs, Qs, trajs = np.empty((B, k)), np.empty((B, n)), np.empty((B, n, k)), []
    h0_np, q0_np = _np(h0), _np(q0)
    for b in range(B):
        keep = _Trajectory(total, n, k) if grad else None
        # progress over the whole batch, in steps of one network (B networks run one after another)
        report = None if on_step is None else (lambda done, _, b=b: on_step(max(1, (b * total + done) // B), total))
        out = _forward_one(W_np[b], h0_np[b].copy(), np.asfortranarray(q0_np[b]), None if u is None else u[:, b],
                           transient, total, keep, report)
        if out is None:
            return None
        acc, hs[b], Qs[b] = out
        exps[b] = acc / ((total - transient) * system.time_step)
        trajs.append(keep)
    t = lambda x: torch.from_numpy(x)
    state = {"exponents": t(exps), "final_state": t(hs), "final_basis": t(Qs)}
    if not grad:
        return state["exponents"], state["final_state"], state["final_basis"]
    state.update(W=W_np, trajectories=trajs, transient=transient, total=total,
                 elapsed=(total - transient) * system.time_step)
    return _Run.apply(state, W, bias, drive, h0, q0)
