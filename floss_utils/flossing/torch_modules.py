"""Gradient flossing for anyone's PyTorch model: ``torch.nn.RNN``, ``GRU``, ``LSTM``, their
``*Cell`` versions, or any cell ``step(state, x) -> state``, in an ordinary training loop.

Flossing an ``nn.LSTM`` takes a few lines in the user's own loop::

    from floss_utils.flossing import ModuleFlosser

    lstm = torch.nn.LSTM(1, 64, batch_first=True)
    flosser = ModuleFlosser(lstm, k=32)                         # the 32 largest exponents, target 0
    floss_opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)   # flossing has its own optimizer (GF)
    flosser.floss(floss_opt, sample_inputs, steps=500)         # before training
    for epoch in range(1, epochs + 1):
        if epoch % 100 == 0:                                   # during training, every E epochs
            flosser.floss(floss_opt, sample_inputs, steps=100)
        ...                                                    # the usual task step

or, instead of separate flossing steps, ``loss = task_loss + beta * flosser.loss(x)``.
``sample_inputs`` is a tensor of input sequences or a function returning fresh ones, in the
module's own layout (``(B, T, I)`` here). The schedules of the book's trainer
(:class:`~floss_utils.flossing.trainer.Schedule`) plug in as
``flosser.floss(floss_opt, sample_inputs, steps=sched.floss_steps(epoch))`` at the start of
every epoch.

The state map
-------------
For a module of ``L`` layers, one time step maps the state ``s_{t-1}`` to ``s_t`` given the
input ``x_t``; layer ``l > 1`` reads the new output of layer ``l - 1``, exactly as the module's
own forward pass does. The state is every layer's hidden state, and for the LSTM every layer's
cell state, concatenated in this order (:func:`pack_state`; :func:`unpack_state` undoes it)::

    s = [h^(1), h^(2), ..., h^(L), c^(1), c^(2), ..., c^(L)]      (LSTM)
    s = [h^(1), h^(2), ..., h^(L)]                                 (RNN, GRU)

i.e. PyTorch's own final states ``h_n`` (and ``c_n``), shape ``(L, B, H)``, flattened layer by
layer, ``h`` before ``c``. Its size :func:`state_size` is ``L * H`` (``L * (H_out + H)`` for the
LSTM, where ``H_out = proj_size`` or ``H``). The Jacobian of one step is block lower-triangular
in the layers (a layer never reads a later one), so the spectrum of a stack is the union of the
spectra of its layers, each driven by the layer below (tested with a disconnected stack).

The exponents are those of this map along the trajectory the module runs on the given inputs
from the given initial state (zeros by default, as in the module), ``k`` of them, by the QR
estimator :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum` (Cholesky QR with its
hand-written backward in float64). The Jacobian is never formed: ``D_t Q`` comes from
forward-mode Jacobian-vector products of the step (the cell equations are written once from the
module's own weight tensors ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ...; tested
against the module's forward pass). The weights are read from the module at every call, so the
exponents are differentiable with respect to ``module.parameters()`` and an optimizer on them
flosses the module (``torch.func.functional_call`` substitutions are seen too).

Batches of sequences are batches of trajectories: one spectrum per sequence (``(B, k)``), or
their mean (``reduce="mean"``). Everything runs on the module's device in the module's dtype
(or ``dtype=``), with no host synchronization inside the time loop on accelerators.

Refused with a ``TypeError``/``ValueError`` that names what and where: modules other than the
six above (wrap your own cell as a function ``step(state, x)``), packed sequences,
bidirectional modules, dropout between layers (unless ``ignore_dropout=True``: the exponents
are then those of the map without dropout), ``k`` larger than the state, inputs whose feature
size does not match ``input_size``, initial states of the wrong shape, sequences too short for
the transient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence, Union

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import resolve_dtype
from ..lyapunov.estimator import NonFiniteError, lyapunov_spectrum
from ..lyapunov.maps import RecurrentMap, random_orthonormal
from .flosser import flossing_loss, flossing_transient

__all__ = [
    "SUPPORTED_MODULES",
    "state_size",
    "pack_state",
    "unpack_state",
    "RecurrentModuleMap",
    "module_exponents",
    "ModuleFlosser",
    "lstm_gate_means",
]

#: the torch.nn recurrent modules whose weights :func:`module_exponents` reads directly
SUPPORTED_MODULES = (nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell)

Cell = Callable[[Tensor, Tensor], Tensor]
Model = Union[nn.RNNBase, nn.RNNCellBase, Cell]
Hx = Union[None, Tensor, tuple[Tensor, Tensor]]
Tangents = Literal["auto", "stacked", "fold", "vmap"]


# --------------------------------------------------------------------------------------------
# What a model is: kind, layers, sizes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """The shape of a model's state map. ``kind``: rnn_tanh, rnn_relu, gru, lstm or cell."""

    kind: str
    layers: int
    hidden: int  # H: hidden (and LSTM cell-state) size per layer; the state size for cells
    out: int  # H_out: size of h per layer (proj_size for a projected LSTM, else H)
    input_size: Optional[int]
    bias: bool
    batch_first: bool
    is_cell: bool  # nn.*Cell (one layer, weights without the _l0 suffix) or a user cell
    where: str  # how to name the model in messages

    @property
    def size(self) -> int:
        return self.layers * (self.out + (self.hidden if self.kind == "lstm" else 0))

    @property
    def gates(self) -> int:
        return {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}[self.kind]


def _spec(model: Model, *, batch_first: Optional[bool] = None, state_size_: Optional[int] = None,
          ignore_dropout: bool = False) -> _Spec:
    if isinstance(model, nn.RNNBase):
        name = type(model).__name__
        where = f"nn.{name}(input_size={model.input_size}, hidden_size={model.hidden_size}, num_layers={model.num_layers})"
        if type(model) not in SUPPORTED_MODULES:
            if model.mode not in ("RNN_TANH", "RNN_RELU", "GRU", "LSTM"):  # pragma: no cover - torch has no other
                raise TypeError(f"{where}: unsupported recurrent mode {model.mode!r}")
        if model.bidirectional:
            raise ValueError(f"{where} is bidirectional: its backward direction runs against time, so it "
                             f"has no forward state map whose exponents could be flossed; use "
                             f"bidirectional=False (or floss each direction as its own module)")
        if model.num_layers > 1 and model.dropout > 0 and not ignore_dropout:
            raise ValueError(f"{where} has dropout={model.dropout} between layers: with dropout the state "
                             f"map is random and has no exponents to floss. Pass ignore_dropout=True to "
                             f"floss the map without dropout (the one model.eval() runs), or set "
                             f"model.dropout = 0")
        if batch_first is not None and bool(batch_first) != model.batch_first:
            raise ValueError(f"batch_first={batch_first} given, but {where} has batch_first={model.batch_first}; "
                             f"inputs follow the module's own layout (leave batch_first unset)")
        kind = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "GRU": "gru", "LSTM": "lstm"}[model.mode]
        proj = getattr(model, "proj_size", 0) or 0
        return _Spec(kind, model.num_layers, model.hidden_size, proj or model.hidden_size, model.input_size,
                     model.bias, model.batch_first, False, where)
    if isinstance(model, nn.RNNCellBase):
        name = type(model).__name__
        where = f"nn.{name}(input_size={model.input_size}, hidden_size={model.hidden_size})"
        if isinstance(model, nn.RNNCell):
            kind = "rnn_relu" if model.nonlinearity == "relu" else "rnn_tanh"
        elif isinstance(model, nn.GRUCell):
            kind = "gru"
        elif isinstance(model, nn.LSTMCell):
            kind = "lstm"
        else:  # pragma: no cover - torch has no other RNNCellBase
            raise TypeError(f"{where}: unsupported cell type {name}")
        return _Spec(kind, 1, model.hidden_size, model.hidden_size, model.input_size, model.bias,
                     bool(batch_first), True, where)
    if isinstance(model, nn.Module):
        raise TypeError(
            f"unsupported module {type(model).__module__}.{type(model).__name__}: module_exponents takes "
            f"torch.nn.RNN, GRU, LSTM, RNNCell, GRUCell or LSTMCell, or a function step(state, x) -> state "
            f"for any other cell (for a cell module `my_cell`, pass `lambda s, x: my_cell(s, x)`)")
    if not callable(model):
        raise TypeError(f"model must be a torch.nn recurrent module or a function step(state, x) -> state, "
                        f"got {type(model).__name__}")
    if state_size_ is None:
        raise ValueError("a user cell step(state, x) needs its state size: pass state_size=S or an initial "
                         "state hx of shape (B, S)")
    if isinstance(state_size_, bool) or not isinstance(state_size_, int) or state_size_ < 1:
        raise ValueError(f"state_size must be a positive int, got {state_size_!r}")
    where = f"cell {getattr(model, '__qualname__', type(model).__name__)}"
    return _Spec("cell", 1, state_size_, state_size_, None, True, bool(batch_first), True, where)


def state_size(model: Union[nn.RNNBase, nn.RNNCellBase]) -> int:
    """The dimension of a module's state map: the number of Lyapunov exponents it has.

    Args:
        model: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or one of their ``*Cell`` versions.

    Returns:
        ``L * H`` for RNN and GRU, ``L * (H_out + H)`` for the LSTM (``H_out = proj_size`` or ``H``).
    """
    return _spec(model, ignore_dropout=True).size


def pack_state(model: Union[nn.RNNBase, nn.RNNCellBase], hx: Union[Tensor, tuple[Tensor, Tensor]]) -> Tensor:
    """A module's hidden state in PyTorch's format as one state vector per sequence.

    Args:
        model: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or a ``*Cell``.
        hx: what the module takes and returns as its state: ``h`` of shape ``(L, B, H_out)`` (or
            ``(L, H_out)`` unbatched) for RNN and GRU, the pair ``(h, c)`` for the LSTM (``c``:
            ``(L, B, H)``); for the cells ``(B, H)`` or the pair ``(h, c)``.

    Returns:
        ``(B, S)`` (or ``(S,)`` unbatched): ``[h^(1), ..., h^(L), c^(1), ..., c^(L)]`` (see the
        module docstring).

    Raises:
        ValueError: a state of the wrong shape (the message gives the expected one).
    """
    spec = _spec(model, ignore_dropout=True)
    return _pack(spec, hx)


def _pack(spec: _Spec, hx) -> Tensor:
    lstm = spec.kind == "lstm"
    if lstm:
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2 and all(isinstance(t, Tensor) for t in hx)):
            raise ValueError(f"{spec.where}: the state of an LSTM is a pair (h, c) of tensors, got {type(hx).__name__}")
        parts = [(hx[0], spec.out, "h"), (hx[1], spec.hidden, "c")]
    else:
        if not isinstance(hx, Tensor):
            raise ValueError(f"{spec.where}: the state must be a tensor, got {type(hx).__name__}")
        parts = [(hx, spec.out, "h")]
    out = []
    for t, width, name in parts:
        if spec.is_cell:  # (B, H) or (H,)
            if t.ndim not in (1, 2) or t.shape[-1] != width:
                raise ValueError(f"{spec.where}: {name} must have shape (B, {width}) or ({width},), got {tuple(t.shape)}")
            out.append(t)
        else:  # (L, B, H) or (L, H)
            if t.ndim not in (2, 3) or t.shape[0] != spec.layers or t.shape[-1] != width:
                raise ValueError(f"{spec.where}: {name} must have shape (num_layers, B, {width}) = "
                                 f"({spec.layers}, B, {width}) or ({spec.layers}, {width}) unbatched, "
                                 f"got {tuple(t.shape)}")
            out.append(t.movedim(0, -2).flatten(-2))  # (B, L * H): layer by layer
    if len({p.shape[:-1] for p in out}) != 1:
        raise ValueError(f"{spec.where}: h and c disagree on the batch: h {tuple(hx[0].shape)}, c {tuple(hx[1].shape)}")
    return torch.cat(out, dim=-1)


def unpack_state(model: Union[nn.RNNBase, nn.RNNCellBase], state: Tensor) -> Union[Tensor, tuple[Tensor, Tensor]]:
    """The inverse of :func:`pack_state`: state vectors ``(B, S)`` (or ``(S,)``) to the module's format.

    Args:
        model: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` or a ``*Cell``.
        state: ``(B, S)`` or ``(S,)`` with ``S = state_size(model)``.

    Returns:
        ``h`` ``(L, B, H_out)`` or the pair ``(h, c)`` for the LSTM (cells: ``(B, H)``).

    Raises:
        ValueError: when the last dimension is not ``S``.
    """
    spec = _spec(model, ignore_dropout=True)
    return _unpack(spec, state)


def _unpack(spec: _Spec, state: Tensor):
    if not isinstance(state, Tensor) or state.ndim not in (1, 2) or state.shape[-1] != spec.size:
        got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"{spec.where}: a state must have shape (B, {spec.size}) or ({spec.size},), got {got}")
    L = spec.layers
    h = state[..., : L * spec.out]
    parts = [(h, spec.out)]
    if spec.kind == "lstm":
        parts.append((state[..., L * spec.out:], spec.hidden))
    res = []
    for t, width in parts:
        if spec.is_cell:
            res.append(t)
        else:
            res.append(t.unflatten(-1, (L, width)).movedim(-2, 0))
    return tuple(res) if spec.kind == "lstm" else res[0]


# --------------------------------------------------------------------------------------------
# The step, written from the module's weight tensors
# --------------------------------------------------------------------------------------------


def _weights(model: nn.Module, spec: _Spec, dtype: torch.dtype) -> list[dict[str, Optional[Tensor]]]:
    """Per layer: w_ih, w_hh, b_ih, b_hh, w_hr (projection), read from the module now (so that
    optimizers and torch.func.functional_call are seen) and cast to ``dtype`` (differentiably)."""
    out = []
    for layer in range(spec.layers):
        sfx = "" if spec.is_cell else f"_l{layer}"

        def get(name: str) -> Optional[Tensor]:
            w = getattr(model, f"{name}{sfx}", None)
            return None if w is None else w.to(dtype)

        out.append({"w_ih": get("weight_ih"), "w_hh": get("weight_hh"),
                    "b_ih": get("bias_ih") if spec.bias else None,
                    "b_hh": get("bias_hh") if spec.bias else None,
                    "w_hr": get("weight_hr") if spec.kind == "lstm" and spec.out != spec.hidden else None})
    return out


def _pointwise(kind: str, xp: Optional[Tensor], gh: Tensor, h: Optional[Tensor], c: Optional[Tensor]
               ) -> tuple[Tensor, Optional[Tensor]]:
    """One layer's elementwise update (PyTorch's gate order and equations), from the input
    projection ``xp = W_ih x + b_ih`` and the recurrent one ``gh = W_hh h + b_hh`` (..., G H),
    the layer's ``h`` (GRU) and ``c`` (LSTM, (..., H)). ``xp=None``: already added into ``gh``
    (RNN and LSTM only). Returns ``h'`` (before an LSTM projection) and ``c'``."""
    pre = gh if xp is None else xp + gh
    if kind == "rnn_tanh":
        return torch.tanh(pre), None
    if kind == "rnn_relu":
        return torch.relu(pre), None
    if kind == "gru":
        xr, xz, xn = xp.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n), None  # (1 - z) n + z h
    gi, gf, gg, go = pre.chunk(4, -1)
    c_new = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
    return torch.sigmoid(go) * torch.tanh(c_new), c_new


def _layer(kind: str, xp: Tensor, h: Tensor, c: Optional[Tensor], w: dict) -> tuple[Tensor, Optional[Tensor]]:
    """One layer, one step: ``h`` (..., H_out), ``c`` (..., H) for the LSTM, ``xp`` the input
    projection (..., G H)."""
    h_new, c_new = _pointwise(kind, xp, F.linear(h, w["w_hh"], w["b_hh"]), h, c)
    if w["w_hr"] is not None:
        h_new = F.linear(h_new, w["w_hr"])
    return h_new, c_new


def _linear_pair(x: Tensor, tx: Tensor, W: Tensor, b: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """``x W^T + b`` (B, m) for primal rows ``x`` (B, n) and ``t W^T`` (B, k, m) for their tangents
    ``tx`` (B, k, n) - forward-mode AD of a linear map - as one matrix product of the stacked rows."""
    y = F.linear(torch.cat([x.unsqueeze(1), tx], dim=1), W)
    p = y[:, 0]
    return (p if b is None else p + b), y[:, 1:]


def _dual(primal: Tensor, tangent: Tensor) -> Tensor:
    """A dual tensor (B, k, n) from one primal row per system (B, n) and its k tangents."""
    return fwAD.make_dual(primal.unsqueeze(1).expand_as(tangent).contiguous(), tangent.contiguous())


class RecurrentModuleMap(RecurrentMap):
    """The state map of a recurrent module (or cell) along one batch of input sequences, as a
    :class:`~floss_utils.lyapunov.maps.RecurrentMap` for
    :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`.

    Built by :func:`module_exponents`; use it directly to run the estimator with your own
    options. :meth:`step` takes the states ``(B, S)`` (order of :func:`pack_state`) and the drive
    of the step (:meth:`drive`: the first layer's input projection for modules, the raw input
    for user cells). The Jacobian is applied to ``k`` tangent vectors by forward-mode automatic
    differentiation, in one of three ways (``tangents``), which give the same numbers:

    * ``"stacked"`` (modules): dual numbers through each layer's elementwise gate equations; the
      layer's matrix products, being linear, are applied to the primal state and its ``k``
      tangents stacked as ``1 + k`` rows of one product (``step_and_tangent``). Half the
      matrix-product work of ``"fold"``, which repeats the primal ``k`` times;
    * ``"fold"``: the ``k`` tangent columns folded into the batch as dual numbers, one pass
      over ``B k`` rows (``torch.autograd.forward_ad``);
    * ``"vmap"``: ``torch.func.jvp`` mapped over the ``k`` columns with ``torch.func.vmap``.

    Args:
        model: a supported module or a user cell (see :func:`module_exponents`).
        inputs: ``(T, B, I)``, time-major, on the computation's device and dtype.
        dtype: the precision of the computation.
        tangents: ``"stacked"`` (modules only), ``"fold"`` or ``"vmap"``.
        spec: internal description of the model (from :func:`module_exponents`).
    """

    def __init__(self, model: Model, inputs: Tensor, dtype: torch.dtype, tangents: str, spec: "_Spec") -> None:
        if tangents == "stacked" and spec.kind == "cell":
            raise ValueError("tangents='stacked' needs a torch.nn recurrent module; use 'fold' or 'vmap' for a cell")
        self.model, self.spec, self.tangents = model, spec, tangents
        self._b, self._dtype, self._device = inputs.shape[1], dtype, inputs.device
        if spec.kind == "cell":
            self.w = None
            self._drive = inputs
        else:
            self.w = _weights(model, spec, dtype)  # type: ignore[arg-type]
            w0 = self.w[0]
            self._drive = F.linear(inputs, w0["w_ih"], w0["b_ih"])  # (T, B, G H): all steps at once
        if tangents == "stacked":  # the estimator uses the fused step when a map has one
            self.step_and_tangent = self._step_and_tangent

    # ---- RecurrentMap interface
    @property
    def batch_size(self) -> int:
        return self._b

    @property
    def n_units(self) -> int:
        return self.spec.size

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def drive(self, t: int) -> Tensor:
        """The drive of step ``t`` (0-based): ``(B, G H)`` input projection, or ``(B, I)`` for cells."""
        return self._drive[t]

    def _slices(self, layer: int) -> tuple[slice, Optional[slice]]:
        L, Ho, H = self.spec.layers, self.spec.out, self.spec.hidden
        hs = slice(layer * Ho, (layer + 1) * Ho)
        cs = slice(L * Ho + layer * H, L * Ho + (layer + 1) * H) if self.spec.kind == "lstm" else None
        return hs, cs

    def _assemble(self, hs: list[Tensor], cs: list[Tensor]) -> Tensor:
        return hs[0] if len(hs) == 1 and not cs else torch.cat(hs + cs, dim=-1)

    def step(self, s: Tensor, u: Optional[Tensor]) -> Tensor:
        """One step of the state map on states ``(..., S)`` (any leading dims) with drive ``u``
        (broadcastable to the leading dims)."""
        spec = self.spec
        if spec.kind == "cell":
            return self.model(s, u)  # type: ignore[operator]
        assert self.w is not None and u is not None
        new_h: list[Tensor] = []
        new_c: list[Tensor] = []
        xp = u
        for layer, w in enumerate(self.w):
            hsl, csl = self._slices(layer)
            if layer > 0:
                xp = F.linear(new_h[-1], w["w_ih"], w["b_ih"])
            h, c = _layer(spec.kind, xp, s[..., hsl], None if csl is None else s[..., csl], w)
            new_h.append(h)
            if c is not None:
                new_c.append(c)
        return self._assemble(new_h, new_c)

    def _step_and_tangent(self, s: Tensor, u: Optional[Tensor], Q: Tensor) -> tuple[Tensor, Tensor]:
        """The next states ``(B, S)`` and ``D_t Q`` ``(B, S, k)`` in one pass (``"stacked"``)."""
        kind = self.spec.kind
        assert self.w is not None and u is not None
        Tq = Q.mT  # (B, k, S): the tangents as rows
        new_h: list[Tensor] = []
        new_c: list[Tensor] = []
        t_h: list[Tensor] = []
        t_c: list[Tensor] = []
        xp, xt = u, None  # the first layer's input does not depend on the state: no tangent
        for layer, w in enumerate(self.w):
            hsl, csl = self._slices(layer)
            h, th = s[:, hsl], Tq[:, :, hsl]
            if layer > 0:
                xp, xt = _linear_pair(new_h[-1], t_h[-1], w["w_ih"], w["b_ih"])
            gp, gt = _linear_pair(h, th, w["w_hh"], w["b_hh"])
            # Every operand of a dual operation must be dual: PyTorch 2.13 runs an operation between
            # a dual and a plain tensor through a slow Python path (~0.3 ms). The first layer's
            # input has no tangent: added into the recurrent pre-activation's primal (RNN, LSTM),
            # or given a zero tangent (GRU, whose candidate gate needs it apart).
            if xt is None and kind != "gru":
                gp, xd = gp + xp, None
            with fwAD.dual_level():
                if xt is None and kind == "gru":
                    xd = _dual(xp, torch.zeros_like(gt))
                elif xt is not None:
                    xd = _dual(xp, xt)
                out_h, out_c = _pointwise(
                    kind,
                    xd,
                    _dual(gp, gt),
                    _dual(h, th) if kind == "gru" else None,
                    _dual(s[:, csl], Tq[:, :, csl]) if csl is not None else None,
                )
                ph, th_new = fwAD.unpack_dual(out_h)
                if out_c is not None:
                    pc, tc_new = fwAD.unpack_dual(out_c)
            ph = ph[:, 0]  # the k primal rows are copies
            if w["w_hr"] is not None:
                ph, th_new = _linear_pair(ph, th_new, w["w_hr"], None)
            new_h.append(ph)
            t_h.append(th_new)
            if out_c is not None:
                new_c.append(pc[:, 0])
                t_c.append(tc_new)
        return self._assemble(new_h, new_c), self._assemble(t_h, t_c).mT

    def tangent(self, h: Tensor, u: Optional[Tensor], h_next: Tensor, Q: Tensor) -> Tensor:
        """``D_t Q`` for tangent vectors ``Q`` ``(B, S, k)``, by forward-mode AD."""
        B, S, k = Q.shape
        if self.tangents == "stacked":
            return self._step_and_tangent(h, u, Q)[1]
        if self.tangents == "vmap":
            def jvp_one(v: Tensor) -> Tensor:
                return torch.func.jvp(lambda x: self.step(x, u), (h,), (v,))[1]

            return torch.func.vmap(jvp_one, in_dims=2, out_dims=2)(Q)
        hk = h.unsqueeze(1).expand(B, k, S).contiguous()
        tk = Q.mT.contiguous()
        if self.spec.kind == "cell":  # a user cell takes 2-D batches: fold (B, k) into B k rows
            hk, tk = hk.reshape(B * k, S), tk.reshape(B * k, S)
            uk = u.unsqueeze(1).expand(B, k, *u.shape[1:]).reshape(B * k, *u.shape[1:])
        else:  # the module step broadcasts the drive over the k columns
            uk = u.unsqueeze(1)
        with fwAD.dual_level():
            out = self.step(fwAD.make_dual(hk, tk), uk)
            tangent = fwAD.unpack_dual(out).tangent
        return tangent.reshape(B, k, S).mT


# --------------------------------------------------------------------------------------------
# Exponents of a module along its own trajectory
# --------------------------------------------------------------------------------------------


def _param_like(model: Model) -> Optional[Tensor]:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p
        for b in model.buffers():  # pragma: no cover - recurrent modules always have weights
            return b
    return None


def _prepare(model: Model, inputs: Tensor, hx: Hx, spec: _Spec, dtype: Optional[torch.dtype | str]
             ) -> tuple[Tensor, Tensor, bool, torch.dtype]:
    """Inputs (T, B, I) time-major and initial states (B, S), on the model's device and in the
    computation's dtype; whether the inputs were unbatched."""
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        raise TypeError(f"{spec.where}: packed sequences are not supported: the exponents of a batch need "
                        f"every trajectory to run the same number of steps. Pass a padded tensor of "
                        f"sequences of one length (e.g. cut to the shortest), in the module's layout")
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{spec.where}: inputs must be a tensor of input sequences, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(f"{spec.where}: inputs must be floating point, got {inputs.dtype}")
    ref = _param_like(model)
    if dtype is None:
        dtype = ref.dtype if ref is not None else (hx.dtype if isinstance(hx, Tensor) else inputs.dtype)
    try:  # a dtype or its name, as the book's parameters spell it
        dtype = resolve_dtype(dtype)
    except ValueError as exc:
        raise ValueError(f"{spec.where}: exponents are computed in float32 or float64 ({exc})") from None
    device = ref.device if ref is not None else (hx.device if isinstance(hx, Tensor) else inputs.device)
    layout = "(B, T, I)" if spec.batch_first else "(T, B, I)"
    if inputs.ndim == 2:
        unbatched = True
        x = inputs.unsqueeze(1)  # (T, 1, I)
    elif inputs.ndim == 3:
        unbatched = False
        x = inputs.transpose(0, 1) if spec.batch_first else inputs
    else:
        raise ValueError(f"{spec.where}: inputs must have shape {layout} (or (T, I) for one sequence), "
                         f"got {tuple(inputs.shape)}")
    if spec.input_size is not None and x.shape[-1] != spec.input_size:
        raise ValueError(f"{spec.where}: inputs have {x.shape[-1]} features per step but the module's "
                         f"input_size is {spec.input_size} (inputs of shape {tuple(inputs.shape)}, layout {layout})")
    x = x.to(device=device, dtype=dtype, non_blocking=True)
    B = x.shape[1]
    if hx is None:
        s0 = torch.zeros(B, spec.size, dtype=dtype, device=device)
    else:
        if spec.kind == "cell":
            if not isinstance(hx, Tensor) or hx.shape[-1] != spec.size or hx.ndim not in (1, 2):
                got = tuple(hx.shape) if isinstance(hx, Tensor) else type(hx).__name__
                raise ValueError(f"{spec.where}: hx must have shape (B, {spec.size}), got {got}")
            s0 = hx
        else:
            s0 = _pack(spec, hx)
        if s0.ndim == 1:
            s0 = s0.unsqueeze(0)
        if s0.shape[0] != B:
            raise ValueError(f"{spec.where}: the initial state is for {s0.shape[0]} sequence(s) but the inputs "
                             f"hold {B}")
        s0 = s0.to(device=device, dtype=dtype)
    return x, s0, unbatched, dtype


def module_exponents(
    model: Model,
    inputs: Tensor,
    k: Optional[int] = None,
    *,
    hx: Hx = None,
    transient: Optional[int] = None,
    ons: int = 1,
    q0: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    reduce: Literal["none", "mean"] = "none",
    dtype: Optional[torch.dtype | str] = None,
    reorth: str = "auto",
    batch_first: Optional[bool] = None,
    state_size: Optional[int] = None,
    ignore_dropout: bool = False,
    tangents: Tangents = "auto",
) -> Tensor:
    """The ``k`` largest Lyapunov exponents of a recurrent model's state map along its own
    input-driven trajectories, differentiable with respect to its parameters.

    Args:
        model: ``torch.nn.RNN`` (tanh or relu), ``GRU`` or ``LSTM`` (any number of layers,
            ``batch_first`` either way, with or without biases, LSTM ``proj_size`` included),
            ``nn.RNNCell``/``GRUCell``/``LSTMCell``, or any function ``step(state, x) -> state``
            with ``state`` ``(B, S)`` and ``x`` ``(B, I)`` that treats rows independently (for a
            tuple state such as ``(h, c)``, concatenate it yourself).
        inputs: input sequences in the module's layout, ``(B, T, I)`` if ``batch_first`` else
            ``(T, B, I)``, or ``(T, I)`` for one sequence. Moved to the model's device and dtype.
            Each sequence is one trajectory.
        k: number of exponents, ``1 <= k <= S`` (default ``S``, the whole spectrum).
        hx: initial state in the module's own format (``h0`` ``(L, B, H_out)``, or ``(h0, c0)``
            for the LSTM; ``(B, S)`` for a user cell); default zeros, as the module's.
        transient: steps run before the exponents are averaged; default GF's
            ``10 + ceil(T / 10)``.
        ons: steps between QR re-orthonormalizations (exponents do not depend on it in exact
            arithmetic; GF: 1).
        q0: initial tangent bases ``(B, S, k)`` (default Haar-random from ``generator``, on the
            model's device).
        generator: random generator for ``q0`` (a CPU generator works for a model on an
            accelerator: the basis is drawn on the CPU and moved).
        reduce: ``"none"``: one spectrum per sequence; ``"mean"``: their mean.
        dtype: precision of the computation, a dtype or its name (default the model's; ``torch.float64`` casts the
            weights differentiably and uses the Cholesky QR with its fast backward).
        reorth: re-orthonormalization of :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`.
        batch_first: layout of ``inputs`` for cells (``nn.RNN``/``GRU``/``LSTM`` use their own).
        state_size: ``S`` for a user cell when ``hx`` is not given.
        ignore_dropout: compute the exponents of a multi-layer module with ``dropout > 0``
            without its dropout (refused otherwise).
        tangents: ``"stacked"`` (modules only), ``"fold"``, ``"vmap"`` (see
            :class:`RecurrentModuleMap`; the same numbers) or ``"auto"``: ``"stacked"`` for the
            ``torch.nn`` modules, ``"fold"`` for user cells (``"vmap"`` for a cell that cannot take
            ``B k`` rows). A user cell's weights enter forward-mode AD as plain tensors, which
            PyTorch 2.13 combines with dual ones through a slow Python path (~0.3 ms per
            operation): an ``nn.LSTMCell`` wrapped as a user cell runs ~5x slower than the cell
            itself (k = 4, H = 32).

    Returns:
        ``(B, k)`` exponents per step (natural log), in the order of the QR basis (descending up
        to estimation noise); ``(k,)`` for ``reduce="mean"`` or unbatched inputs.

    Raises:
        TypeError: unsupported module (with what to do instead), packed sequences, non-tensor or
            integer inputs.
        ValueError: bidirectional module, dropout between layers, ``k`` out of range, inputs whose
            feature size differs from ``input_size``, initial state of the wrong shape, a
            transient that leaves no averaged step.
        NonFiniteError: the state or its tangent dynamics became NaN/inf (names the sequence and
            the step).
    """
    hx_size = hx.shape[-1] if isinstance(hx, Tensor) else None
    spec = _spec(model, batch_first=batch_first, state_size_=state_size if state_size is not None else hx_size,
                 ignore_dropout=ignore_dropout)
    if reduce not in ("none", "mean"):
        raise ValueError(f"reduce must be 'none' or 'mean', got {reduce!r}")
    if tangents not in ("auto", "stacked", "fold", "vmap"):
        raise ValueError(f"tangents must be 'auto', 'stacked', 'fold' or 'vmap', got {tangents!r}")
    S = spec.size
    k = S if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > S:
        what = (f"{spec.layers} layer(s) x (h: {spec.out} + c: {spec.hidden})" if spec.kind == "lstm"
                else f"{spec.layers} layer(s) x h: {spec.out}" if spec.kind != "cell" else "the cell's state")
        raise ValueError(f"{spec.where}: k = {k} exponents requested but its state has only S = {S} dimensions "
                         f"({what}); need k <= {S}")
    x, s0, unbatched, dt = _prepare(model, inputs, hx, spec, dtype)
    T = x.shape[0]
    if transient is None:
        transient = flossing_transient(T)
        if transient >= T:
            raise ValueError(f"{spec.where}: sequences of T = {T} steps are too short for the default transient "
                             f"10 + ceil(T/10) = {transient}; pass transient= explicitly (0 <= transient < T)")
    elif isinstance(transient, bool) or not isinstance(transient, int) or not 0 <= transient < T:
        raise ValueError(f"{spec.where}: transient must be an int in [0, T) = [0, {T}), got {transient!r}")
    mode = tangents if tangents != "auto" else ("fold" if spec.kind == "cell" else "stacked")
    system = RecurrentModuleMap(model, x, dt, mode, spec)
    if q0 is not None:
        q0 = q0.to(device=s0.device, dtype=dt)
        if q0.ndim == 2 and unbatched:
            q0 = q0.unsqueeze(0)
    elif generator is not None and generator.device != s0.device:  # e.g. a CPU generator, a CUDA model
        q0 = random_orthonormal(s0.shape[0], S, k, dtype=dt, device=generator.device,
                                generator=generator).to(s0.device)
    try:
        res = lyapunov_spectrum(system, s0, system.drive, steps=T - transient, k=k, transient=transient, ons=ons,
                                q0=q0, reorth=reorth, generator=generator)  # type: ignore[arg-type]
    except NonFiniteError as exc:
        hint = (" (a ReLU network has exponents -inf when fewer than k of its units are active at some "
                "step: the tangent volume collapses; floss fewer exponents or keep units active)"
                if spec.kind == "rnn_relu" else "")
        raise NonFiniteError(f"{spec.where}: {exc}{hint}") from None
    lam = res.exponents
    if reduce == "mean" or unbatched:
        return lam.mean(0)
    return lam


# --------------------------------------------------------------------------------------------
# Flossing in the user's loop
# --------------------------------------------------------------------------------------------


class ModuleFlosser:
    """Gradient flossing (Engelken 2023) for a PyTorch recurrent model in the user's own loop.

    Holds the protocol (how many exponents, which target, the transient, ...) and offers the
    exponents (:meth:`exponents`), the flossing loss to add to a task loss (:meth:`loss`), one
    flossing update with the user's optimizer (:meth:`step`), and several of them (:meth:`floss`,
    the building block of both schedules: before training, and every ``E`` epochs during it).

    Args:
        model: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM``, a ``*Cell``, or a function
            ``step(state, x) -> state`` (see :func:`module_exponents`).
        k: number of exponents flossed (GF: 75 of 80 units; must not exceed the state size).
        target: ``lambda*``, the value the exponents are pushed toward (per step; GF: 0).
        transient: steps discarded (default ``10 + ceil(T/10)``).
        ons: steps between QRs.
        dtype: precision of the exponent computation (default the model's).
        reorth, batch_first, state_size, ignore_dropout, tangents: as in :func:`module_exponents`.

    Raises:
        TypeError, ValueError: as :func:`module_exponents`, at construction when the model or
            ``k`` cannot work.
    """

    def __init__(
        self,
        model: Model,
        k: int,
        *,
        target: float = 0.0,
        transient: Optional[int] = None,
        ons: int = 1,
        dtype: Optional[torch.dtype | str] = None,
        reorth: str = "auto",
        batch_first: Optional[bool] = None,
        state_size: Optional[int] = None,
        ignore_dropout: bool = False,
        tangents: Tangents = "auto",
    ) -> None:
        user_cell = callable(model) and not isinstance(model, nn.Module)
        # a user cell's state size may only be known from the first call's hx
        spec = None if user_cell and state_size is None else _spec(
            model, batch_first=batch_first, state_size_=state_size, ignore_dropout=ignore_dropout)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if spec is not None and k > spec.size:
            raise ValueError(f"{spec.where}: k = {k} exponents requested but its state has only "
                             f"S = {spec.size} dimensions; need k <= {spec.size}")
        if not math.isfinite(float(target)):
            raise ValueError(f"target must be a finite number, got {target!r}")
        self.model, self.k, self.target = model, k, float(target)
        self.options = dict(transient=transient, ons=ons, dtype=dtype, reorth=reorth, batch_first=batch_first,
                            state_size=state_size, ignore_dropout=ignore_dropout, tangents=tangents)

    def exponents(self, inputs: Tensor, hx: Hx = None, *, q0: Optional[Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
        """The ``k`` largest exponents along the model's trajectories on ``inputs`` (differentiable).

        Args:
            inputs: input sequences in the model's layout (see :func:`module_exponents`).
            hx: initial state in the model's format (default zeros).
            q0: initial tangent bases ``(B, S, k)``; generator: for a random ``q0``.

        Returns:
            ``(B, k)`` exponents per step (``(k,)`` for one unbatched sequence).
        """
        return module_exponents(self.model, inputs, self.k, hx=hx, q0=q0, generator=generator,
                                **self.options)  # type: ignore[arg-type]

    def loss(self, inputs: Tensor, hx: Hx = None, *, q0: Optional[Tensor] = None,
             generator: Optional[torch.Generator] = None) -> Tensor:
        """The flossing loss ``mean_i (lambda_i - lambda*)^2``, averaged over the sequences.

        Args:
            inputs, hx, q0, generator: as :meth:`exponents`.

        Returns:
            A scalar tensor, differentiable with respect to the model's parameters (add it to
            the task loss, or minimize it alone).
        """
        lam = self.exponents(inputs, hx, q0=q0, generator=generator)
        return flossing_loss(lam, self.target).mean()

    def step(self, optimizer: torch.optim.Optimizer, inputs: Tensor, hx: Hx = None, *,
             q0: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One flossing update: the gradient of :meth:`loss` with respect to the optimizer's
        parameters, then ``optimizer.step()``.

        Only the optimizer's parameters are updated (give it a subset, e.g. the recurrent
        weights, to floss only those); their ``.grad`` is restored afterwards, so a flossing
        step between the task's ``backward()`` and ``step()`` leaves the task's gradients alone.

        Args:
            optimizer: any ``torch.optim`` optimizer (GF: a separate Adam, lr 1e-3).
            inputs, hx, q0, generator: as :meth:`exponents`.

        Returns:
            The flossing loss before the update (a detached scalar tensor; no host sync).

        Raises:
            NonFiniteError: a NaN/inf exponent or gradient (the parameters are left unchanged).
        """
        params = [p for g in optimizer.param_groups for p in g["params"]]
        loss = self.loss(inputs, hx, q0=q0, generator=generator)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        used = [g for g in grads if g is not None]
        # max |g| is NaN/inf iff some entry is (cheaper than isfinite on every entry); one host
        # sync per flossing step, none per time step
        if used and not bool(torch.isfinite(torch.stack([g.abs().amax().to(torch.float64) for g in used])).all()):
            bad = [i for i, g in enumerate(grads) if g is not None and not bool(torch.isfinite(g).all())]
            raise NonFiniteError(f"flossing gradient is NaN/inf for {len(bad)} parameter tensor(s) (first: "
                                 f"index {bad[0]} of the optimizer's parameters, shape "
                                 f"{tuple(params[bad[0]].shape)}); lower the learning rate or k")
        saved = [p.grad for p in params]
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.to(p.dtype)
        optimizer.step()
        for p, g in zip(params, saved):
            p.grad = g
        return loss.detach()

    def floss(self, optimizer: torch.optim.Optimizer, inputs: Union[Tensor, Callable[[], Tensor]], steps: int,
              hx: Hx = None, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """``steps`` flossing updates (GF's pre-flossing: 500 before training; inter-flossing: a
        few hundred every ``E`` epochs).

        Args:
            optimizer: as :meth:`step`.
            inputs: input sequences, or a function returning fresh ones for every step (GF draws
                a fresh input sequence per flossing step).
            steps: number of updates (0 does nothing).
            hx: initial state (default zeros).
            generator: random generator for the tangent bases (one fresh basis per step).

        Returns:
            ``(steps,)`` the flossing loss before each update.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        losses = []
        for _ in range(steps):
            x = inputs() if callable(inputs) else inputs
            losses.append(self.step(optimizer, x, hx, generator=generator))
        if not losses:
            return torch.zeros(0)
        return torch.stack(losses)


@torch.no_grad()
def lstm_gate_means(model: nn.LSTM, inputs: Tensor) -> tuple[float, float]:
    """Mean input gate ``i`` and forget gate ``f`` of a one-layer ``torch.nn.LSTM`` along its own
    trajectories from zero state.

    Args:
        model: a one-layer ``nn.LSTM`` (no projection), ``batch_first`` either way.
        inputs: ``(B, T, input_size)`` (``batch_first=True``) or ``(T, B, input_size)``.
    Returns:
        ``(mean i, mean f)`` over batch, time and units.
    """
    if not isinstance(model, nn.LSTM) or model.num_layers != 1 or model.proj_size:
        raise TypeError("lstm_gate_means takes a one-layer torch.nn.LSTM without projection")
    x = inputs if model.batch_first else inputs.transpose(0, 1)  # (B, T, F)
    h = model(x if model.batch_first else x.transpose(0, 1))[0]
    h = h if model.batch_first else h.transpose(0, 1)
    h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
    pre = torch.nn.functional.linear(x, model.weight_ih_l0, model.bias_ih_l0) + torch.nn.functional.linear(
        h_prev, model.weight_hh_l0, model.bias_hh_l0)
    i, f = torch.sigmoid(pre).chunk(4, -1)[:2]  # PyTorch's gate order: input, forget, cell, output
    return float(i.mean()), float(f.mean())
