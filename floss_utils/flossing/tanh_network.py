"""The gradient-flossing model (GF, as in the public code), batched over M networks.

Pre-activation state ``x`` (N units), one input channel ``s_t`` in {0, 1}, one readout logit::

    x_t = J tanh(x_{t-1}) + b + W_s s_t        r_t = w_r . x_t + c

Initialization (GF): ``J_ij ~ N(0, g^2/N)`` (or ``g`` times a Haar-orthogonal matrix),
``W_s ~ N(0, 1)``, ``w_r ~ N(0, 1)`` (unscaled), ``b = 0.1 U[0, 1)``, ``c = 0.001``, and a learned
initial state per batch slot, ``x_0 ~ N(0, 1)`` relaxed for 100 input-free steps
``x <- J tanh(x) + b``.

Every tensor carries the ensemble as its first dimension: ``J`` (M, N, N), ``W_s`` (M, N),
``b`` (M, N), ``w_r`` (M, N), ``c`` (M,), ``x0`` (M, B, N). Member m is drawn from its own
seed only, so an ensemble equals its members initialized one by one (tested).

For the Lyapunov machinery the network is a :class:`~floss_utils.lyapunov.maps.TanhRNN` in
pre-activation form with bias ``b`` and drive ``W_s s_t`` (:meth:`GFNetwork.recurrent_map`,
:meth:`GFNetwork.drive`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from ..common import PARAM_NAMES, MemberBatched, resolve_device, resolve_dtype, seeded_generator
from ..lyapunov.maps import TanhRNN

__all__ = ["GFNetwork", "init_gf_networks"]

@dataclass
class GFNetwork(MemberBatched):
    """M tanh networks of the GF model (see the module docstring for shapes)."""

    J: Tensor
    W_s: Tensor
    b: Tensor
    w_r: Tensor
    c: Tensor
    x0: Tensor

    def __post_init__(self) -> None:
        M, N = self.J.shape[0], self.J.shape[-1]
        expect = {"J": (M, N, N), "W_s": (M, N), "b": (M, N), "w_r": (M, N), "c": (M,)}
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"GFNetwork.{name} must have shape {shape}, got {got}")
        if self.x0.ndim != 3 or self.x0.shape[0] != M or self.x0.shape[2] != N:
            raise ValueError(f"GFNetwork.x0 must have shape (M, B, N) = ({M}, B, {N}), got {tuple(self.x0.shape)}")

    @property
    def n_units(self) -> int:
        return self.J.shape[-1]

    @staticmethod
    def cat(nets: Sequence["GFNetwork"]) -> "GFNetwork":
        """One ensemble from several (e.g. drawn at different gains), members in order."""
        if not nets:
            raise ValueError("GFNetwork.cat needs at least one ensemble")
        return GFNetwork(**{f.name: torch.cat([getattr(n, f.name) for n in nets]) for f in fields(GFNetwork)})

    # ---- dynamics
    def recurrent_map(self) -> TanhRNN:
        """The networks as a pre-activation :class:`~floss_utils.lyapunov.maps.TanhRNN` (bias ``b``; drive from :meth:`drive`)."""
        return TanhRNN(self.J, bias=self.b, form="preactivation")

    def drive(self, s: Tensor) -> Tensor:
        """Input drive ``W_s s_t``: s (T, M) or (T, M, B) -> (T, M, N) or (T, M, B, N)."""
        if s.ndim == 2:
            return s.unsqueeze(-1) * self.W_s
        if s.ndim == 3:
            return s.unsqueeze(-1) * self.W_s.unsqueeze(1)
        raise ValueError(f"inputs must have shape (T, M) or (T, M, B), got {tuple(s.shape)}")

    def _steps(self, s: Tensor, x: Tensor) -> Iterator[Tensor]:
        # per-step drive b + W_s s_t (a precomputed (T, M, B, N) drive costs more in memory
        # traffic than the recurrence itself)
        b, W_s, Jt = self.b.unsqueeze(1), self.W_s.unsqueeze(1), self.J.mT
        for s_t in s.to(self.dtype).unbind(0):  # unbind: one backward node, not T
            x = torch.baddbmm(torch.addcmul(b, s_t.unsqueeze(-1), W_s), torch.tanh(x), Jt)
            yield x

    def run(self, s: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """Pre-activation states for inputs ``s`` (T, M, B): returns ``x_1 .. x_T`` (T, M, B, N).

        ``x0`` (M, B, N) defaults to the learned initial state.
        """
        return torch.stack(list(self._steps(s, self._check_inputs(s, x0))))

    def readout(self, states: Tensor) -> Tensor:
        """Logits ``r_t = w_r . x_t + c``: states (..., M, B, N) -> (..., M, B)."""
        return torch.matmul(states, self.w_r.unsqueeze(-1)).squeeze(-1) + self.c.unsqueeze(-1)

    def logits(self, s: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """Readout logits ``r_1 .. r_T`` for inputs s (T, M, B): (T, M, B)."""
        w = self.w_r.unsqueeze(1)
        out = [(x * w).sum(-1) for x in self._steps(s, self._check_inputs(s, x0))]
        return torch.stack(out) + self.c.unsqueeze(-1)


def init_gf_networks(
    seeds: Sequence[int],
    n_units: int = 80,
    batch_size: int = 16,
    *,
    gain: float = 1.0,
    orthogonal: bool = False,
    relax_steps: int = 100,
    input_std: float = 1.0,
    readout_std: float = 1.0,
    bias_scale: float = 0.1,
    offset: float = 0.001,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device = "cpu",
) -> GFNetwork:
    """M = len(seeds) GF networks, member m drawn from ``seeds[m]`` alone (see module docstring).

    Args:
        seeds: one non-negative int per member (the same seed gives the same network).
        n_units: N; batch_size: B, the number of learned initial states (batch slots).
        gain: g; orthogonal: ``J = g O`` with O Haar-orthogonal instead of Gaussian.
        relax_steps: input-free steps ``x <- J tanh(x) + b`` applied to the random initial states.
        input_std, readout_std: std of ``W_s`` and ``w_r`` entries; bias_scale: ``b ~ bias_scale U[0,1)``;
        offset: the readout offset ``c``.
    Returns:
        A :class:`GFNetwork` with leaf tensors (no gradient tracking; call ``requires_grad_()``).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one network")
    if n_units < 1 or batch_size < 1:
        raise ValueError(f"need n_units >= 1 and batch_size >= 1, got {n_units}, {batch_size}")
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {relax_steps}")
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain}")
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    N, B = n_units, batch_size
    parts: dict[str, list[Tensor]] = {n: [] for n in ("J", "W_s", "b", "w_r", "x0")}
    for seed in seeds:
        g = seeded_generator(seed, 0)  # purpose 0: network initialization
        Z = torch.randn(N, N, dtype=torch.float64, generator=g)
        if orthogonal:
            Q, R = torch.linalg.qr(Z)
            J = gain * Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
        else:
            J = gain * Z / math.sqrt(N)
        parts["J"].append(J)
        parts["W_s"].append(input_std * torch.randn(N, dtype=torch.float64, generator=g))
        parts["w_r"].append(readout_std * torch.randn(N, dtype=torch.float64, generator=g))
        parts["b"].append(bias_scale * torch.rand(N, dtype=torch.float64, generator=g))
        parts["x0"].append(torch.randn(B, N, dtype=torch.float64, generator=g))
    t = {n: torch.stack(v).to(device=device, dtype=dtype) for n, v in parts.items()}
    x = t["x0"]
    for _ in range(relax_steps):
        x = torch.baddbmm(t["b"].unsqueeze(1), torch.tanh(x), t["J"].mT)
    c = torch.full((len(seeds),), float(offset), dtype=dtype, device=device)
    return GFNetwork(J=t["J"], W_s=t["W_s"], b=t["b"], w_r=t["w_r"], c=c, x0=x.contiguous())
