"""The long-term Jacobian and the gradients it carries (Part I, chapter 2).

For ``h_{t+1} = F(h_t, u_{t+1})`` the long-term Jacobian is ``T_t = D_t ... D_1 = dh_t/dh_0``.
Oseledets' theorem: its singular values grow like ``exp(lambda_i t)``, so the gradient of a loss
at time ``t`` with respect to ``h_0`` (``T_t^T`` applied to the loss gradient) grows like
``exp(lambda_1 t)`` and the condition number of ``T_t`` restricted to ``k`` generic directions
grows like ``exp((lambda_1 - lambda_k) t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .maps import RecurrentMap, random_orthonormal

__all__ = ["long_term_jacobian", "log_singular_values", "log_extreme_singular_values", "gradient_norms",
           "growth_rate", "resolvable_growth_rate", "RateComparison", "finite_time_rate_tolerance",
           "FittedRateAgreement", "fitted_rate_agreement", "slope_bias_bound", "orientation_scale",
           "longest_resolved_rates"]

DriveFn = Optional[Callable[[int], Optional[Tensor]]]


def _u(drive: DriveFn, t: int) -> Optional[Tensor]:
    return None if drive is None else drive(t)


def _initial_directions(h0: Tensor, k: Optional[int], q0: Optional[Tensor],
                        generator: Optional[torch.Generator]) -> Tensor:
    """``q0`` if given, else (B, N, N) identities for ``k`` None or N, else Haar-random (B, N, k)."""
    if q0 is not None:
        return q0
    B, N = h0.shape
    if k is None or k == N:
        return torch.eye(N, dtype=h0.dtype, device=h0.device).expand(B, N, N).clone()
    return random_orthonormal(B, N, k, dtype=h0.dtype, device=h0.device, generator=generator)


def long_term_jacobian(
    system: RecurrentMap,
    h0: Tensor,
    drive: DriveFn,
    horizon: int,
    *,
    k: Optional[int] = None,
    q0: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``T_t Q_0`` for ``t = 1 .. horizon`` along the trajectory from ``h0``.

    Args:
        system: batched recurrent map (B systems, N units).
        h0: (B, N) initial states; ``drive(t)`` is the drive of step ``t`` (or ``None``).
        horizon: number of steps.
        k: number of directions (default N: the full Jacobian, ``Q_0 = I``).
        q0: (B, N, k) directions; default identity for k = N, else Haar-random.
    Returns:
        (horizon, B, N, k): ``T_t Q_0``, no re-orthonormalization (float64 holds ``exp(700)``).
    """
    B, N = h0.shape
    q0 = _initial_directions(h0, k, q0, generator)
    h, T = h0, q0
    out = []
    for t in range(horizon):
        u = _u(drive, t)
        h_next = system.step(h, u)
        T = system.tangent(h, u, h_next, T)
        h = h_next
        out.append(T)
    return torch.stack(out)


def log_singular_values(T: Tensor) -> Tensor:
    """Natural log of the singular values of a batch of matrices (..., N, k) -> (..., k),
    descending. Singular values below the float resolution (``<= 10 eps sigma_1``) are NaN
    rather than numerical noise."""
    s = torch.linalg.svdvals(T)
    floor = torch.finfo(T.dtype).eps * 10 * s[..., :1]
    return torch.where(s > floor, torch.log(s), torch.full_like(s, float("nan")))


def log_extreme_singular_values(
    system: RecurrentMap,
    h0: Tensor,
    drive: DriveFn,
    horizon: int,
    *,
    k: Optional[int] = None,
    q0: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``ln sigma_1`` and ``ln sigma_k`` of ``T_t Q_0`` for ``t = 1 .. horizon``, in log space.

    Unlike :func:`log_singular_values` of :func:`long_term_jacobian` (the product formed
    directly, so every column aligns with the leading direction and ``sigma_k`` is lost below
    ``~eps sigma_1``), this never forms the product: it re-orthonormalizes at every step,
    ``D_t Q_{t-1} = Q_t R_t``, so ``T_t Q_0 = Q_t R_t ... R_1``, and keeps the triangular product
    in graded form ``R_t ... R_1 = diag(e^l) U`` — ``l`` the accumulated ``ln|R_ii|`` (the
    QR estimate ``t lambda_i``), ``U`` upper triangular with unit-modulus diagonal, updated as
    ``U <- (diag(e^l)^-1 R_t diag(e^l)) U`` with the scale ratios ``e^(l_j - l_i)`` applied
    before any product is formed. Then, with ``m = max l`` and ``m' = min l``,

    * ``ln sigma_1 = m + ln ||diag(e^(l - m)) U||_2``,
    * ``ln sigma_k = m' - ln ||U^-1 diag(e^(m' - l))||_2``,

    both matrices having entries of order one, so neither overflows nor saturates at any
    horizon; the relative error is ``~eps cond(U)``, independent of the spread of ``l``. (The
    first-order estimate ``l_1 - l_k`` of ``ln kappa`` differs from the exact value by a term
    that stays of order one.)

    Args:
        system, h0, drive, horizon, k, q0, generator: as for :func:`long_term_jacobian`.
    Returns:
        (horizon, B, 2): ``ln sigma_1`` and ``ln sigma_k`` of ``T_t Q_0``; their difference is
        ``ln kappa(T_t Q_0)``.
    """
    B, N = h0.shape
    q0 = _initial_directions(h0, k, q0, generator)
    kk = q0.shape[-1]
    upper = torch.ones(kk, kk, dtype=torch.bool, device=h0.device).triu()
    eye = torch.eye(kk, dtype=h0.dtype, device=h0.device)
    ell = torch.zeros(B, kk, dtype=h0.dtype, device=h0.device)
    U = eye.expand(B, kk, kk).clone()
    h, Q = h0, q0
    out = []
    for t in range(horizon):
        u = _u(drive, t)
        h_next = system.step(h, u)
        Q, R = torch.linalg.qr(system.tangent(h, u, h_next, Q))
        h = h_next
        d = torch.diagonal(R, dim1=-2, dim2=-1)
        # (diag(e^l')^-1 R diag(e^l))_ij = R_ij / |R_ii| * e^(l_j - l_i), l' = l + ln|R_ii|; the
        # lower triangle is zero (masked before exp, so a large l_i - l_j never meets a 0)
        gap = torch.where(upper, ell.unsqueeze(-2) - ell.unsqueeze(-1), torch.full_like(R, -math.inf))
        U = torch.matmul(R / d.abs().unsqueeze(-1) * torch.exp(gap), U)
        ell = ell + torch.log(d.abs())
        top = ell.max(-1, keepdim=True).values
        bottom = ell.min(-1, keepdim=True).values
        s1 = torch.linalg.matrix_norm(torch.exp(ell - top).unsqueeze(-1) * U, ord=2)
        U_inv = torch.linalg.solve_triangular(U, eye.expand_as(U), upper=True)
        sk_inv = torch.linalg.matrix_norm(U_inv * torch.exp(bottom - ell).unsqueeze(-2), ord=2)
        out.append(torch.stack([top[..., 0] + torch.log(s1), bottom[..., 0] - torch.log(sk_inv)], dim=-1))
    return torch.stack(out)


def gradient_norms(
    system: RecurrentMap,
    h0: Tensor,
    drive: DriveFn,
    horizons: Sequence[int],
    readout: Tensor,
) -> Tensor:
    """``|| d(w . h_t) / d h_0 ||`` for each horizon ``t``, by backpropagation through time.

    Independent of :func:`long_term_jacobian`: autograd differentiates the unrolled forward
    pass (it equals ``|| T_t^T w ||``).

    Args:
        readout: (B, N) or (N,) readout vector ``w`` (the loss gradient w.r.t. ``h_t``).
        horizons: increasing positive step counts.
    Returns:
        (len(horizons), B) gradient norms.
    """
    horizons = list(horizons)
    if (not horizons or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in horizons)
            or any(a >= b for a, b in zip(horizons, horizons[1:]))):
        raise ValueError(f"horizons must be strictly increasing positive integers, got {horizons}")
    x0 = h0.detach().clone().requires_grad_(True)
    h, states = x0, {}
    for t in range(horizons[-1]):
        h = system.step(h, _u(drive, t))
        if t + 1 in horizons:
            states[t + 1] = h
    norms = []
    for t in horizons:
        (g,) = torch.autograd.grad((states[t] * readout).sum(), x0, retain_graph=True)
        norms.append(torch.linalg.vector_norm(g, dim=-1))
    return torch.stack(norms)


def growth_rate(t: Tensor, log_values: Tensor, t_min: float = 0.0) -> Tensor:
    """Least-squares slope of ``log_values`` against ``t`` over ``t >= t_min``.

    Args:
        t: (T,) times; log_values: (T, ...) natural logs.
    Returns:
        (...) slope per unit of ``t``.
    """
    mask = t >= t_min
    x = t[mask].to(log_values.dtype)
    y = log_values[mask]
    xc = x - x.mean()
    shape = (-1,) + (1,) * (y.ndim - 1)
    return ((xc.reshape(shape) * (y - y.mean(0))).sum(0)) / (xc * xc).sum()


def resolvable_growth_rate(t: Tensor, log_values: Tensor, t_min: float = 0.0, min_points: int = 4) -> Tensor:
    """Least-squares slope of each column of ``log_values`` against ``t`` over its finite
    points with ``t >= t_min`` (all its finite points if fewer than ``min_points`` of those).

    For logs that stop being resolvable (NaN from :func:`log_singular_values` once a singular
    value falls below the float resolution).

    Args:
        t: (T,) times; log_values: (T, C) natural logs, NaN where unresolved.
    Returns:
        (C,) slopes per unit of ``t`` (NaN for a column with fewer than 2 finite points).
    """
    import numpy as np

    out = []
    for y in log_values.T:
        ok = torch.isfinite(y)
        use = ok & (t >= t_min) if int((ok & (t >= t_min)).sum()) >= min_points else ok
        out.append(float(np.polyfit(t[use].numpy(), y[use].numpy(), 1)[0]) if int(use.sum()) >= 2 else math.nan)
    return torch.tensor(out, dtype=log_values.dtype)


@dataclass(frozen=True)
class RateComparison:
    """Seed-averaged finite-time rates against the exponents, with the tolerance they imply.

    Attributes:
        error: (C, k) ``mean_s (rate - exponent)`` per condition and index.
        tolerance: (C, k) the allowed ``|error|``: orientation + ordering bias + sampling error.
        orientation, ordering, sampling: (C, k) the three parts of ``tolerance``.
        spread: (C, k) across-seed standard deviation of ``rate - exponent``.
        n_seeds: seeds per condition; ``quantile``: the Student-t quantile of the sampling part.
    """

    error: Tensor
    tolerance: Tensor
    orientation: Tensor
    ordering: Tensor
    sampling: Tensor
    spread: Tensor
    n_seeds: int
    quantile: float

    @property
    def ok(self) -> bool:
        """Whether every ``|error|`` lies within its tolerance (NaN counts as a failure)."""
        return bool((self.error.abs() < self.tolerance).all())

    @property
    def decidable(self) -> bool:
        """Whether the comparison can reject anything at all.

        With fewer than 4 seeds the Student-t quantile of the sampling part exceeds 8 standard
        errors (over 100 with 2 seeds)."""
        return self.n_seeds >= 4

    @property
    def worst(self) -> float:
        """The largest ``|error| / tolerance`` (above 1: the comparison fails)."""
        return float((self.error.abs() / self.tolerance).max())


def finite_time_rate_tolerance(rates: Tensor, exponents: Tensor, horizon: int | Tensor, n_units: int, *,
                               alpha: float = 0.05) -> RateComparison:
    """How far the finite-time rates ``(1/t) ln sigma_i(T_t Q_0)`` may lie from the exponents
    ``lambda_i`` at horizon ``t``, seed-averaged, given the chapter's own sizes.

    ``rate - lambda_i`` has three parts, each bounded here:

    * **orientation** (``O(1/t)``, deterministic sign): ``Q_0`` is a random ``k``-frame in
      ``N`` dimensions, so its overlap with the ``i``-th Oseledets direction beyond the first
      ``i - 1`` is ``chi_{k-i+1} / sqrt(N)``; ``E ln`` of it is ``-ln(N)/2 + (psi((k-i+1)/2) + ln 2)/2``,
      at most ``ln(N)/2 + 0.64`` in size (``i = k``). Bound: ``(ln(N)/2 + 0.64) / t``.
    * **ordering** (``O(1/sqrt t)``): singular values come sorted. When the finite-time
      fluctuations (standard deviation ``s`` per network) exceed the spacing of the exponents,
      the ``i``-th largest rate is not the rate of the ``i``-th direction; since sorting moves no
      entry by more than the largest fluctuation, the bias is at most
      ``E max_j |s xi_j| <= s sqrt(2 ln 2k)`` (``k`` Gaussian fluctuations, any correlation).
      ``s`` is the across-seed spread of ``rate - lambda`` (largest over ``i`` per condition).
    * **sampling**: the seed mean's standard error ``s_i / sqrt(n)`` times the two-sided
      Student-t quantile at ``alpha``, Bonferroni-corrected over the ``C k`` comparisons.

    Args:
        rates: (C, n, k) finite-time rates per condition, seed and index (NaN: unresolved).
        exponents: (C, n, k) the exponents of the same networks (e.g. QR estimates).
        horizon: ``t``, or (C, k) horizons, one per condition and index (see
            :func:`longest_resolved_rates`); n_units: ``N``.
        alpha: family-wise level of the sampling part.
    Returns:
        :class:`RateComparison` (``.ok``: every ``|error| < tolerance``).
    """
    from scipy import stats

    if rates.shape != exponents.shape or rates.ndim != 3:
        raise ValueError(f"rates and exponents must both be (C, n, k), got {tuple(rates.shape)}, {tuple(exponents.shape)}")
    C, n, k = rates.shape
    if n < 2:
        raise ValueError("the seed spread needs at least 2 seeds per condition")
    dev = (rates - exponents).to(torch.float64)
    error = dev.mean(1)
    spread = dev.std(1, unbiased=True)
    t = torch.as_tensor(horizon, dtype=error.dtype, device=error.device)
    orientation = (orientation_scale(n_units) / t).expand_as(error).clone()
    ordering = math.sqrt(2 * math.log(2 * k)) * spread.amax(1, keepdim=True).expand_as(error)
    q = float(stats.t.ppf(1 - alpha / (2 * C * k), n - 1))
    sampling = q * spread / math.sqrt(n)
    return RateComparison(error=error, tolerance=orientation + ordering + sampling, orientation=orientation,
                          ordering=ordering, sampling=sampling, spread=spread, n_seeds=n, quantile=q)


@dataclass(frozen=True)
class FittedRateAgreement:
    """Fitted growth rates (one per network) against the exponents of the same networks.

    Attributes:
        error: (C,) seed mean of ``rate - exponent``.
        spread: (C,) standard deviation over seeds of ``rate - exponent``: one network's
            finite-time fluctuation at this horizon.
        bias: the allowance for the slope's bias from the offset's transient,
            ``1.5 offset_range / window`` (a conservative scale, not a theorem: see
            :func:`fitted_rate_agreement`).
        tolerance: (C,) the seed mean's bound, ``bias + q * spread / sqrt(n)``.
        band: (C,) one network's bound, ``bias + q_1 * spread * sqrt(1 + 1/n)``: the prediction
            bound for the deviation of one further network of the same condition (family-wise over
            ``C n`` networks); a network whose ``|exponent|`` is inside it cannot be told from
            ``exponent = 0`` by a fitted rate at this horizon. (It is not a test of the networks the
            spread was measured on: within a sample no deviation can exceed ``spread (n-1)/sqrt(n)``.)
        quantile, band_quantile: ``q`` (two-sided Student-t at ``alpha``, Bonferroni over the ``C``
            conditions) and ``q_1`` (the same over all ``C n`` networks), ``n - 1`` degrees of freedom.
        n_seeds: ``n``.
    """

    error: Tensor
    spread: Tensor
    bias: float
    tolerance: Tensor
    band: Tensor
    quantile: float
    band_quantile: float
    n_seeds: int

    @property
    def ok(self) -> bool:
        """Every condition's seed-mean error inside its tolerance."""
        return bool((self.error.abs() < self.tolerance).all())


def slope_bias_bound(offset_range: float, window: float) -> float:
    """The largest least-squares slope of a function whose values span at most ``offset_range``
    over an evenly sampled window of length ``window``: ``1.5 offset_range / window`` (the
    extreme is a step at the window's middle: ``B (W/2)^2 / 2`` over ``W^3 / 12``)."""
    if offset_range < 0 or window <= 0:
        raise ValueError(f"need offset_range >= 0 and window > 0, got {offset_range}, {window}")
    return 1.5 * offset_range / window


def fitted_rate_agreement(rates: Tensor, exponents: Tensor, *, window: float, offset_range: float,
                          alpha: float = 0.05) -> FittedRateAgreement:
    """Do least-squares growth rates (:func:`growth_rate`) agree with the exponents?

    By Oseledets' theorem ``ln ||T_t^T w|| = lambda_1 t + c_t + o(t)``, where the offset ``c_t``
    (the log of ``w``'s overlap with the leading direction, and the finite-time correction of
    ``ln sigma_1``) settles to a distribution that does not drift with ``t``. A slope fitted over
    a window of length ``W`` then differs from ``lambda_1`` by (i) each network's finite-time
    scatter, which the seeds measure, and (ii) a bias from what is left of the offset's
    transient in the window: :func:`slope_bias_bound` ``(B, W)`` if the offset's mean moves by at
    most ``B`` inside the window. Here ``B`` is taken as the size of the offset itself, the
    orientation scale of :func:`finite_time_rate_tolerance`, ``ln(N)/2 + 0.64`` per log-overlap
    (twice that for a ratio of two singular values, e.g. the condition number, whose limit is
    ``lambda_1 - lambda_k``): a conservative allowance (the transient cannot move the mean by more
    than its whole size, most of it is over before the window starts), not a theorem about the
    transient. With it the check detects a bias of the order of ``bias`` and more, not a finer
    one; ``bias`` is reported so the reader sees what the tolerance is made of. The check is a
    two-sided one-sample t-test per condition on ``rate - exponent`` (Bonferroni over the
    conditions) with ``bias`` added to its tolerance.

    Args:
        rates, exponents: (C, n) the fitted rates and the exponents (or their combination) of the
            same ``n`` networks in each of ``C`` conditions.
        window: length of the fitted window (in the rates' time unit).
        offset_range: ``B``, the largest span of the offset over the window.
        alpha: family-wise level.
    """
    from scipy import stats

    if rates.shape != exponents.shape or rates.ndim != 2:
        raise ValueError(f"rates and exponents must both be (C, n), got {tuple(rates.shape)}, {tuple(exponents.shape)}")
    C, n = rates.shape
    if n < 2:
        raise ValueError("the seed spread needs at least 2 seeds per condition")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    dev = (rates - exponents).to(torch.float64)
    if not bool(torch.isfinite(dev).all()):
        raise ValueError("rates and exponents must be finite")
    bias = slope_bias_bound(offset_range, window)
    spread = dev.std(1, unbiased=True)
    q = float(stats.t.ppf(1 - alpha / (2 * C), n - 1))
    q1 = float(stats.t.ppf(1 - alpha / (2 * C * n), n - 1))
    return FittedRateAgreement(error=dev.mean(1), spread=spread, bias=bias, tolerance=bias + q * spread / math.sqrt(n),
                               band=bias + q1 * spread * math.sqrt(1 + 1 / n), quantile=q, band_quantile=q1, n_seeds=n)


def orientation_scale(n_units: int) -> float:
    """``ln(N)/2 + 0.64``: the largest expected size of the log-overlap of a random direction with
    a fixed one in ``N`` dimensions (see :func:`finite_time_rate_tolerance`)."""
    return 0.5 * math.log(n_units) + 0.64


def longest_resolved_rates(log_sv: Tensor) -> tuple[Tensor, Tensor]:
    """Finite-time rates ``ln sigma_i(T_t Q_0) / t`` at the longest horizon where they are resolved.

    Without re-orthonormalization ``T_t Q_0`` carries ``sigma_i`` only while
    ``sigma_i / sigma_1 > 10 eps`` (:func:`log_singular_values` gives NaN beyond): for a gap
    ``lambda_1 - lambda_i`` that is ``t < ln(1 / (10 eps)) / (lambda_1 - lambda_i)`` (about 34.5 /
    gap in float64). Per condition and index, the horizon used is the longest ``t`` up to which
    every seed's ``sigma_i`` stays resolved.

    Args:
        log_sv: (T, C, n, k) logs of the singular values at ``t = 1 .. T`` (NaN: unresolved).
    Returns:
        rates (C, n, k) and the horizons used (C, k), as float (0 where none is resolved: rate NaN).
    """
    T = log_sv.shape[0]
    ok = torch.isfinite(log_sv).all(2)  # (T, C, k): every seed resolved
    run = torch.cumprod(ok.to(torch.int64), 0)  # 1 while resolved since t = 1
    t_used = run.sum(0)  # (C, k): the longest resolved prefix
    idx = (t_used - 1).clamp(min=0)  # (C, k)
    gathered = log_sv.gather(0, idx[None, :, None, :].expand(1, *log_sv.shape[1:]))[0]  # (C, n, k)
    t_f = t_used.to(log_sv.dtype)
    rates = torch.where(t_used[:, None, :] > 0, gathered / t_f.clamp(min=1)[:, None, :],
                        torch.full_like(gathered, float("nan")))
    return rates, t_f
