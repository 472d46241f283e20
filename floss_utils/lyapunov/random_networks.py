"""Ready-made spectrum experiments on random tanh networks (used by the Part I chapters).

Each function builds a batch of networks (gains x seeds, or input levels x seeds), runs the
estimator of :mod:`floss_utils.lyapunov.estimator` once on the whole batch, and returns plain tensors
with the batch axes unfolded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..progress import report_progress
from .maps import RandomGaussianProduct, TanhRNN, gaussian_coupling, log_sech2
from .estimator import LyapunovResult, Reorth, lyapunov_spectrum

__all__ = ["white_noise_drive", "random_tanh_networks", "tanh_spectra", "TanhSpectra",
           "gaussian_product_spectra", "sum_rule_terms"]


def white_noise_drive(
    batch: int,
    n_units: int,
    std: float | Tensor,
    *,
    seed: int,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Optional[Callable[[int], Tensor]]:
    """White Gaussian drive ``xi_t ~ N(0, s^2)`` per unit and step, generated on the fly.

    Step ``t`` is drawn from a generator seeded with ``seed + t``, so the drive is a
    deterministic function of ``t`` (it can be replayed) and needs no (T, B, N) buffer.
    ``std`` is a scalar or a tensor (B,) (one level per system). Returns ``None`` when all
    levels are zero.
    """
    s = torch.as_tensor(std, dtype=dtype, device=device)
    if s.ndim == 1:
        if s.shape[0] != batch:
            raise ValueError(f"std has {s.shape[0]} entries for a batch of {batch}")
        s = s[:, None]
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"input std must be finite and >= 0, got {std}")
    if bool((s == 0).all()):
        return None
    gen = torch.Generator(device=device)

    def drive(t: int) -> Tensor:
        gen.manual_seed(seed * 1_000_003 + t)
        return s * torch.randn(batch, n_units, dtype=dtype, device=device, generator=gen)

    return drive


def random_tanh_networks(
    n_units: int,
    gains: Sequence[float] | Tensor,
    n_seeds: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> tuple[TanhRNN, Tensor]:
    """``len(gains) * n_seeds`` pre-activation tanh networks (gain-major order) and initial
    states ``h0 ~ N(0, 1)``. Networks of the same seed share the standard normal draw, so
    a gain sweep changes only g. Returns the batched map and h0 of shape (G*S, N)."""
    g = torch.as_tensor(gains, dtype=dtype).reshape(-1)
    G = g.shape[0]
    Z = gaussian_coupling(n_seeds, n_units, 1.0, dtype=dtype, generator=generator)  # (S, N, N)
    J = (g[:, None, None, None] * Z[None]).reshape(G * n_seeds, n_units, n_units)
    h0 = torch.randn(n_seeds, n_units, dtype=dtype, generator=generator).repeat(G, 1)
    return TanhRNN(J.to(device)), h0.to(device)


@dataclass
class TanhSpectra:
    """Spectra of a (conditions x seeds) batch of networks.

    Attributes:
        exponents: (C, S, k) per step, descending along the last axis.
        result: the raw :class:`~floss_utils.lyapunov.estimator.LyapunovResult` (batch axis flattened, condition-major).
        networks: the batched networks (C*S of them, condition-major).
    """

    exponents: Tensor
    result: LyapunovResult
    networks: TanhRNN


def tanh_spectra(
    n_units: int,
    gains: Sequence[float] | float,
    *,
    steps: int,
    transient: int,
    k: Optional[int] = None,
    input_std: Sequence[float] | float = 0.0,
    n_seeds: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    record: bool = False,
    record_every: int = 1,
    reorth: Reorth = "switch",
) -> TanhSpectra:
    """Lyapunov spectra of random tanh networks ``x_{t+1} = J tanh(x_t) + xi_{t+1}``.

    Either ``gains`` or ``input_std`` may be a sequence (the swept condition, C values); the
    other is a scalar shared by all. Everything runs as one batch of ``C * n_seeds`` networks.
    ``reorth`` is passed to :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`; the default
    ``"switch"`` (Cholesky QR until the first breakdown, then Householder QR from its last look
    before it, at most 128 steps back) suits saturated full spectra (g >= 3, k = N), whose Cholesky
    QR breaks down at a large share of the steps, and acts only where Cholesky QR breaks down; the
    drive here is deterministic in the step, which its rewind needs.

    Returns:
        :class:`TanhSpectra` with exponents of shape (C, n_seeds, k), sorted descending.
    """
    gains_seq = [float(x) for x in np.atleast_1d(np.asarray(torch.as_tensor(gains).cpu()))]
    stds_seq = [float(x) for x in np.atleast_1d(np.asarray(torch.as_tensor(input_std).cpu()))]
    if len(gains_seq) > 1 and len(stds_seq) > 1:
        raise ValueError("sweep either gains or input_std, not both")
    C = max(len(gains_seq), len(stds_seq))
    gains_full = gains_seq * C if len(gains_seq) == 1 else gains_seq
    stds_full = stds_seq * C if len(stds_seq) == 1 else stds_seq
    gen = torch.Generator().manual_seed(seed)
    net, h0 = random_tanh_networks(n_units, gains_full, n_seeds, generator=gen, dtype=dtype, device=device)
    # common random numbers: every condition of a seed sees the same standardized noise,
    # rescaled by its own std (as every condition of a seed shares the same standard-normal J)
    std = torch.tensor(stds_full, dtype=dtype, device=device).repeat_interleave(n_seeds)[:, None]
    base = white_noise_drive(n_seeds, n_units, 1.0, seed=seed + 1, dtype=dtype, device=device)
    drive = None if bool((std == 0).all()) else (lambda t: std * base(t).repeat(C, 1))
    where = f"{C * n_seeds} networks of N = {n_units}, k = {n_units if k is None else k}"
    res = lyapunov_spectrum(net, h0, drive, steps=steps, transient=transient, k=k,
                            record=record, record_every=record_every, generator=gen, reorth=reorth,
                            on_step=lambda done, total: report_progress("tanh_spectra", done, total, detail=where))
    lam = torch.sort(res.exponents, dim=-1, descending=True).values
    return TanhSpectra(lam.reshape(C, n_seeds, -1), res, net)


def gaussian_product_spectra(
    n_units: int, sigma: float, *, steps: int, n_systems: int = 4, seed: int = 0,
    dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
) -> Tensor:
    """Spectra of products of i.i.d. N(0, sigma^2/N) matrices, shape (n_systems, N), descending."""
    gen = torch.Generator(device=device).manual_seed(seed)
    m = RandomGaussianProduct(n_systems, n_units, sigma, dtype=dtype, device=device, generator=gen)
    h0 = torch.randn(n_systems, n_units, dtype=dtype, device=device, generator=gen)
    where = f"{n_systems} products of N = {n_units}"
    res = lyapunov_spectrum(m, h0, steps=steps, generator=gen,
                            on_step=lambda done, total: report_progress("gaussian_product_spectra", done, total,
                                                                        detail=where))
    return torch.sort(res.exponents, dim=-1, descending=True).values


def sum_rule_terms(
    net: TanhRNN, h0: Tensor, drive: Optional[Callable[[int], Tensor]], *, steps: int, transient: int,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Both sides of the sum rule for a pre-activation tanh network, along one trajectory.

    Left: ``sum_i lambda_i`` from the full QR spectrum (k = N). Right, computed independently
    from the same states: ``ln|det J| + (1/T) sum_t sum_i ln sech^2(x_{t,i})``.

    Returns:
        (lhs, rhs), each of shape (B,), per step.
    """
    res = lyapunov_spectrum(net, h0, drive, steps=steps, transient=transient, reorth="qr", generator=generator)
    h = h0
    log_slopes = torch.zeros(h0.shape[0], dtype=h0.dtype, device=h0.device)
    for t in range(transient + steps):
        if t >= transient:  # D_t = J diag(sech^2 x_t) acts on the state before step t
            log_slopes = log_slopes + log_sech2(h).sum(-1)
        h = net.step(h, None if drive is None else drive(t))
    rhs = torch.linalg.slogdet(net.J).logabsdet + log_slopes / steps
    return res.exponents.sum(-1), rhs
