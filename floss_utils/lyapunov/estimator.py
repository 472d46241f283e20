"""Lyapunov spectra by the QR (Benettin / Shimada-Nagashima) method, batched and differentiable.

For a map ``h_{t+1} = F(h_t, u_{t+1})`` with Jacobians ``D_t``, the ``k`` largest exponents are the
average log growth rates of nested volumes spanned by ``k`` tangent vectors::

    Q_0 orthonormal (N x k)
    for every step:  Q <- D_t Q
    every ``ons`` steps:  Q, R = qr(Q);  accumulate log|R_ii|   (after the transient)
    lambda_i = accumulated log|R_ii| / (elapsed steps * time_step)

Everything here works on a batch of ``B`` independent systems at once (states ``(B, N)``,
tangent bases ``(B, N, k)``), on any device, in float32 or float64, and stays inside autograd's
graph, so exponents can be differentiated with respect to the map's parameters.

Re-orthonormalization
---------------------
``reorth="qr"`` calls LAPACK/cuSOLVER's Householder QR. On a CPU that costs the same per matrix
whether the matrices come batched or one by one, so for many small systems it is the bottleneck.
``reorth="cholqr"`` builds the factorization from batched tensor operations instead (Cholesky QR,
:func:`cholesky_qr`): ``G = A^T A = L L^T``, ``R = L^T``, ``Q = A R^{-1}``. One pass per step is
enough for the exponents: whatever the orthogonality of the intermediate bases, the identity
``D_T ... D_1 Q_0 = Q_T R_T ... R_1`` holds by construction, so the accumulated ``log R_ii`` are
exact up to ``log vol(Q_T)``, which stays bounded because every pass re-orthonormalizes to
``O(u cond(A)^2)``. Cholesky breaks down when ``cond(A)`` approaches ``u^{-1/2}`` (about 1e8 in
float64, a few thousand in float32: strongly saturated units, full spectra). A breakdown is always
detected (failed factorization or a pivot lost to cancellation) and never returned silently.
The loop never synchronizes with the host: the breakdown test is a running maximum decided at
the end. On the CPU, where a per-step check costs little, a run that broke down is then replayed
with a check at every step and only the broken steps are redone with Householder QR; on an
accelerator the ``"auto"`` method recomputes the whole spectrum with Householder QR (with a
warning), while an explicit ``"cholqr"`` raises. ``"auto"`` picks ``"cholqr"`` in float64 and ``"qr"`` in float32.

``reorth="switch"`` (opt-in here) looks at the running breakdown record every ``SWITCH_CHECK_EVERY``
(128) steps (one host synchronization each) and, at the first breakdown, rewinds to its previous
look and runs the rest with Householder QR (``LyapunovResult.switched_at`` says from which step):
a strongly saturated full spectrum, whose Cholesky QR breaks down at a large share of its steps,
then costs one Householder run plus at most one look's interval of Cholesky steps, where
``"auto"``'s replay path costs a Cholesky run, a replay and Householder steps (measured: N = k =
400 at g = 3, 2.5x a Householder run; ``benchmarks/bench_lyapunov.py`` case 3 compares them). It
is not :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`'s default: a breakdown in one member switches the whole batch, so
a member's round-off depends on its batch-mates more than under ``"auto"``. It is
:func:`~floss_utils.lyapunov.random_networks.tanh_spectra`'s default, so every ``tanh_spectra`` call
of chapter 1 uses it (it acts only where Cholesky QR breaks down); the other chapters use
``"auto"``. Like the replay, the rewind needs a deterministic drive.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Union

import torch
from torch import Tensor

from .maps import RecurrentMap, random_orthonormal  # re-exported: the initial tangent basis

__all__ = [
    "LyapunovResult",
    "lyapunov_spectrum",
    "orthonormalize",
    "cholesky_qr",
    "random_orthonormal",
    "kaplan_yorke_dimension",
    "entropy_rate",
    "NonFiniteError",
]

Reorth = Literal["auto", "qr", "cholqr", "cholqr2", "switch"]

#: steps between two looks (host synchronizations) at the breakdown record of ``reorth="switch"``; a
#: breakdown costs at most that many steps of Cholesky QR run again with Householder QR
SWITCH_CHECK_EVERY = 128
Drive = Union[None, Tensor, Callable[[int], Optional[Tensor]]]


class NonFiniteError(FloatingPointError):
    """Raised when a state or an exponent becomes NaN/inf; the message names system and step."""


@dataclass
class LyapunovResult:
    """Output of :func:`lyapunov_spectrum`.

    Attributes:
        exponents: (B, k), per unit of time (per step, or per tau for flows), in the order of
            the QR basis (descending up to estimation noise).
        final_state: (B, N) state after the last step.
        final_basis: (B, N, k) tangent basis after the last step.
        times: (R,) elapsed time after the transient at each recorded point (if ``record``).
        history: (R, B, k) running estimate at each recorded point (if ``record``).
        reorth: the re-orthonormalization method actually used.
        fallback_steps: steps at which a Cholesky QR breakdown was redone with Householder QR.
        switched_at: the step from which ``reorth="switch"`` ran Householder QR after a Cholesky
            breakdown (``None``: Cholesky QR throughout, or another method).
    """

    exponents: Tensor
    final_state: Tensor
    final_basis: Tensor
    times: Optional[Tensor] = None
    history: Optional[Tensor] = None
    reorth: str = "qr"
    fallback_steps: int = 0
    switched_at: Optional[int] = None


# --------------------------------------------------------------------------------------------
# Orthonormalization
# --------------------------------------------------------------------------------------------


def cholesky_qr(A: Tensor, passes: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Cholesky QR of a batch of tall matrices, from batched tensor operations only.

    Args:
        A: (..., N, k) with k <= N, full column rank.
        passes: 1 (CholeskyQR) or 2 (CholeskyQR2: orthonormal to working precision when
            ``cond(A) < u^{-1/2}``).

    Returns:
        The tuple ``(Q, logdiag, info)``.

        - ``Q`` (..., N, k) with ``A = Q R``.
        - ``logdiag`` (..., k) ``log R_ii`` (R's diagonal is positive by construction).
        - ``info`` (...,) int, non-zero where a Cholesky factorization broke down or a pivot lost
          all its digits to cancellation (``L_ii^2 < 16 k u G_ii``: a condition number
          beyond ~1e7 in float64), i.e. where the result must not be trusted.
    """
    k = A.shape[-1]
    # a pivot L_ii^2 = G_ii - sum_j L_ij^2 that cancels to within a few k*u of G_ii has lost all
    # its digits (the column is numerically dependent on the previous ones): flag it
    loss = 16.0 * k * torch.finfo(A.dtype).eps
    logdiag = torch.zeros(A.shape[:-2] + A.shape[-1:], dtype=A.dtype, device=A.device)
    info = torch.zeros(A.shape[:-2], dtype=torch.int32, device=A.device)
    Q = A
    for _ in range(passes):
        G = Q.mT @ Q
        L, inf = torch.linalg.cholesky_ex(G)
        Q = torch.linalg.solve_triangular(L.mT, Q, upper=True, left=False)
        diag = torch.diagonal(L, dim1=-2, dim2=-1)
        logdiag = logdiag + torch.log(diag)
        lost = (diag * diag < loss * torch.diagonal(G, dim1=-2, dim2=-1)).any(dim=-1)
        info = torch.maximum(torch.maximum(info, inf), lost.to(torch.int32))
    return Q, logdiag, info


def orthonormalize(A: Tensor, method: str = "qr") -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """Thin QR of a batch ``A`` (..., N, k): returns ``Q``, ``log|R_ii|`` (..., k) and a
    breakdown indicator (``None`` for Householder QR, which cannot break down)."""
    if method == "qr":
        Q, R = torch.linalg.qr(A, mode="reduced")
        return Q, torch.log(torch.abs(torch.diagonal(R, dim1=-2, dim2=-1))), None
    if method == "cholqr":
        return cholesky_qr(A, passes=1)
    if method == "cholqr2":
        return cholesky_qr(A, passes=2)
    raise ValueError(f"unknown re-orthonormalization method {method!r}; use qr, cholqr or cholqr2")


def _cholesky_qr_step(A: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One Cholesky QR ``A = Q R`` (``R = L^T``) for the estimator's hot loop: ``Q``, ``log R_ii``,
    the cancellation margin (..., k), Cholesky's ``info`` (...,) and ``L``.

    The margin ``16 k u G_ii - L_ii^2`` is positive where a pivot lost all its digits to
    cancellation (same test as :func:`cholesky_qr`); together with ``info != 0`` (a failed
    factorization) it marks a breakdown. It is returned unreduced so that the loop can keep a
    running maximum in one operation per step, without a host synchronization.
    """
    G = torch.bmm(A.mT, A) if A.ndim == 3 else A.mT @ A  # bmm skips matmul's reshapes
    L, info = torch.linalg.cholesky_ex(G)
    Q = torch.linalg.solve_triangular(L.mT, A, upper=True, left=False)
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    loss = 16.0 * A.shape[-1] * torch.finfo(A.dtype).eps
    margin = torch.addcmul(loss * torch.diagonal(G, dim1=-2, dim2=-1), diag, diag, value=-1.0)
    return Q, torch.log(diag), margin, info, L


def _record_breakdown(worst_margin: Optional[Tensor], worst_info: Optional[Tensor], margin: Optional[Tensor],
                      info: Tensor) -> tuple[Optional[Tensor], Tensor]:
    """The running breakdown record of the loop (no host sync): the maximum of the cancellation
    margin by ``torch.fmax`` and the OR of ``info != 0``, so that a NaN after a breakdown cannot
    erase it (``torch.maximum`` would propagate the NaN, and a NaN margin reads as no breakdown)."""
    failed = info != 0
    worst_info = failed if worst_info is None else worst_info | failed
    if margin is not None:
        worst_margin = margin if worst_margin is None else torch.fmax(worst_margin, margin)
    return worst_margin, worst_info


def _broke_down(margin: Tensor, info: Tensor) -> Tensor:
    """(...,) bool: a Cholesky QR broke down (from :func:`_cholesky_qr_step`'s margin and info)."""
    return (margin > 0).any(dim=-1) | (info != 0)


def _orthonormalize_step(A: Tensor, method: str) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """:func:`orthonormalize` for the estimator's hot loop, with as few tensor operations as
    possible (a step of a small network is dominated by per-operation overhead, not arithmetic):
    ``Q``, ``log|R_ii|`` and, for Cholesky QR, its margin and info (else ``None, None``).
    The hand-written backward (:class:`_CholeskyQRStep`) is used only where a graph is built;
    without one the plain function skips autograd's per-call overhead (same values)."""
    if method != "cholqr":
        Q, logr, info = orthonormalize(A, method)
        if info is None:
            return Q, logr, None, None
        return Q, logr, None, info
    if torch.is_grad_enabled() and A.requires_grad:
        return _CholeskyQRStep.apply(A)
    return _cholesky_qr_step(A)[:4]


class _CholeskyQRStep(torch.autograd.Function):
    """:func:`_cholesky_qr_step` with a hand-written backward pass: the QR derivative
    (A = QR, Q thin orthonormal, R upper triangular with positive diagonal)::

        dA = (dQ + Q copyltu(M)) R^{-T},   M = R dR^T - dQ^T Q,

    where ``copyltu`` mirrors the lower triangle onto the upper one. Only ``log R_ii`` leaves
    the step, so ``dR = diag(dlog / R_ii)`` and the lower triangle of ``R dR^T`` is
    ``diag(dlog)``. Two products and one triangular solve, against the five products and three
    triangular solves autograd takes through the Gram matrix, the Cholesky factorization and the
    solve (2.2x faster backward at k = 75, N = 80, 16 systems). Differentiable once (tested
    against finite differences and against autograd through the same operations).
    """

    @staticmethod
    def forward(ctx, A: Tensor):
        Q, logr, margin, info, L = _cholesky_qr_step(A)
        ctx.save_for_backward(Q, L)
        ctx.mark_non_differentiable(margin, info)
        return Q, logr, margin, info

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dQ: Tensor, dlog: Tensor, *_unused: Optional[Tensor]):
        Q, L = ctx.saved_tensors
        M = -(dQ.mT @ Q)
        C = M.tril(-1)
        C = C + C.mT + torch.diag_embed(torch.diagonal(M, dim1=-2, dim2=-1) + dlog)
        return torch.linalg.solve_triangular(L, dQ + Q @ C, upper=False, left=False)  # X R^{-T} = X L^{-1}


# --------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------


def _drive_getter(drive: Drive, total: int, batch: int, n: int) -> Callable[[int], Optional[Tensor]]:
    if drive is None:
        return lambda t: None
    if callable(drive):
        return drive
    if not isinstance(drive, Tensor):
        raise TypeError(f"drive must be None, a tensor (T, B, N) or a callable t -> (B, N); got {type(drive).__name__}")
    if drive.ndim == 2:
        drive = drive.unsqueeze(1)
    if drive.ndim != 3 or drive.shape[-1] != n or drive.shape[1] not in (1, batch):
        raise ValueError(f"drive must have shape (T, {batch} or 1, {n}), got {tuple(drive.shape)}")
    if drive.shape[0] < total:
        raise ValueError(f"drive has {drive.shape[0]} steps but transient + steps = {total}")
    return lambda t: drive[t]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def lyapunov_spectrum(
    system: RecurrentMap,
    h0: Tensor,
    drive: Drive = None,
    *,
    steps: int,
    k: Optional[int] = None,
    transient: int = 0,
    ons: int = 1,
    q0: Optional[Tensor] = None,
    reorth: Reorth = "auto",
    record: bool = False,
    record_every: int = 1,
    generator: Optional[torch.Generator] = None,
    per_step_checks: Optional[bool] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
    engine: Literal["torch", "lapack"] = "torch",
) -> LyapunovResult:
    """The ``k`` largest Lyapunov exponents of a batch of recurrent maps.

    Args:
        system: a :class:`~floss_utils.lyapunov.maps.RecurrentMap` acting on ``B`` systems of ``N`` units.
        h0: initial states, (B, N).
        drive: external drive per step: ``None``; a tensor (T, B, N), (T, 1, N) or (T, N) with
            ``T >= transient + steps`` (step ``t`` uses ``drive[t]``); or a callable
            ``t -> (B, N)``, which must be a deterministic function of ``t`` (the ``"auto"``
            method may replay it).
        steps: number of steps averaged over, after the transient.
        k: number of exponents, ``1 <= k <= N`` (default N).
        transient: steps run (state and basis) before accumulation starts.
        ons: orthonormalization interval in steps (a QR is also forced at the end of the
            transient and at the last step).
        q0: initial tangent basis (B, N, k); default Haar-random from ``generator``.
        reorth: ``"auto"``, ``"qr"``, ``"cholqr"``, ``"cholqr2"`` or ``"switch"`` (see the module docstring).
        record: keep the running estimate at QR points after the transient.
        record_every: keep every ``record_every``-th QR point.
        generator: torch random generator for ``q0``.
        per_step_checks: after a Cholesky breakdown, replay the run with a check (a host sync)
            at every step and redo only the broken steps with Householder QR (default: True on
            CPU, False on accelerators, where the whole run is redone with Householder QR; see
            the module docstring). The loop itself never synchronizes (``"switch"`` looks every
            ``SWITCH_CHECK_EVERY`` steps and ignores this argument). A replay reruns the map
            and the drive, which must therefore be deterministic (a map that draws fresh random
            matrices from a generator that has moved on would differ on the replay).
        on_step: called as ``on_step(done, total)`` after each step (``total = transient + steps``),
            e.g. to report progress (:func:`~floss_utils.progress.report_progress`); a replay
            (after a breakdown or a non-finite value) counts from 0 again.
        engine: ``"torch"`` (batched tensor operations, any map, device and method) or
            ``"lapack"``: the same Cholesky QR loop as direct BLAS/LAPACK calls on a CPU, one
            network after another, differentiable through a hand-written adjoint
            (:mod:`~floss_utils.lyapunov.lapack_engine`). On the reference CPU it is faster for one
            network at every size measured (N = 16 to 256, 1.7-2.4x) and for batches from N = 64 on;
            the torch engine wins for batches of tiny networks (N <= 32, 16 networks), see
            ``benchmarks/results/lyapunov_engines.md`` (``benchmarks/bench_lyapunov_engines.py``). For a :class:`~floss_utils.lyapunov.maps.TanhRNN`
            in pre-activation form, float64, CPU, ``reorth`` ``"auto"``/``"cholqr"``, ``ons=1``,
            no ``record``; anything else raises ``ValueError`` saying what. Where its Cholesky QR
            breaks down or a value goes non-finite, the PyTorch engine runs instead (same rules
            as always: replay, Householder QR, or an error naming the step).

    Returns:
        A :class:`LyapunovResult`; exponents are per ``system.time_step`` unit of time.

    Raises:
        ValueError or TypeError: for impossible sizes or ill-typed arguments.
        NonFiniteError: when the state or the tangent dynamics becomes NaN/inf (names the
            system index and the first bad step).
    """
    B, N = system.batch_size, system.n_units
    k = N if k is None else k
    _check_int("k", k, 1)
    if k > N:
        raise ValueError(f"k = {k} exponents requested but the system has only N = {N} units (need k <= N)")
    _check_int("steps", steps, 1)
    _check_int("transient", transient, 0)
    _check_int("ons", ons, 1)
    _check_int("record_every", record_every, 1)
    if not isinstance(h0, Tensor) or h0.shape != (B, N):
        got = tuple(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
        raise ValueError(f"h0 must be a tensor of shape (B, N) = ({B}, {N}), got {got}")
    if not torch.isfinite(h0).all():
        raise NonFiniteError("h0 contains NaN/inf")
    if reorth not in ("auto", "qr", "cholqr", "cholqr2", "switch"):
        raise ValueError(f"reorth must be 'auto', 'qr', 'cholqr', 'cholqr2' or 'switch', got {reorth!r}")
    method = reorth
    if reorth == "auto":
        method = "cholqr" if h0.dtype == torch.float64 else "qr"

    total = transient + steps
    get_u = _drive_getter(drive, total, B, N)
    if q0 is None:
        q0 = random_orthonormal(B, N, k, dtype=h0.dtype, device=h0.device, generator=generator)
    elif q0.shape != (B, N, k):
        raise ValueError(f"q0 must have shape (B, N, k) = ({B}, {N}, {k}), got {tuple(q0.shape)}")

    if per_step_checks is None:
        per_step_checks = h0.device.type == "cpu"

    if engine not in ("torch", "lapack"):
        raise ValueError(f"engine must be 'torch' or 'lapack', got {engine!r}")
    if engine == "lapack":
        from . import lapack_engine

        if callable(drive):  # materialized once (a deterministic function of t, as the replay requires)
            steps_u = [drive(t) for t in range(total)]
            drive = None if all(u is None for u in steps_u) else torch.stack(
                [torch.zeros(B, N, dtype=h0.dtype, device=h0.device) if u is None else torch.broadcast_to(u, (B, N))
                 for u in steps_u])
        elif drive is not None:
            drive = drive.unsqueeze(1) if drive.ndim == 2 else drive  # (its shape was checked by _drive_getter)
        why = lapack_engine.unsupported(system, h0, ons=ons, record=record, reorth=reorth, q0=q0, drive=drive)
        if why:
            raise ValueError("engine='lapack' cannot run this call: " + "; ".join(why) + ". Use engine='torch'")
        out = lapack_engine.run(system, h0, q0, drive, total, transient, on_step=on_step)
        if out is not None:
            exps, h_final, q_final = out
            return LyapunovResult(exponents=exps, final_state=h_final, final_basis=q_final, reorth="cholqr")

    def run(method: str, step_checks: bool, switch_every: Optional[int] = None):
        result = _run(system, h0, q0, get_u, total, transient, ons, method, record, record_every,
                      step_checks, on_step=on_step, switch_every=switch_every)
        if result is NotImplemented:  # something went non-finite: replay step by step to name it
            result = _run(system, h0, q0, get_u, total, transient, ons, method, record,
                          record_every, step_checks, locate=True, on_step=on_step, switch_every=switch_every)
        return result

    if reorth == "switch":  # Cholesky QR until a breakdown, Householder QR after it
        return run("cholqr", False, switch_every=SWITCH_CHECK_EVERY)
    result = run(method, False)  # no host synchronization inside the loop
    if result is None and per_step_checks:  # replay, redoing each broken step with Householder QR
        result = run(method, True)
    if result is None:  # Cholesky breakdown somewhere
        if reorth != "auto":
            raise FloatingPointError(
                f"Cholesky QR broke down (a tangent basis with condition number beyond "
                f"u^-1/2 for {h0.dtype}); use reorth='qr'"
            )
        warnings.warn(
            "Cholesky QR broke down on an ill-conditioned tangent basis; recomputing the "
            "spectrum with Householder QR", RuntimeWarning, stacklevel=2,
        )
        result = run("qr", False)
        assert isinstance(result, LyapunovResult)
    return result


def _n_records(total: int, transient: int, ons: int, record_every: int) -> int:
    """How many running estimates :func:`_run` records: its QR points after the transient (every
    ``ons``-th step and the last one), every ``record_every``-th of them."""
    n_qr = (total // ons - transient // ons) + (total % ons != 0)
    return n_qr // record_every


def _checkpoint(t: int, h: Tensor, Q: Tensor, acc: Tensor, h_sum: Tensor, transient_sum: Tensor,
                first_bad: Tensor, n_qr_after: int, last_qr: int, times: list[int], fallback_steps: int) -> tuple:
    """The loop's state before step ``t``, to rewind to (the running sums updated in place are copied)."""
    return (t, h, Q, acc, h_sum.clone(), transient_sum.clone(), first_bad, n_qr_after, last_qr, len(times),
            fallback_steps)


def _breakdown_seen(worst_margin: Optional[Tensor], worst_info: Optional[Tensor]) -> bool:
    """Whether the running breakdown record holds a breakdown (a host synchronization)."""
    if worst_info is None:
        return False
    return bool((worst_info if worst_margin is None else _broke_down(worst_margin, worst_info)).any())


def _run(
    system: RecurrentMap,
    h: Tensor,
    Q: Tensor,
    get_u: Callable[[int], Optional[Tensor]],
    total: int,
    transient: int,
    ons: int,
    method: str,
    record: bool,
    record_every: int,
    step_checks: bool,
    locate: bool = False,
    on_step: Optional[Callable[[int, int], None]] = None,
    switch_every: Optional[int] = None,
):
    """The QR loop. Returns the result; ``None`` after a Cholesky breakdown that was neither redone
    step by step nor switched from (``switch_every``: see the module docstring); ``NotImplemented`` when a state or ``log R_ii`` went non-finite (cheaply
    detected through running sums), in which case the caller replays the run with
    ``locate=True``, which tracks the first bad step per system and raises
    :class:`NonFiniteError` naming it.

    With ``step_checks`` a Cholesky breakdown is tested at every step (a host synchronization)
    and that one step is redone with Householder QR; with ``switch_every``, the running breakdown
    record is looked at every that many steps and the run goes on with Householder QR from the
    last look before a breakdown; with neither, nothing in the loop synchronizes: the breakdown
    test is a running maximum, decided at the end (the caller then replays with ``step_checks``
    on a CPU, or, for ``"auto"``, recomputes with Householder QR on an accelerator)."""
    B, k = Q.shape[0], Q.shape[-1]
    acc = torch.zeros(B, k, dtype=Q.dtype, device=Q.device)
    # running sums that a NaN/inf anywhere makes non-finite for good: states at QR points, and
    # log R_ii during the transient (after it, ``acc`` itself is that sum)
    h_sum = torch.zeros_like(h)
    transient_sum = torch.zeros(B, k, dtype=Q.dtype, device=Q.device)
    first_bad = torch.full((B,), -1, dtype=torch.long, device=Q.device)
    worst_margin: Optional[Tensor] = None  # running max of the Cholesky cancellation margin
    worst_info: Optional[Tensor] = None
    # the running estimates live in one buffer allocated up front: appending one small tensor per
    # step, interleaved with the step's large temporaries, fragments the heap of a long run
    # (measured: +0.5 MB per step at N = k = 400 while a breakdown replay ran; chapter 1's first cell at paper
    # size, 11 000 steps, peaked at 2.5 GB with the list, 0.33 GB with the buffer).
    # Estimates in autograd's graph are kept one tensor each instead (rows written in place would
    # make the backward pass quadratic in the rows, and a row overwritten after a rewind would
    # leave the discarded steps in the graph)
    history: Optional[Tensor] = None
    history_rows: list[Tensor] = []
    times: list[int] = []
    n_qr_after = 0
    last_qr = 0
    fallback_steps = 0
    fused = getattr(system, "step_and_tangent", None)
    switched_at: Optional[int] = None
    reported = 0
    start = 0
    while True:
        # switch_every: check the breakdown record every that many steps (one host sync each); on a
        # breakdown, rewind to the last check and run the rest with Householder QR
        watch = switch_every is not None and method == "cholqr"
        ckpt = _checkpoint(start, h, Q, acc, h_sum, transient_sum, first_bad, n_qr_after, last_qr, times,
                           fallback_steps) if watch else None
        rewind = False
        for t in range(start, total):
            if watch and t > start and t % switch_every == 0:  # the state after step t - 1
                if _breakdown_seen(worst_margin, worst_info):
                    rewind = True
                    break
                ckpt = _checkpoint(t, h, Q, acc, h_sum, transient_sum, first_bad, n_qr_after, last_qr, times,
                                   fallback_steps)
            u = get_u(t)
            if fused is not None:  # a map that computes the step and D_t Q in one pass
                h, Q = fused(h, u, Q)
            else:
                h_next = system.step(h, u)
                Q = system.tangent(h, u, h_next, Q)
                h = h_next
            if on_step is not None and t + 1 > reported:  # a rewound chunk is not reported twice
                on_step(t + 1, total)
                reported = t + 1
            if (t + 1) % ons and t != transient - 1 and t != total - 1:
                continue
            A = Q
            Q, logr, margin, info = _orthonormalize_step(A, method)
            if info is not None:
                if step_checks:  # redo this one step with Householder QR
                    bad_qr = (info != 0) if margin is None else _broke_down(margin, info)
                    if bool(bad_qr.any()):
                        Q, logr, _ = orthonormalize(A, "qr")  # the Cholesky result leaves the graph
                        fallback_steps += 1
                else:  # no host synchronization in the loop; decide at the end
                    worst_margin, worst_info = _record_breakdown(worst_margin, worst_info, margin, info)
            if locate:  # remember the first step where anything went non-finite (no host sync)
                ok = torch.isfinite(logr).all(dim=-1) & torch.isfinite(h).all(dim=-1)
                first_bad = torch.where(ok | (first_bad >= 0), first_bad, t)
            else:
                h_sum += h.detach()
                if t < transient:
                    transient_sum += logr.detach()
            if t >= transient:
                acc = acc + logr
                n_qr_after += 1
                if record and n_qr_after % record_every == 0:
                    estimate = acc / ((t + 1 - transient) * system.time_step)
                    if estimate.requires_grad:
                        history_rows.append(estimate)
                    else:
                        if history is None:
                            history = torch.empty(_n_records(total, transient, ons, record_every), B, k,
                                                  dtype=Q.dtype, device=Q.device)
                        history[len(times)] = estimate
                    times.append(t + 1 - transient)
            last_qr = t
        else:
            rewind = watch and _breakdown_seen(worst_margin, worst_info)
        if not rewind:
            break
        (start, h, Q, acc, h_sum, transient_sum, first_bad, n_qr_after, last_qr, n_times, fallback_steps) = ckpt
        del times[n_times:], history_rows[n_times:]
        method, switched_at = "qr", start
        worst_margin = worst_info = None
    assert last_qr == total - 1

    if _breakdown_seen(worst_margin, worst_info):
        return None  # the caller falls back to Householder QR (which also locates NaN/inf)
    if not locate and not all(bool(torch.isfinite(x).all()) for x in (acc, h_sum, transient_sum)):
        return NotImplemented
    bad = first_bad >= 0
    if bool(bad.any()):
        b = int(torch.nonzero(bad)[0])
        step = int(first_bad[b])
        where = "state" if not bool(torch.isfinite(h[b]).all()) else "tangent dynamics"
        raise NonFiniteError(
            f"non-finite {where} in system b={b} (of {B}) first seen at step t={step} "
            f"(0-based, transient included); {int(bad.sum())} system(s) affected"
        )
    elapsed = (total - transient) * system.time_step
    return LyapunovResult(
        exponents=acc / elapsed,
        final_state=h,
        final_basis=Q,
        times=torch.tensor(times, dtype=Q.dtype, device=Q.device) * system.time_step if record else None,
        history=(torch.stack(history_rows) if history_rows else history[:len(times)]) if record and times else None,
        reorth=method,
        fallback_steps=fallback_steps,
        switched_at=switched_at,
    )


# --------------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------------


def kaplan_yorke_dimension(exponents: Tensor) -> Tensor:
    """Kaplan-Yorke (Lyapunov) dimension ``k* + sum_{i<=k*} lambda_i / |lambda_{k*+1}|``.

    Args:
        exponents: (..., k), any order (sorted descending here).
    Returns:
        (...,) dimension; 0 when ``lambda_1 < 0``; ``k`` when every partial sum is
        non-negative (the spectrum given is too short to bound the dimension).
    """
    lam = torch.sort(exponents, dim=-1, descending=True).values
    k = lam.shape[-1]
    csum = torch.cumsum(lam, dim=-1)
    nonneg = csum >= 0
    # sorted descending, the partial sums rise while lambda_i > 0, then fall for good:
    # the number of non-negative partial sums is k*
    kstar = nonneg.sum(dim=-1)
    idx = torch.clamp(kstar, max=k - 1)
    partial = torch.where(kstar > 0, torch.gather(csum, -1, (kstar - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1), 0.0)
    nxt = torch.gather(lam, -1, idx.unsqueeze(-1)).squeeze(-1)
    dim = kstar.to(lam.dtype) + partial / torch.abs(nxt)
    return torch.where(kstar >= k, torch.full_like(dim, float(k)), dim)


def entropy_rate(exponents: Tensor) -> Tensor:
    """Entropy rate bound (Pesin): sum of the positive exponents, (..., k) -> (...,), nats per time unit."""
    return torch.clamp(exponents, min=0).sum(dim=-1)
