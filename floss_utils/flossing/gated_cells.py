"""Gated recurrent cells (GRU, LSTM) for Part III, batched over M networks like the GF model.

The cells use PyTorch's conventions (gate order and equations of ``torch.nn.GRUCell`` and
``torch.nn.LSTMCell``; tested against them), with one input channel ``s_t`` in {0, 1}, a single
bias per gate and one readout logit from the hidden state ``h``:

GRU (hidden ``h``, N units; gates r, z, n)::

    r = sigma(J_r h + W_r s + b_r)      z = sigma(J_z h + W_z s + b_z)
    n = tanh(W_n s + b_n + r * (J_n h))
    h' = (1 - z) * n + z * h

LSTM (state ``(h, c)``, 2N numbers; gates i, f, g, o)::

    i, f, o = sigma(J_{i,f,o} h + W_{i,f,o} s + b_{i,f,o})      g = tanh(J_g h + W_g s + b_g)
    c' = f * c + i * g      h' = o * tanh(c')

Readout logit ``r_t = w_r . h_t + c`` (``c``: the readout offset, not the LSTM cell state).

The parameters carry the names of :class:`~floss_utils.flossing.tanh_network.GFNetwork` so that the Part III
trainer (:func:`floss_utils.flossing.trainer.train`, via its ``network`` argument) and the
:class:`~floss_utils.flossing.flosser.Flosser` handle both alike: ``J`` (M, G N, N) recurrent weights of
the G gates stacked (G = 3 for the GRU, 4 for the LSTM), ``W_s`` (M, G N) input weights,
``b`` (M, G N) biases, ``w_r`` (M, N), ``c`` (M,), ``x0`` (M, B, S) learned initial states, where
``S`` is the dimension of the recurrent state (:attr:`CellNetwork.n_units`: N for the GRU, 2N for
the LSTM, ``h`` then ``c``). Flossing the default ``("W_s", "J", "b")`` acts on all gates.

Lyapunov exponents are those of the state map ``x_t -> x_{t+1}`` (S-dimensional) along an
input-driven trajectory. The tangents ``D_t Q`` come from the cell's Jacobian written out
(:func:`cell_tangent`, :class:`ClosedFormCellMap`, the default) or from forward-mode automatic
differentiation of its step (:class:`FoldedCellMap`, or :class:`~floss_utils.lyapunov.maps.CellMap`'s
``vmap``); all three give the same numbers (tested) and are differentiable with respect to the
parameters (gradient flossing). The closed form computes the gates once per step instead of
once per tangent column.

Initialization (ours, GF-like): ``J`` blocks ``N(0, g^2/N)``, ``W_s ~ N(0, 1)``,
``b = 0.1 U[0, 1)`` (plus ``forget_bias`` on the LSTM forget gate, ``update_bias`` on the GRU update gate),
``w_r ~ N(0, 1/N)`` (the
gated state is bounded by 1, so the readout is scaled to give O(1) logits), ``c = 0.001``,
initial states ``x0`` drawn ``N(0, 1)`` (LSTM ``h`` part squashed by tanh) and relaxed for 100
input-free steps. Member m is drawn from its own seed only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

import torch.autograd.forward_ad as fwAD

from ..common import PARAM_NAMES, MemberBatched, resolve_device, resolve_dtype, seeded_generator
from ..lyapunov.maps import CellMap

__all__ = ["CellNetwork", "init_cell_networks", "CELL_KINDS", "GATE_NAMES", "cell_step", "cell_tangent", "gate_values",
           "FoldedCellMap", "ClosedFormCellMap", "TANGENT_METHODS"]

#: the cells and their number of gates.
CELL_KINDS = {"gru": 3, "lstm": 4}
#: the sigmoid gates of each cell, in stacking order.
GATE_NAMES = {"gru": ("r", "z"), "lstm": ("i", "f", "o")}


def cell_step(kind: str, J: Tensor, W_s: Tensor, b: Tensor, x: Tensor, s: Tensor) -> Tensor:
    """One step of M cells on a batch: x (M, B, S), s (M, B) -> x' (M, B, S).

    ``J`` (M, G N, N), ``W_s`` and ``b`` (M, G N). For the LSTM, ``x = [h, c]`` on the last axis.
    """
    N = J.shape[-1]
    h = x[..., :N]
    inp = torch.addcmul(b.unsqueeze(1), s.unsqueeze(-1), W_s.unsqueeze(1))  # (M, B, G N)
    rec = torch.bmm(h, J.mT)  # (M, B, G N)
    if kind == "gru":
        # the candidate's recurrent part is gated by r after the product (torch's GRUCell)
        r = torch.sigmoid(inp[..., :N] + rec[..., :N])
        z = torch.sigmoid(inp[..., N:2 * N] + rec[..., N:2 * N])
        n = torch.tanh(inp[..., 2 * N:] + r * rec[..., 2 * N:])
        return n + z * (h - n)
    if kind == "lstm":
        pre = inp + rec
        c = x[..., N:]
        i = torch.sigmoid(pre[..., :N])
        f = torch.sigmoid(pre[..., N:2 * N])
        g = torch.tanh(pre[..., 2 * N:3 * N])
        o = torch.sigmoid(pre[..., 3 * N:])
        c_new = f * c + i * g
        return torch.cat([o * torch.tanh(c_new), c_new], dim=-1)
    raise ValueError(f"unknown cell kind {kind!r}; use one of {list(CELL_KINDS)}")


def cell_tangent(kind: str, J: Tensor, W_s: Tensor, b: Tensor, x: Tensor, s: Tensor, Q: Tensor) -> Tensor:
    """The Jacobian of :func:`cell_step` with respect to the state, applied to tangent vectors:
    x (M, S), s (M,), Q (M, S, k) -> ``D_x x' Q`` (M, S, k), one network per row.

    Written out from the cell's equations (module docstring): with ``dq = J Q_h`` (the tangents of the
    recurrent pre-activations), GRU ``dr = r(1 - r) dq_r``, ``dz = z(1 - z) dq_z``,
    ``dn = (1 - n^2)(dr * J_n h + r * dq_n)``, ``dh' = (1 - z) dn + z Q_h + (h - n) dz``; LSTM
    ``dc' = f' c + f Q_c + i' g + i g'`` with the gates' derivatives ``sigma' dq`` (``tanh'`` for g),
    ``dh' = o' tanh(c') + o (1 - tanh^2 c') dc'``. Tested against forward-mode automatic
    differentiation and finite differences.
    """
    N = J.shape[-1]
    h = x[..., :N]
    inp = torch.addcmul(b, s.unsqueeze(-1), W_s)  # (M, G N)
    rec = torch.bmm(J, h.unsqueeze(-1)).squeeze(-1)  # (M, G N)
    dq = torch.bmm(J, Q[:, :N, :])  # (M, G N, k)
    col = lambda v: v.unsqueeze(-1)  # (M, N) -> (M, N, 1), broadcast over the k columns
    if kind == "gru":
        rec_n = rec[:, 2 * N:]
        r, z = torch.sigmoid(inp[:, :N] + rec[:, :N]), torch.sigmoid(inp[:, N:2 * N] + rec[:, N:2 * N])
        n = torch.tanh(inp[:, 2 * N:] + r * rec_n)
        dr = col(r * (1 - r)) * dq[:, :N]
        dz = col(z * (1 - z)) * dq[:, N:2 * N]
        dn = col(1 - n * n) * (dr * col(rec_n) + col(r) * dq[:, 2 * N:])
        return col(1 - z) * dn + col(z) * Q + col(h - n) * dz
    if kind == "lstm":
        c, pre = x[..., N:], inp + rec
        i, f = torch.sigmoid(pre[:, :N]), torch.sigmoid(pre[:, N:2 * N])
        g, o = torch.tanh(pre[:, 2 * N:3 * N]), torch.sigmoid(pre[:, 3 * N:])
        tc = torch.tanh(f * c + i * g)
        dc = (col(f * (1 - f)) * dq[:, N:2 * N] * col(c) + col(f) * Q[:, N:]
              + col(i * (1 - i)) * dq[:, :N] * col(g) + col(i) * col(1 - g * g) * dq[:, 2 * N:3 * N])
        dh = col(o * (1 - o)) * dq[:, 3 * N:] * col(tc) + col(o * (1 - tc * tc)) * dc
        return torch.cat([dh, dc], dim=1)
    raise ValueError(f"unknown cell kind {kind!r}; use one of {list(CELL_KINDS)}")


def gate_values(net: "CellNetwork", s: Tensor, x0: Optional[Tensor] = None) -> dict[str, Tensor]:
    """The sigmoid gates of M networks along trajectories driven by inputs s (T, M, B).

    Returns ``{name: (T, M, B, N)}`` for the gates of :data:`GATE_NAMES` (GRU: reset ``r`` and
    update ``z``, where ``z -> 1`` freezes the state; LSTM: input ``i``, forget ``f``, where
    ``f -> 1`` keeps the cell state, and output ``o``), each in (0, 1), computed from the states
    that enter each step (no gradient).
    """
    with torch.no_grad():
        x = net._check_inputs(s, x0)
        N, out = net.n_hidden, {g: [] for g in GATE_NAMES[net.kind]}
        rows = {"r": 0, "z": 1} if net.kind == "gru" else {"i": 0, "f": 1, "o": 3}
        for s_t in s.to(net.dtype).unbind(0):
            pre = torch.addcmul(net.b.unsqueeze(1), s_t.unsqueeze(-1), net.W_s.unsqueeze(1)) \
                + torch.bmm(x[..., :N], net.J.mT)
            for g, r in rows.items():
                out[g].append(torch.sigmoid(pre[..., r * N:(r + 1) * N]))
            x = cell_step(net.kind, net.J, net.W_s, net.b, x, s_t)
    return {g: torch.stack(v) for g, v in out.items()}


class FoldedCellMap(CellMap):
    """A :class:`~floss_utils.lyapunov.maps.CellMap` whose ``D_t Q`` is one forward-mode JVP with the k
    tangent columns folded into the batch (dual numbers, ``torch.autograd.forward_ad``) instead of
    a ``vmap`` over the columns: the same numbers (tested) at a fraction of the cost for small
    cells, where the per-operation overhead of ``vmap`` dominates.

    ``step_fn(x, u)`` must accept states (B, k, S) and inputs (B, k) (rows and columns independent).
    """

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        B, S, k = Q.shape
        hk = h.unsqueeze(1).expand(B, k, S).contiguous()
        uk = None if u is None else u.unsqueeze(1).expand(B, k)
        with fwAD.dual_level():
            out = self.step_fn(fwAD.make_dual(hk, Q.mT.contiguous()), uk)
            tangent = fwAD.unpack_dual(out).tangent
        return tangent.mT


class ClosedFormCellMap(CellMap):
    """A :class:`~floss_utils.lyapunov.maps.CellMap` whose ``D_t Q`` is :func:`cell_tangent`: the cell's
    Jacobian written out, its gates computed once per step (not once per tangent column, as the
    dual numbers of :class:`FoldedCellMap` do), the same numbers up to round-off (tested)."""

    def __init__(self, kind: str, J: Tensor, W_s: Tensor, b: Tensor, step_fn, batch_size: int, n_units: int, *,
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> None:
        super().__init__(step_fn, batch_size, n_units, dtype=dtype, device=device)
        self.kind, self.J, self.W_s, self.b = kind, J, W_s, b

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        s = torch.zeros(h.shape[:-1], dtype=h.dtype, device=h.device) if u is None else u
        return cell_tangent(self.kind, self.J, self.W_s, self.b, h, s, Q)


#: how :meth:`CellNetwork.recurrent_map` computes the tangents ``D_t Q`` (the same numbers each)
TANGENT_METHODS = ("closed_form", "fold", "vmap")


@dataclass
class CellNetwork(MemberBatched):
    """M gated networks of one kind (see the module docstring for shapes and equations)."""

    kind: str
    J: Tensor
    W_s: Tensor
    b: Tensor
    w_r: Tensor
    c: Tensor
    x0: Tensor

    def __post_init__(self) -> None:
        if self.kind not in CELL_KINDS:
            raise ValueError(f"CellNetwork.kind must be one of {list(CELL_KINDS)}, got {self.kind!r}")
        M, N = self.J.shape[0], self.J.shape[-1]
        G = CELL_KINDS[self.kind]
        S = N if self.kind == "gru" else 2 * N
        expect = {"J": (M, G * N, N), "W_s": (M, G * N), "b": (M, G * N), "w_r": (M, N), "c": (M,)}
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"CellNetwork({self.kind}).{name} must have shape {shape}, got {got}")
        if self.x0.ndim != 3 or self.x0.shape[0] != M or self.x0.shape[2] != S:
            raise ValueError(f"CellNetwork({self.kind}).x0 must have shape (M, B, S) = ({M}, B, {S}), "
                             f"got {tuple(self.x0.shape)}")

    @property
    def n_hidden(self) -> int:
        """N, the number of hidden units."""
        return self.J.shape[-1]

    @property
    def n_units(self) -> int:
        """S, the dimension of the recurrent state (N for the GRU, 2N for the LSTM), is the number
        of Lyapunov exponents."""
        return self.x0.shape[-1]

    def _new(self, fn: Callable[[Tensor], Tensor]) -> "CellNetwork":
        return CellNetwork(self.kind, **{n: fn(getattr(self, n)) for n in PARAM_NAMES})

    # ---- dynamics
    def step(self, x: Tensor, s: Tensor) -> Tensor:
        """One step: x (M, B, S), s (M, B) -> (M, B, S)."""
        return cell_step(self.kind, self.J, self.W_s, self.b, x, s.to(self.dtype))

    def recurrent_map(self, tangents: str = "closed_form") -> CellMap:
        """The state map of the M networks for :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`
        (state (M, S), drive from :meth:`drive`). ``tangents`` (:data:`TANGENT_METHODS`): the cell's
        Jacobian written out (``"closed_form"``, :class:`ClosedFormCellMap`, default), forward-mode
        JVPs with the tangent columns folded into the batch (``"fold"``, :class:`FoldedCellMap`) or
        vmapped (``"vmap"``, the generic :class:`~floss_utils.lyapunov.maps.CellMap`)."""
        if tangents not in TANGENT_METHODS:
            raise ValueError(f"tangents must be one of {TANGENT_METHODS}, got {tangents!r}")
        kind, J, W_s, b = self.kind, self.J, self.W_s, self.b

        def step_fn(x: Tensor, s: Optional[Tensor]) -> Tensor:
            lead = x.shape[:-1]  # (M,) or (M, k)
            s = torch.zeros(lead, dtype=x.dtype, device=x.device) if s is None else s
            if x.ndim == 2:
                return cell_step(kind, J, W_s, b, x.unsqueeze(1), s.unsqueeze(1)).squeeze(1)
            return cell_step(kind, J, W_s, b, x, s)

        if tangents == "closed_form":
            return ClosedFormCellMap(kind, J, W_s, b, step_fn, self.n_members, self.n_units, dtype=self.dtype,
                                     device=self.device)
        cls = FoldedCellMap if tangents == "fold" else CellMap
        return cls(step_fn, self.n_members, self.n_units, dtype=self.dtype, device=self.device)

    def drive(self, s: Tensor) -> Callable[[int], Tensor]:
        """The input of :meth:`recurrent_map` at step t: bits s (T, M) -> ``t -> s[t]`` (M,) (the
        cell projects the scalar input onto its gates itself)."""
        if s.ndim != 2 or s.shape[1] != self.n_members:
            raise ValueError(f"inputs must have shape (T, M={self.n_members}), got {tuple(s.shape)}")
        s = s.to(self.dtype)
        return lambda t: s[t]

    def _steps(self, s: Tensor, x: Tensor) -> Iterator[Tensor]:
        for s_t in s.to(self.dtype).unbind(0):
            x = cell_step(self.kind, self.J, self.W_s, self.b, x, s_t)
            yield x

    def run(self, s: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """States ``x_1 .. x_T`` (T, M, B, S) for inputs s (T, M, B); x0 defaults to the learned one."""
        return torch.stack(list(self._steps(s, self._check_inputs(s, x0))))

    def readout(self, states: Tensor) -> Tensor:
        """Logits ``w_r . h + c``: states (..., M, B, S) -> (..., M, B)."""
        h = states[..., : self.n_hidden]
        return torch.matmul(h, self.w_r.unsqueeze(-1)).squeeze(-1) + self.c.unsqueeze(-1)

    def logits(self, s: Tensor, x0: Optional[Tensor] = None) -> Tensor:
        """Readout logits ``r_1 .. r_T`` for inputs s (T, M, B): (T, M, B)."""
        N, w = self.n_hidden, self.w_r.unsqueeze(1)
        out = [(x[..., :N] * w).sum(-1) for x in self._steps(s, self._check_inputs(s, x0))]
        return torch.stack(out) + self.c.unsqueeze(-1)


def init_cell_networks(
    kind: str,
    seeds: Sequence[int],
    n_hidden: int = 80,
    batch_size: int = 16,
    *,
    gain: float = 1.0,
    relax_steps: int = 100,
    input_std: float = 1.0,
    readout_std: Optional[float] = None,
    bias_scale: float = 0.1,
    forget_bias: float = 0.0,
    update_bias: float = 0.0,
    offset: float = 0.001,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device = "cpu",
) -> CellNetwork:
    """M = len(seeds) gated networks of ``kind`` ("gru" or "lstm"), member m from ``seeds[m]`` alone.

    Other arguments as :func:`floss_utils.flossing.tanh_network.init_gf_networks`.

    Args:
        n_hidden: N; batch_size: B, the number of learned initial states.
        gain: g, the recurrent blocks are ``N(0, g^2/N)``.
        readout_std: std of ``w_r`` entries (default ``1/sqrt(N)``).
        forget_bias: added to the LSTM forget-gate bias (ignored for the GRU).
        update_bias: added to the GRU update-gate bias, the gate that carries its state over
            (ignored for the LSTM).
    """
    if kind not in CELL_KINDS:
        raise ValueError(f"kind must be one of {list(CELL_KINDS)}, got {kind!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one network")
    if n_hidden < 1 or batch_size < 1:
        raise ValueError(f"need n_hidden >= 1 and batch_size >= 1, got {n_hidden}, {batch_size}")
    if relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {relax_steps}")
    if not (math.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain}")
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    N, B, G = n_hidden, batch_size, CELL_KINDS[kind]
    S = N if kind == "gru" else 2 * N
    rstd = 1.0 / math.sqrt(N) if readout_std is None else float(readout_std)
    parts: dict[str, list[Tensor]] = {n: [] for n in ("J", "W_s", "b", "w_r", "x0")}
    for seed in seeds:
        g = seeded_generator(seed, 0)  # purpose 0: network initialization
        parts["J"].append(gain * torch.randn(G * N, N, dtype=torch.float64, generator=g) / math.sqrt(N))
        parts["W_s"].append(input_std * torch.randn(G * N, dtype=torch.float64, generator=g))
        parts["w_r"].append(rstd * torch.randn(N, dtype=torch.float64, generator=g))
        b = bias_scale * torch.rand(G * N, dtype=torch.float64, generator=g)
        if kind == "lstm":
            b[N:2 * N] += forget_bias
        else:
            b[N:2 * N] += update_bias
        parts["b"].append(b)
        x = torch.randn(B, S, dtype=torch.float64, generator=g)
        x[:, :N] = torch.tanh(x[:, :N])
        parts["x0"].append(x)
    t = {n: torch.stack(v).to(device=device, dtype=dtype) for n, v in parts.items()}
    x = t["x0"]
    zeros = torch.zeros(len(seeds), B, dtype=dtype, device=device)
    for _ in range(relax_steps):
        x = cell_step(kind, t["J"], t["W_s"], t["b"], x, zeros)
    c = torch.full((len(seeds),), float(offset), dtype=dtype, device=device)
    return CellNetwork(kind, J=t["J"], W_s=t["W_s"], b=t["b"], w_r=t["w_r"], c=c, x0=x.contiguous())
