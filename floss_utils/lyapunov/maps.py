"""Recurrent maps whose Lyapunov spectra the book computes.

Every map acts on a batch of independent systems at once. A state has shape ``(B, N)``:
``B`` systems (networks, seeds, gains, ...) of ``N`` units. A map provides

* ``step(h, u) -> h_next``: one time step, where ``u`` is the external drive of shape
  ``(B, N)`` (already projected onto the units, e.g. ``W_in x_t + b``) or ``None``;
* ``tangent(h, u, h_next, Q) -> D_t Q``: the Jacobian ``D_t = dh_next/dh`` applied to a batch of
  ``k`` tangent vectors ``Q`` of shape ``(B, N, k)``;
* ``time_step``: the duration of one step in the units the exponents are reported in
  (1 for discrete-time maps, ``dt`` for Euler-discretized flows, exponents per tau);
* optionally ``step_and_tangent(h, u, Q) -> (h_next, D_t Q)``: both in one pass, for maps that
  share work between them; the estimator uses it instead of ``step`` and ``tangent`` when a map
  has it (e.g. :class:`floss_utils.flossing.torch_modules.RecurrentModuleMap`).

Maps with a closed-form Jacobian implement ``tangent`` analytically (one batched matrix
product and an elementwise scaling). :class:`CellMap` wraps any step function and obtains
``D_t Q`` through forward-mode Jacobian-vector products, so any recurrent cell (GRU, LSTM, ...)
gets a spectrum without a hand-written Jacobian.

All maps hold plain tensors; if those tensors require gradients, exponents computed from the map
are differentiable with respect to them (gradient flossing relies on this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from torch import Tensor

__all__ = [
    "RecurrentMap",
    "TanhRNN",
    "LinearMap",
    "RandomGaussianProduct",
    "RateNetwork",
    "CellMap",
    "gaussian_coupling",
    "scaled_orthogonal",
    "random_orthonormal",
    "sech2",
    "log_sech2",
]


def sech2(x: Tensor) -> Tensor:
    """``sech^2 x = 1 - tanh^2 x``, accurate where ``tanh x`` rounds to 1 (``|x| > 19``).

    ``1 - tanh(x)**2`` cancels to exactly 0 there although ``sech^2 x`` is representable up to
    ``|x| ~ 355``; a saturated unit would get an exactly singular Jacobian.
    """
    return torch.cosh(x).pow(-2)


def log_sech2(x: Tensor) -> Tensor:
    """``ln sech^2 x = -2 ln cosh x`` without overflow: ``-2 (|x| + ln(1 + e^{-2|x|}) - ln 2)``."""
    a = x.abs()
    return -2.0 * (a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0))


def _check_square_batch(name: str, W: Tensor) -> None:
    if not isinstance(W, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(W).__name__}")
    if W.ndim != 3 or W.shape[-1] != W.shape[-2]:
        raise ValueError(f"{name} must have shape (B, N, N), got {tuple(W.shape)}")
    if not W.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {W.dtype}")


class RecurrentMap:
    """Interface of a batched recurrent map (see the module docstring)."""

    time_step: float = 1.0

    @property
    def batch_size(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def n_units(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def device(self) -> torch.device:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - interface


class _MatrixMap(RecurrentMap):
    """Shared bookkeeping for maps defined by a batched coupling matrix ``W`` (B, N, N)."""

    W: Tensor

    @property
    def batch_size(self) -> int:
        return self.W.shape[0]

    @property
    def n_units(self) -> int:
        return self.W.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    @property
    def device(self) -> torch.device:
        return self.W.device


@dataclass
class TanhRNN(_MatrixMap):
    """Discrete-time tanh network, batched over ``B`` networks.

    ``form="preactivation"`` (the gradient-flossing model): ``x_{t+1} = J tanh(x_t) + u_{t+1}``,
    Jacobian ``D_t = J diag(sech^2 x_t)``.

    ``form="rate"``: ``r_{t+1} = tanh(J r_t + u_{t+1})``, Jacobian ``D_t = diag(1 - r_{t+1}^2) J``.

    The two forms are conjugate (``x = J r + u``) and have the same Lyapunov spectrum.

    Args:
        J: couplings, shape (B, N, N).
        bias: constant drive added every step, shape (B, N) or (N,), or None.
        form: ``"preactivation"`` or ``"rate"``.
    """

    W: Tensor
    bias: Optional[Tensor] = None
    form: Literal["preactivation", "rate"] = "preactivation"

    def __post_init__(self) -> None:
        _check_square_batch("J", self.W)
        if self.form not in ("preactivation", "rate"):
            raise ValueError(f"form must be 'preactivation' or 'rate', got {self.form!r}")

    @property
    def J(self) -> Tensor:
        return self.W

    def _drive(self, u: Optional[Tensor]) -> Optional[Tensor]:
        if self.bias is None:
            return u
        return self.bias if u is None else u + self.bias

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:
        drive = self._drive(u)
        if self.form == "preactivation":
            a = torch.tanh(h).unsqueeze(-1)
            out = torch.bmm(self.W, a).squeeze(-1)  # bmm: W and h are (B, ...) by construction
            return out if drive is None else out + drive
        a = torch.bmm(self.W, h.unsqueeze(-1)).squeeze(-1)
        return torch.tanh(a if drive is None else a + drive)

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        if self.form == "preactivation":
            return torch.bmm(self.W, sech2(h).unsqueeze(-1) * Q)
        # rate form: the slope is sech^2 of the pre-activation a = J r + u (not 1 - r_next^2,
        # which cancels to 0 for saturated units); recomputing a costs one matrix-vector product
        a = torch.matmul(self.W, h.unsqueeze(-1)).squeeze(-1)
        drive = self._drive(u)
        if drive is not None:
            a = a + drive
        return sech2(a).unsqueeze(-1) * torch.matmul(self.W, Q)


@dataclass
class LinearMap(_MatrixMap):
    """Linear map ``h_{t+1} = W h_t + u_{t+1}``; Jacobian ``W``. ``W`` has shape (B, N, N)."""

    W: Tensor

    def __post_init__(self) -> None:
        _check_square_batch("W", self.W)

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:
        out = torch.matmul(self.W, h.unsqueeze(-1)).squeeze(-1)
        return out if u is None else out + u

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        return torch.matmul(self.W, Q)


class _ExplicitShapeMap(RecurrentMap):
    """Bookkeeping for maps without a coupling matrix: shape, dtype and device given explicitly."""

    def __init__(self, batch_size: int, n_units: int, dtype: torch.dtype, device: str | torch.device) -> None:
        if batch_size < 1 or n_units < 1:
            raise ValueError(f"need batch_size >= 1 and n_units >= 1, got {batch_size}, {n_units}")
        self._b, self._n = batch_size, n_units
        self._dtype, self._device = dtype, torch.device(device)

    @property
    def batch_size(self) -> int:
        return self._b

    @property
    def n_units(self) -> int:
        return self._n

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device


class RandomGaussianProduct(_ExplicitShapeMap):
    """Products of i.i.d. Gaussian matrices ``W_t``, entries N(0, sigma^2/N): tangent map ``W_t``.

    A fresh matrix is drawn at every step from ``generator`` (one per system in the batch), the
    setting of Newman's exact spectrum (:func:`floss_utils.lyapunov.theory.newman_spectrum`).
    The state is irrelevant for the spectrum: it is carried along unchanged.
    """

    def __init__(
        self,
        batch_size: int,
        n_units: int,
        sigma: float = 1.0,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__(batch_size, n_units, dtype, device)
        self.sigma = float(sigma)
        self.generator = generator
        self._current: Optional[Tensor] = None

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:
        scale = self.sigma / math.sqrt(self._n)
        self._current = scale * torch.randn(
            self._b, self._n, self._n, dtype=self._dtype, device=self._device,
            generator=self.generator,
        )
        return h  # the state plays no role (and W_t h would overflow over long runs)

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        assert self._current is not None, "step() must be called before tangent()"
        return torch.matmul(self._current, Q)


@dataclass
class RateNetwork(_MatrixMap):
    """Continuous-time rate network, Euler-discretized with step ``dt`` (in units of tau):

    ``h <- h + dt (-h + J tanh(h) + u)``; Jacobian ``(1 - dt) I + dt J diag(sech^2 h)``.
    Exponents are reported per tau (``time_step = dt``).
    """

    W: Tensor
    dt: float = 0.1
    bias: Optional[Tensor] = None

    def __post_init__(self) -> None:
        _check_square_batch("J", self.W)
        if not (0.0 < float(self.dt) <= 1.0):
            raise ValueError(f"dt must lie in (0, 1], got {self.dt}")

    @property
    def time_step(self) -> float:  # type: ignore[override]
        return float(self.dt)

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:
        rec = torch.matmul(self.W, torch.tanh(h).unsqueeze(-1)).squeeze(-1)
        if self.bias is not None:
            rec = rec + self.bias
        if u is not None:
            rec = rec + u
        return h + self.dt * (rec - h)

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        return (1.0 - self.dt) * Q + self.dt * torch.matmul(self.W, sech2(h).unsqueeze(-1) * Q)


class CellMap(_ExplicitShapeMap):
    """Any recurrent cell, with ``D_t Q`` from forward-mode Jacobian-vector products.

    Args:
        step_fn: ``step_fn(h, u) -> h_next`` acting on a batch, ``h`` of shape (B, N).
            It must treat the batch rows independently (it is vmapped over tangent columns).
        batch_size, n_units: shape of the state.
        dtype, device: of the state.
        time_step: duration of one step (1 for discrete-time cells).
    """

    def __init__(
        self,
        step_fn: Callable[[Tensor, Optional[Tensor]], Tensor],
        batch_size: int,
        n_units: int,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        time_step: float = 1.0,
    ) -> None:
        super().__init__(batch_size, n_units, dtype, device)
        self.step_fn = step_fn
        self.time_step = float(time_step)

    def step(self, h: Tensor, u: Optional[Tensor]) -> Tensor:
        return self.step_fn(h, u)

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        def jvp_one(v: Tensor) -> Tensor:  # v: (B, N), one tangent column per system
            return torch.func.jvp(lambda x: self.step_fn(x, u), (h,), (v,))[1]

        # vmap over the k columns of Q: (k, B, N) -> (k, B, N) -> (B, N, k)
        return torch.func.vmap(jvp_one, in_dims=2, out_dims=2)(Q)


def gaussian_coupling(
    batch_size: int,
    n_units: int,
    gain: float | Tensor,
    *,
    zero_diagonal: bool = False,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Random couplings ``J_ij ~ N(0, g^2/N)``, shape (B, N, N).

    ``gain`` is a scalar or a tensor of shape (B,) (one gain per network, e.g. a sweep over g
    sharing one draw of the standard normal matrix when the generator is reseeded per call).
    """
    if batch_size < 1 or n_units < 1:
        raise ValueError(f"need batch_size >= 1 and n_units >= 1, got {batch_size}, {n_units}")
    Z = torch.randn(batch_size, n_units, n_units, dtype=dtype, device=device, generator=generator)
    g = torch.as_tensor(gain, dtype=dtype, device=device)
    if g.ndim == 1:
        if g.shape[0] != batch_size:
            raise ValueError(f"gain has {g.shape[0]} entries for batch_size={batch_size}")
        g = g[:, None, None]
    elif g.ndim != 0:
        raise ValueError(f"gain must be a scalar or shape (B,), got shape {tuple(g.shape)}")
    J = g * Z / math.sqrt(n_units)
    if zero_diagonal:
        J = J * (1.0 - torch.eye(n_units, dtype=dtype, device=device))
    return J


def random_orthonormal(
    batch_size: int,
    n: int,
    k: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """A Haar-random orthonormal basis per system (QR of a Gaussian with sign fix), shape (B, N, k)."""
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= N, got k={k}, N={n}")
    Z = torch.randn(batch_size, n, k, dtype=dtype, device=device, generator=generator)
    Q, R = torch.linalg.qr(Z, mode="reduced")
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def scaled_orthogonal(
    batch_size: int,
    n_units: int,
    gain: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``g Q`` with ``Q`` Haar-random orthogonal (:func:`random_orthonormal` with k = N), shape (B, N, N)."""
    return gain * random_orthonormal(batch_size, n_units, n_units, dtype=dtype, device=device, generator=generator)
