"""Monte Carlo signal propagation through one linear recurrent unit (ZO, Part II of the book).

The unit is ``h_t = lambda h_{t-1} + gamma x_t`` (``gamma = 1``, or ``sqrt(1 - |lambda|^2)`` when
normalized), started at ``h_{-1} = 0``; its sensitivity ``d_t = d h_t / d lambda`` (``gamma`` held
constant) obeys the forward-mode recursion ``d_t = lambda d_{t-1} + h_{t-1}``. Both are linear
time-invariant recurrences, computed by :func:`floss_utils.curse_of_memory.scans.linear_scan`, a chunked parallel scan:
inside a chunk of ``K`` steps the recurrence is one matrix product with the lower-triangular
Toeplitz matrix ``L_ts = a^(t-s)``; only the ``T/K`` chunk boundaries are sequential. The scan is
exact (no division by ``a``, so ``a = 0`` and complex ``a`` are fine) and is tested against the
step-by-step loop :func:`floss_utils.curse_of_memory.scans.linear_scan_loop`.

:func:`simulate_moments` runs many ``lambda`` values x many AR(1) correlations ``rho`` x many
samples as one tensor program, streaming the input block by block (memory ``O(n * block)`` per
configuration, whatever the length; ``lambda`` values and samples in groups, so the peak memory
stays bounded however many there are), and returns the empirical stationary second moments with
standard errors over independent samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .scans import linear_scan

__all__ = [
    "MomentEstimate",
    "simulate_moments",
    "simulate_teacher_student_loss",
]


#: samples scanned together: a fixed group size, so that the numbers never depend on the memory
#: budget (a matrix product over a different number of rows may round differently)
SAMPLE_GROUP = 2048
#: default memory for the working tensors of :func:`simulate_moments`
WORKSPACE_BYTES = 1 << 30


@dataclass
class MomentEstimate:
    """Empirical stationary second moments, each with its standard error.

    ``mean[name]`` and ``sem[name]`` have shape ``(len(lam), len(rho))``. Names: ``"h2"``
    (``E|h|^2``), ``"dlam2"`` (``E|d_lambda h|^2``), and for complex ``lambda`` ``"dtheta2"``
    (``E|d_theta h|^2``, ``d_theta h = i lambda d_lambda h``); with ``exp_parametrized=True`` also
    ``"dnu2"`` (``E|d_nu h|^2`` for ``lambda = exp(-exp(nu) + i theta)``). With ``normalize=True``
    ``h`` is the normalized state ``gamma h`` (``gamma`` held constant when differentiating). The standard error is over the independent samples (each
    sample's average over the window first, so the autocorrelation in time is accounted for).
    """

    mean: dict[str, Tensor]
    sem: dict[str, Tensor]
    n_samples: int
    burn_in: int
    window: int


def simulate_moments(
    lam: Tensor,
    rho: Tensor,
    *,
    n_samples: int,
    burn_in: int,
    window: int = 1,
    normalize: bool = False,
    exp_parametrized: bool = False,
    chunk: int = 16,
    block: int = 512,
    max_bytes: int = WORKSPACE_BYTES,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> MomentEstimate:
    """Monte Carlo moments of ``h`` and ``d_lambda h`` for every ``lambda`` x every ``rho``.

    The input is AR(1) with ``R_x(Delta) = rho^|Delta|`` (unit variance, stationary start; the
    same input draws are shared by all ``lambda``, common random numbers), the unit starts at 0
    and runs ``burn_in + window`` steps; moments are averaged over the last ``window`` steps and
    over ``n_samples`` independent sequences. ``burn_in`` must be long enough for the transient
    to die out: the sensitivity forgets its start like ``(t (1-|lambda|))^2 |lambda|^(2t)``.

    Args:
        lam: shape ``(L,)``, real or complex, ``|lambda| < 1``.
        rho: shape ``(R,)``, values in [0, 1].
        normalize: drive the unit with ``gamma x``, ``gamma = sqrt(1 - |lambda|^2)`` (the
            normalized unit itself is simulated, not a rescaled plain one).
        exp_parametrized: also run the forward-mode recursion of the sensitivity to ``nu`` in
            ``lambda = exp(-exp(nu) + i theta)``: ``d_nu h_{t+1} = lambda d_nu h_t + lambda ln|lambda| h_t``
            (``0 < |lambda| < 1``).
        chunk: steps per parallel chunk of :func:`~floss_utils.curse_of_memory.scans.linear_scan`.
        block: steps of input generated and scanned at a time (bounds the memory).
        max_bytes: memory for the scans' working tensors: the ``lambda`` values are scanned
            in groups that fit (and the samples in groups of ``SAMPLE_GROUP``), so the
            peak memory stays near ``max_bytes`` whatever ``n_samples`` and the number of
            ``lambda`` values. The numbers do not depend on it.
    """
    from .inputs import ar1_inputs  # inputs builds on linear_scan

    lam = torch.as_tensor(lam, device=device)
    rho = torch.as_tensor(rho, dtype=dtype, device=device)
    if lam.dim() != 1 or rho.dim() != 1:
        raise ValueError(f"lam and rho must be 1-D, got shapes {tuple(lam.shape)} and {tuple(rho.shape)}")
    if bool((lam.abs() >= 1).any()):
        raise ValueError(f"every |lam| must be < 1, got {lam.tolist()}")
    if exp_parametrized and bool((lam == 0).any()):
        raise ValueError(f"exp_parametrized needs 0 < |lam| (lambda = exp(-exp(nu))), got {lam.tolist()}")
    if n_samples < 2 or burn_in < 0 or window < 1:
        raise ValueError(f"need n_samples >= 2, burn_in >= 0, window >= 1; got {n_samples}, {burn_in}, {window}")
    lam = lam.to(torch.complex128 if lam.is_complex() and dtype == torch.float64 else
                 torch.complex64 if lam.is_complex() else dtype)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    L, R = len(lam), len(rho)
    gamma = torch.sqrt(1 - lam.abs() ** 2) if normalize else None
    total = burn_in + window
    acc_h = torch.zeros(L, R, n_samples, dtype=dtype, device=device)
    acc_d = torch.zeros_like(acc_h)
    acc_nu = torch.zeros_like(acc_h) if exp_parametrized else None
    h_prev = torch.zeros(L, R, n_samples, dtype=lam.dtype, device=device)
    d_prev = torch.zeros_like(h_prev)
    nu_prev = torch.zeros_like(h_prev) if exp_parametrized else None
    dlam_dnu = lam * torch.log(lam.abs()) if exp_parametrized else None
    lam_chunk = _lambda_group(L, R, n_samples, block, lam.dtype, max_bytes)
    x_prev = None
    for start in range(0, total, block):
        k = min(block, total - start)
        # the whole block of input is drawn at once, so the random stream does not depend on
        # how the work below is chunked: same seed, same numbers, whatever the memory budget
        x = ar1_inputs((R, n_samples), k, rho[:, None], x_prev=x_prev,
                       generator=generator, dtype=dtype, device=device)  # (R, n, k)
        x_prev = x[..., -1]
        first = max(burn_in - start, 0)
        for l0 in range(0, L, lam_chunk):
            ls = slice(l0, l0 + lam_chunk)
            a = lam[ls, None, None]  # (Lc, 1, 1): shared by every rho and sample
            for s0 in range(0, n_samples, SAMPLE_GROUP):
                ss = slice(s0, s0 + SAMPLE_GROUP)
                drive = x[None, :, ss] * gamma[ls, None, None, None] if normalize else x[None, :, ss]
                h = linear_scan(a, drive, h_prev[ls, :, ss], chunk=chunk)  # (Lc, R, nc, k)
                h_shift = torch.cat([h_prev[ls, :, ss].unsqueeze(-1), h[..., :-1]], dim=-1)
                d = linear_scan(a, h_shift, d_prev[ls, :, ss], chunk=chunk)
                h_prev[ls, :, ss], d_prev[ls, :, ss] = h[..., -1], d[..., -1]
                if exp_parametrized:
                    dn = linear_scan(a, dlam_dnu[ls, None, None, None] * h_shift, nu_prev[ls, :, ss], chunk=chunk)
                    nu_prev[ls, :, ss] = dn[..., -1]
                    if first < k:
                        acc_nu[ls, :, ss] += (dn[..., first:].abs() ** 2).sum(-1)
                if first < k:
                    acc_h[ls, :, ss] += (h[..., first:].abs() ** 2).sum(-1)
                    acc_d[ls, :, ss] += (d[..., first:].abs() ** 2).sum(-1)
    per_sample = {"h2": acc_h / window, "dlam2": acc_d / window}
    if exp_parametrized:
        per_sample["dnu2"] = acc_nu / window
    if lam.is_complex():
        per_sample["dtheta2"] = per_sample["dlam2"] * (lam.abs() ** 2)[:, None, None].to(dtype)
    mean = {k_: v.mean(-1) for k_, v in per_sample.items()}
    sem = {k_: v.std(-1) / math.sqrt(n_samples) for k_, v in per_sample.items()}
    return MomentEstimate(mean, sem, n_samples, burn_in, window)


def _lambda_group(L: int, R: int, n: int, block: int, dtype: torch.dtype, max_bytes: int) -> int:
    """How many ``lambda`` values to scan at once within ``max_bytes``: a block of ``block``
    steps of one ``(lambda, rho, sample)`` series holds about ten working tensors of ``block``
    elements (drive, states, sensitivities, the scan's chunks and their squares)."""
    per_lambda = 10 * block * R * min(n, SAMPLE_GROUP) * torch.empty((), dtype=dtype).element_size()
    return max(1, min(L, int(max_bytes) // per_lambda))


def simulate_teacher_student_loss(
    lam: Tensor,
    lam_star: Tensor | complex,
    *,
    mu: float = 0.0,
    sigma: float = 1.0,
    normalize: bool = False,
    n_samples: int,
    steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """Direct simulation of the 1-D teacher-student loss ``1/2 E|y_T - y*_T|^2``.

    Student units ``lam`` (shape ``(L,)``, real or complex) and the teacher ``lam_star`` see the
    same i.i.d. Gaussian input with mean ``mu`` and std ``sigma`` for ``steps`` steps from rest;
    ``y = h`` or ``gamma h`` (``normalize``). Returns ``(mean, sem)`` over ``n_samples``
    independent sequences, each of shape ``(L,)``.
    """
    lam = torch.as_tensor(lam, device=device)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    lam = lam.to(cdtype)
    lam_star = torch.as_tensor(lam_star, device=device).to(cdtype).reshape(1)
    units = torch.cat([lam_star, lam])[:, None]  # (1 + L, 1), teacher first
    gen_device = generator.device if generator is not None else "cpu"
    h = torch.zeros(units.shape[0], n_samples, dtype=cdtype, device=device)
    block = 256
    for start in range(0, steps, block):  # stream the input: only the final state is kept
        k = min(block, steps - start)
        x = mu + sigma * torch.randn(n_samples, k, dtype=dtype, generator=generator, device=gen_device).to(device)
        h = linear_scan(units, x, h)[..., -1]
    if normalize:
        h = h * torch.sqrt(1 - units.abs() ** 2)
    per_sample = 0.5 * (h[1:] - h[:1]).abs() ** 2
    return per_sample.mean(-1), per_sample.std(-1) / math.sqrt(n_samples)
