"""Input sequences for Part II of the book (Zucchet & Orvieto): batched, seeded, device-agnostic.

* :func:`ar1_inputs` - Gaussian AR(1) sequences with ``R_x(Delta) = rho^|Delta|`` (unit
  variance, stationary from the first step), any batch shape, one ``rho`` per sequence or shared.
* :func:`iid_inputs` - i.i.d. Gaussian inputs with mean ``mu`` and std ``sigma``.
* :func:`fitted_autocorrelation_inputs` - Gaussian inputs of shape ``(batch, T, channels)``
  whose autocorrelation per coordinate is ZO's fit to BERT embeddings of Wikipedia,
  ``R(Delta) = 0.332 delta_{Delta,0} + 0.0431 * 0.99700525^|Delta|``: a white part plus an
  independent AR(1) part.
* :func:`structured_embedding_inputs` - the same per-coordinate autocorrelation around a
  **non-zero mean** vector, with **correlated coordinates** (a shared low-rank part): the two
  features of real token embeddings that the fitted inputs leave out (chapter 7's second input
  variant).

Random numbers are drawn from ``generator`` on the generator's own device and then moved to
``device``, so a CPU generator gives the same sequences on every device. The AR(1) filter is a
chunked parallel scan (:func:`floss_utils.curse_of_memory.scans.linear_scan`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "ar1_inputs",
    "iid_inputs",
    "fitted_autocorrelation_inputs",
    "fitted_autocorrelation",
    "structured_embedding_inputs",
    "StructuredInputs",
    "FITTED_WHITE_VARIANCE",
    "FITTED_AR1_VARIANCE",
    "FITTED_AR1_COEFFICIENT",
]

#: ZO's fit of the autocorrelation of BERT embeddings (per coordinate).
FITTED_WHITE_VARIANCE = 0.332
#: the variance of the fit's AR(1) part.
FITTED_AR1_VARIANCE = 0.0431
#: the coefficient of the fit's AR(1) part.
FITTED_AR1_COEFFICIENT = 0.99700525


def _randn(shape: Sequence[int], generator: torch.Generator | None, dtype: torch.dtype,
           device: str | torch.device) -> Tensor:
    gen_device = generator.device if generator is not None else "cpu"
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gen_device).to(device)


def ar1_inputs(
    shape: Sequence[int],
    steps: int,
    rho: float | Tensor,
    *,
    x_prev: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Stationary unit-variance AR(1) sequences ``x_t = rho x_{t-1} + sqrt(1 - rho^2) eps_t``.

    Args:
        shape: batch shape; the result has shape ``(*shape, steps)`` (time last).
        rho: correlation per step in [0, 1], a float or a tensor broadcastable to ``shape``
            (e.g. ``(R, 1)`` for ``R`` correlations x ``n`` samples).
        x_prev: the value just before the first step, to continue a sequence chunk by chunk;
            ``None`` starts from the stationary law ``x_0 ~ N(0, 1)``.
    Returns:
        ``x`` with ``E[x_t x_{t+Delta}] = rho^|Delta|``.
    """
    from .scans import linear_scan  # the AR(1) filter is a linear scan

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    shape = tuple(shape)
    rho = torch.as_tensor(rho, dtype=dtype, device=device)
    if bool(((rho < 0) | (rho > 1)).any()):
        raise ValueError(f"rho must lie in [0, 1], got {rho.tolist()}")
    try:
        torch.broadcast_shapes(rho.shape, shape)
    except RuntimeError:
        raise ValueError(f"rho of shape {tuple(rho.shape)} does not broadcast to shape {shape}") from None
    eps = _randn(shape + (steps,), generator, dtype, device)
    scale = torch.sqrt(1 - rho**2)[..., None]  # broadcasts over time
    if x_prev is None:  # x_0 = eps_0 ~ N(0, 1): the stationary law
        u = torch.cat([eps[..., :1], (scale * eps)[..., 1:]], dim=-1)
        h0 = None
    else:
        u = scale * eps
        h0 = torch.as_tensor(x_prev, dtype=dtype, device=device)
    return linear_scan(rho, u, h0)


def iid_inputs(
    shape: Sequence[int],
    *,
    mu: float = 0.0,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """i.i.d. Gaussian inputs with mean ``mu`` and std ``sigma``, shape ``shape``."""
    if sigma < 0 or not math.isfinite(sigma) or not math.isfinite(mu):
        raise ValueError(f"need finite mu and sigma >= 0, got mu={mu}, sigma={sigma}")
    return mu + sigma * _randn(shape, generator, dtype, device)


def fitted_autocorrelation(lags: Tensor | Sequence[int]) -> Tensor:
    """``R(Delta) = 0.332 delta_{Delta,0} + 0.0431 * 0.99700525^|Delta|`` (float64)."""
    lags = torch.as_tensor(lags, dtype=torch.float64).abs()
    return FITTED_WHITE_VARIANCE * (lags == 0) + FITTED_AR1_VARIANCE * FITTED_AR1_COEFFICIENT**lags


def fitted_autocorrelation_inputs(
    batch: int,
    steps: int,
    channels: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Gaussian inputs of shape ``(batch, steps, channels)`` with the autocorrelation ZO fitted to
    BERT embeddings of Wikipedia, independently per coordinate: ``sqrt(0.332) * white +
    sqrt(0.0431) * AR(1)(0.99700525)`` (variance 0.3751, slowly decaying correlation).

    A stand-in for the embeddings themselves, which are not available offline.
    """
    if batch < 1 or steps < 1 or channels < 1:
        raise ValueError(f"batch, steps and channels must be >= 1, got {batch}, {steps}, {channels}")
    white = _randn((batch, steps, channels), generator, dtype, device)
    slow = ar1_inputs((batch, channels), steps, FITTED_AR1_COEFFICIENT, generator=generator,
                      dtype=dtype, device=device).transpose(1, 2)
    return math.sqrt(FITTED_WHITE_VARIANCE) * white + math.sqrt(FITTED_AR1_VARIANCE) * slow


@dataclass(frozen=True)
class StructuredInputs:
    """Outcome of :func:`structured_embedding_inputs`.

    Attributes:
        x: ``(batch, steps, channels)`` the inputs.
        mean: ``(channels,)`` the mean vector ``mu`` shared by every sequence and step.
        mixing: ``(channels, rank)`` ``U``, unit-norm rows: the coordinates' shared part is ``U w``.
        shared_fraction: ``s``, the fraction of each coordinate's fluctuation variance that is shared.
    """

    x: Tensor
    mean: Tensor
    mixing: Tensor
    shared_fraction: float

    def covariance(self, lag: int = 0) -> Tensor:
        """``(channels, channels)`` the exact ``E[(x_t - mu)(x_{t+lag} - mu)^T]``:
        ``R(lag) ((1 - s) I + s U U^T)`` with ``R`` ZO's fitted autocorrelation (float64)."""
        u = self.mixing.double().cpu()
        r = float(fitted_autocorrelation([lag])[0])
        eye = torch.eye(u.shape[0], dtype=torch.float64)
        return r * ((1 - self.shared_fraction) * eye + self.shared_fraction * u @ u.T)


def structured_embedding_inputs(
    batch: int,
    steps: int,
    channels: int,
    *,
    mean_square: float = FITTED_WHITE_VARIANCE + FITTED_AR1_VARIANCE,
    shared_fraction: float = 0.5,
    rank: int = 8,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> StructuredInputs:
    """Inputs ``x_t = mu + sqrt(1 - s) z_t + sqrt(s) U w_t`` of shape ``(batch, steps, channels)``.

    ``z`` ``(batch, steps, channels)`` and ``w`` ``(batch, steps, rank)`` are independent draws of
    :func:`fitted_autocorrelation_inputs` (ZO's fitted autocorrelation per coordinate); ``U``
    ``(channels, rank)`` has Gaussian entries normalized to unit-norm rows, so every coordinate
    keeps exactly ZO's autocorrelation ``R(Delta)`` around its mean while coordinates are
    correlated through the ``rank`` shared processes (cross-covariance ``s R(Delta) U U^T``);
    ``mu ~ N(0, mean_square)`` per coordinate is drawn once and shared by all sequences and steps.
    The defaults (a mean as large as the fluctuations, half of each coordinate's variance shared
    over 8 directions) are a stated choice, not a fit to BERT embeddings, which are not available
    offline. Everything is drawn from ``generator`` (CPU draws, moved to ``device``).
    """
    if batch < 1 or steps < 1 or channels < 1:
        raise ValueError(f"batch, steps and channels must be >= 1, got {batch}, {steps}, {channels}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    if not 0 <= shared_fraction <= 1:
        raise ValueError(f"shared_fraction must lie in [0, 1], got {shared_fraction}")
    if not (math.isfinite(mean_square) and mean_square >= 0):
        raise ValueError(f"mean_square must be finite and >= 0, got {mean_square}")
    mu = math.sqrt(mean_square) * _randn((channels,), generator, torch.float64, "cpu")
    u = _randn((channels, rank), generator, torch.float64, "cpu")
    u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
    z = fitted_autocorrelation_inputs(batch, steps, channels, generator=generator, dtype=dtype, device=device)
    w = fitted_autocorrelation_inputs(batch, steps, rank, generator=generator, dtype=dtype, device=device)
    x = (mu.to(device, dtype) + math.sqrt(1 - shared_fraction) * z
         + math.sqrt(shared_fraction) * w @ u.T.to(device, dtype))
    return StructuredInputs(x, mu.to(dtype), u.to(dtype), float(shared_fraction))
