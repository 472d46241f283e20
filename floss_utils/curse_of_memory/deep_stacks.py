"""Deep recurrent stacks at initialization (ZO Fig. 5): activity and gradients vs memory.

The network of ZO's deep signal-propagation experiment, **batched over ensemble members**
(every parameter carries a leading member axis ``M``; a member is one memory length x one seed,
so a whole memory sweep is one tensor program)::

    x (d_input) -> encoder (linear, d_input -> d_model)
      -> n_blocks x [ norm -> recurrent layer -> GELU -> norm -> GLU -> + residual ]
      -> decoder (linear, d_model -> d_input)

* recurrent layers (``layer``): ``"complex"`` - complex diagonal RNN without normalization,
  ``h_t = lambda h_{t-1} + B u_t``, ``lambda`` learned as real and imaginary parts;
  ``"lru"`` - the LRU, ``lambda = exp(-exp(nu_log) + i exp(theta_log))``, input scaled by
  ``gamma = exp(gamma_log)`` (initialized to ``sqrt(1 - |lambda|^2)``); both output
  ``y = Re(C h) + D * u`` and both run on :func:`floss_utils.curse_of_memory.scans.diagonal_scan`; ``"gru"`` -
  a GRU (flax's ``GRUCell`` convention, ``h_t = (1 - z) n + z h_{t-1}``) with **chrono
  initialization**: update-gate bias ``b_z = log U[T_min, T_max]``, so ``z ~ T/(1+T)`` keeps the
  state for ~``T`` steps (Tallec & Ollivier 2018).
* memory: a characteristic time ``T_char`` sets ``T_min = T_char``, ``T_max = 2 T_char``; the
  diagonal layers draw ``|lambda|`` on the ring ``[1 - 1/T_min, 1 - 1/T_max]``
  (:func:`floss_utils.curse_of_memory.students.ring_init`: ``|lambda| = sqrt(U[r_min^2, r_max^2])``) with angles
  ``U[0, max_phase)``.
* norms (``norm``): ``"none"``, ``"layer"`` (per time step over features, learned scale and
  bias) or ``"batch"`` (per feature over batch and time, training-mode statistics, learned
  scale and bias); statistics never mix members.
* the GLU is ``(W_1 v + b_1) * sigmoid(W_2 v + b_2)``; GELU is the exact (erf) one.

Initialization *(ours)*: every linear weight ``N(0, 1/fan_in)``,
biases 0; ``Re B, Im B ~ N(0, 1/(2 d_model))``, ``Re C, Im C ~ N(0, 1/d_hidden)``, ``D ~ N(0, 1)``
(the LRU's initialization of Orvieto et al. 2023); GRU weights ``N(0, 1/fan_in)``. ZO's deep code
(``figures/signal_propagation.ipynb`` of their repository) initializes its chrono GRU differently: orthogonal
recurrent weights and input weights of variance ``2/fan_in``; that difference is not tested here. Member ``i``
draws everything from ``torch.Generator().manual_seed(seeds[i])`` in a fixed order, so members
with the same seed and different memories share every random number (common random numbers:
only the memory differs between them).

The measured loss (ours; ZO train on BERT embeddings of Wikipedia, not available offline):
next-input prediction, ``L = 1/2 mean_{b, t < T-1, i} (out_{b,t,i} - x_{b,t+1,i})^2`` per member.
:func:`deep_signal_propagation` returns ``E[|h|^2]`` of every block's recurrent state and
``E[(dL/d theta)^2]`` (mean over the parameters of a group) for every parameter group of every
block, per member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .inputs import fitted_autocorrelation_inputs, structured_embedding_inputs
from .students import ring_init
from .scans import diagonal_scan

__all__ = [
    "LAYERS",
    "NORMS",
    "memory_ring",
    "chrono_bias",
    "DeepRecurrentStack",
    "next_input_loss",
    "last_step_loss",
    "LOSSES",
    "INPUTS",
    "DeepStats",
    "deep_signal_propagation",
    "memory_means",
    "group_gradient",
    "stats_table",
    "growth_with_memory",
    "fig5_directions",
    "variant_growth",
    "ZO_FIG5_GROWTH",
    "ZO_FIG5_FACTOR",
    "zo_fig5_published",
    "published_growth_table",
    "outside_text",
]

#: the recurrent layers a stack can be built from.
LAYERS = ("complex", "lru", "gru")
#: the normalizations between blocks.
NORMS = ("none", "layer", "batch")

#: parameter groups of each recurrent layer (name -> parameters of one block)
_LAYER_GROUPS = {
    "complex": {"lambda": ["lam_re", "lam_im"], "B": ["B_re", "B_im"], "C": ["C_re", "C_im"], "D": ["D"]},
    "lru": {"magnitude": ["nu_log"], "angle": ["theta_log"], "gamma": ["gamma_log"], "B": ["B_re", "B_im"],
            "C": ["C_re", "C_im"], "D": ["D"]},
    "gru": {"gru_update": ["W_iz", "W_hz", "b_z"], "gru_reset": ["W_ir", "W_hr", "b_r"],
            "gru_candidate": ["W_in", "W_hn", "b_in", "b_hn"]},
}


def memory_ring(t_char: float) -> tuple[float, float, float, float]:
    """``(T_min, T_max, r_min, r_max)`` for a characteristic time ``T_char >= 1``:
    ``T_min = T_char``, ``T_max = 2 T_char``, ``|lambda| in [1 - 1/T_min, 1 - 1/T_max]``."""
    if isinstance(t_char, bool) or not isinstance(t_char, (int, float)) or not math.isfinite(t_char) or t_char < 1:
        raise ValueError(f"characteristic time must be a number >= 1, got {t_char!r}")
    t_min, t_max = float(t_char), 2.0 * float(t_char)
    return t_min, t_max, 1.0 - 1.0 / t_min, 1.0 - 1.0 / t_max


def chrono_bias(n: int, t_min: float, t_max: float, generator: torch.Generator,
                dtype: torch.dtype = torch.float64) -> Tensor:
    """Chrono initialization of a GRU update-gate bias: ``log U[t_min, t_max]``, ``(n,)`` (CPU)."""
    if not 1 <= t_min <= t_max:
        raise ValueError(f"need 1 <= t_min <= t_max, got {t_min}, {t_max}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.log(t_min + (t_max - t_min) * u).to(dtype)


def _normal(shape, std: float, g: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64) * std


class _Norm(nn.Module):
    """Member-batched layer or batch norm (or identity) over the last axis of ``(M, B, T, d)``."""

    def __init__(self, kind: str, M: int, d: int, dtype, device, eps: float = 1e-5) -> None:
        super().__init__()
        self.kind, self.eps = kind, eps
        if kind != "none":
            self.scale = nn.Parameter(torch.ones(M, d, dtype=dtype, device=device))
            self.bias = nn.Parameter(torch.zeros(M, d, dtype=dtype, device=device))

    def forward(self, u: Tensor) -> Tensor:
        if self.kind == "none":
            return u
        dims = (-1,) if self.kind == "layer" else (1, 2)
        mean = u.mean(dim=dims, keepdim=True)
        var = u.var(dim=dims, keepdim=True, unbiased=False)
        return (u - mean) / torch.sqrt(var + self.eps) * self.scale[:, None, None, :] + self.bias[:, None, None, :]


class _Block(nn.Module):
    """One block: norm -> recurrent layer -> GELU -> norm -> GLU -> residual (member-batched)."""

    def __init__(self, layer: str, norm: str, memories: Sequence[float], gens: Sequence[torch.Generator],
                 d_model: int, d_hidden: int, max_phase: float, dtype, device) -> None:
        super().__init__()
        M = len(memories)
        self.layer, self.d_hidden = layer, d_hidden
        self.norm1 = _Norm(norm, M, d_model, dtype, device)
        self.norm2 = _Norm(norm, M, d_model, dtype, device)
        draws: dict[str, list[Tensor]] = {}

        def put(name: str, value: Tensor) -> None:
            draws.setdefault(name, []).append(value)

        for t_char, g in zip(memories, gens):
            t_min, t_max, r_min, r_max = memory_ring(t_char)
            if layer in ("complex", "lru"):
                nu, theta = ring_init(d_hidden, r_min, r_max, max_phase, g)
                s_b = 1.0 / math.sqrt(2 * d_model)
                put("B_re", _normal((d_hidden, d_model), s_b, g))
                put("B_im", _normal((d_hidden, d_model), s_b, g))
                put("C_re", _normal((d_model, d_hidden), 1 / math.sqrt(d_hidden), g))
                put("C_im", _normal((d_model, d_hidden), 1 / math.sqrt(d_hidden), g))
                put("D", _normal((d_model,), 1.0, g))
                if layer == "complex":
                    put("lam_re", nu * torch.cos(theta))
                    put("lam_im", nu * torch.sin(theta))
                else:
                    nu = nu.clamp(min=1e-6)  # T_char = 1 puts r_min at 0: keep log(-log nu) finite
                    put("nu_log", torch.log(-torch.log(nu)))
                    put("theta_log", torch.log(theta.clamp(min=1e-12)))
                    put("gamma_log", 0.5 * torch.log1p(-nu**2))
            else:
                for gate in ("r", "z", "n"):
                    put(f"W_i{gate}", _normal((d_hidden, d_model), 1 / math.sqrt(d_model), g))
                    put(f"W_h{gate}", _normal((d_hidden, d_hidden), 1 / math.sqrt(d_hidden), g))
                put("b_r", torch.zeros(d_hidden, dtype=torch.float64))
                put("b_z", chrono_bias(d_hidden, t_min, t_max, g))
                put("b_in", torch.zeros(d_hidden, dtype=torch.float64))
                put("b_hn", torch.zeros(d_hidden, dtype=torch.float64))
            put("glu_W1", _normal((d_model, d_model), 1 / math.sqrt(d_model), g))
            put("glu_W2", _normal((d_model, d_model), 1 / math.sqrt(d_model), g))
            put("glu_b1", torch.zeros(d_model, dtype=torch.float64))
            put("glu_b2", torch.zeros(d_model, dtype=torch.float64))
        for name, vals in draws.items():
            setattr(self, name, nn.Parameter(torch.stack(vals).to(dtype=dtype, device=device)))

    def groups(self) -> dict[str, list[str]]:
        out = {k: list(v) for k, v in _LAYER_GROUPS[self.layer].items()}
        out["feedforward"] = ["glu_W1", "glu_W2", "glu_b1", "glu_b2"]
        out["norm"] = [f"{n}.{p}" for n in ("norm1", "norm2") for p in ("scale", "bias") if hasattr(getattr(self, n), p)]
        return out

    def lam(self) -> Tensor:
        if self.layer == "complex":
            return torch.complex(self.lam_re, self.lam_im)
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def recurrence(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` ``(M, B, T, d)`` -> (output ``(M, B, T, d)``, states ``(M, B, T, H)``)."""
        if self.layer == "gru":
            return self._gru(u)
        cdt = torch.complex128 if u.dtype == torch.float64 else torch.complex64
        Bw = torch.complex(self.B_re, self.B_im)
        if self.layer == "lru":
            Bw = torch.exp(self.gamma_log)[..., None] * Bw
        drive = torch.einsum("mbtd,mhd->mbth", u.to(cdt), Bw)
        h = diagonal_scan(self.lam()[:, None, :], drive)
        y = torch.einsum("mbth,mdh->mbtd", h, torch.complex(self.C_re, self.C_im)).real + self.D[:, None, None, :] * u
        return y, h

    def _gru(self, u: Tensor) -> tuple[Tensor, Tensor]:
        M, Bsz, T, _ = u.shape
        W_i = torch.cat([self.W_ir, self.W_iz, self.W_in], dim=1)  # (M, 3H, d)
        W_h = torch.cat([self.W_hr, self.W_hz, self.W_hn], dim=1)  # (M, 3H, H)
        bias = torch.cat([self.b_r, self.b_z, self.b_in], dim=1)  # (M, 3H)
        xi = (torch.einsum("mbtd,mgd->mbtg", u, W_i) + bias[:, None, None, :]).unbind(2)
        H = self.d_hidden
        h = u.new_zeros(M, Bsz, H)
        Wt = W_h.transpose(1, 2)
        out = []
        for t in range(T):
            hh = torch.bmm(h, Wt)  # (M, B, 3H)
            r = torch.sigmoid(xi[t][..., :H] + hh[..., :H])
            z = torch.sigmoid(xi[t][..., H:2 * H] + hh[..., H:2 * H])
            n = torch.tanh(xi[t][..., 2 * H:] + r * (hh[..., 2 * H:] + self.b_hn[:, None, :]))
            h = (1 - z) * n + z * h
            out.append(h)
        hs = torch.stack(out, dim=2)
        return hs, hs

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.recurrence(self.norm1(z))
        v = self.norm2(F.gelu(y))
        g = (torch.einsum("mbtd,mkd->mbtk", v, self.glu_W1) + self.glu_b1[:, None, None, :]) * torch.sigmoid(
            torch.einsum("mbtd,mkd->mbtk", v, self.glu_W2) + self.glu_b2[:, None, None, :])
        return z + g, h


class DeepRecurrentStack(nn.Module):
    """ZO's deep stack, batched over members (see the module docstring).

    Args:
        layer: ``"complex"``, ``"lru"`` or ``"gru"``.
        norm: ``"none"``, ``"layer"`` or ``"batch"``.
        memories: characteristic time ``T_char >= 1`` of each member.
        seeds: one int per member (members with equal seeds share all random draws).
        d_input, d_model: input/output width (768 in ZO) and model width (256); ``d_hidden``:
            recurrent state size (default ``d_model``).
        n_blocks: number of blocks (4); max_phase: angle range of the diagonal layers.
    """

    def __init__(self, layer: str, norm: str, memories: Sequence[float], seeds: Sequence[int], *,
                 d_input: int = 768, d_model: int = 256, d_hidden: Optional[int] = None, n_blocks: int = 4,
                 max_phase: float = 2 * math.pi, dtype: torch.dtype = torch.float32, device="cpu") -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        memories, seeds = list(memories), list(seeds)
        if not memories or len(memories) != len(seeds):
            raise ValueError(f"need one seed per member: {len(memories)} memories, {len(seeds)} seeds")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int):
                raise TypeError(f"every seed must be an int, got {s!r}")
        for t in memories:
            memory_ring(t)  # validates
        d_hidden = d_model if d_hidden is None else d_hidden
        for name, val in (("d_input", d_input), ("d_model", d_model), ("d_hidden", d_hidden), ("n_blocks", n_blocks)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        self.layer, self.norm, self.memories, self.seeds = layer, norm, memories, seeds
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.enc_W = nn.Parameter(torch.stack([_normal((d_model, d_input), 1 / math.sqrt(d_input), g) for g in gens]).to(dtype=dtype, device=device))
        self.enc_b = nn.Parameter(torch.zeros(len(seeds), d_model, dtype=dtype, device=device))
        self.blocks = nn.ModuleList([_Block(layer, norm, memories, gens, d_model, d_hidden, max_phase, dtype, device)
                                     for _ in range(n_blocks)])
        self.dec_W = nn.Parameter(torch.stack([_normal((d_input, d_model), 1 / math.sqrt(d_model), g) for g in gens]).to(dtype=dtype, device=device))
        self.dec_b = nn.Parameter(torch.zeros(len(seeds), d_input, dtype=dtype, device=device))

    @property
    def n_members(self) -> int:
        return self.enc_W.shape[0]

    def param_groups(self) -> dict[str, list[str]]:
        """Group name -> full parameter names; block groups are named ``"<group>/<block>"``
        (block 1 first). Every parameter is in exactly one group (tested)."""
        out = {"encoder": ["enc_W", "enc_b"], "decoder": ["dec_W", "dec_b"]}
        for i, blk in enumerate(self.blocks):
            for g, names in blk.groups().items():
                if names:
                    out[f"{g}/{i + 1}"] = [f"blocks.{i}.{n}" for n in names]
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``x`` ``(B, T, d_input)`` (shared) or ``(M, B, T, d_input)`` -> (outputs
        ``(M, B, T, d_input)``, the recurrent states of every block ``(M, B, T, H)``)."""
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != self.enc_W.shape[-1] or x.shape[0] not in (1, self.n_members):
            raise ValueError(f"x must have shape (B, T, {self.enc_W.shape[-1]}) or (M, B, T, d), got {tuple(x.shape)}")
        x = x.to(self.enc_W.dtype)
        z = torch.einsum("mbti,mdi->mbtd", x.expand(self.n_members, *x.shape[1:]), self.enc_W) + self.enc_b[:, None, None, :]
        states = []
        for blk in self.blocks:
            z, h = blk(z)
            states.append(h)
        return torch.einsum("mbtd,mid->mbti", z, self.dec_W) + self.dec_b[:, None, None, :], states


def next_input_loss(out: Tensor, x: Tensor) -> Tensor:
    """Per-member ``1/2 mean (out_t - x_{t+1})^2`` over batch, time ``t < T-1`` and features:
    ``out`` ``(M, B, T, d)``, ``x`` ``(B, T, d)`` -> ``(M,)``."""
    return 0.5 * ((out[:, :, :-1, :] - x[None, :, 1:, :].to(out.dtype)) ** 2).mean(dim=(1, 2, 3))


def last_step_loss(out: Tensor, x: Tensor) -> Tensor:
    """Per-member ``1/2 mean (out_{T-2} - x_{T-1})^2`` over batch and features: the next input
    predicted at the last step only, so every gradient reaches the early steps through the whole
    recurrence (a sequence-level loss). ``out`` ``(M, B, T, d)``, ``x`` ``(B, T, d)`` -> ``(M,)``."""
    if x.shape[1] < 2:
        raise ValueError(f"the last-step loss needs sequences of at least 2 steps, got {x.shape[1]}")
    return 0.5 * ((out[:, :, -2, :] - x[None, :, -1, :].to(out.dtype)) ** 2).mean(dim=(1, 2))


#: loss name -> ``loss(out, x) -> (M,)`` of :func:`deep_signal_propagation`
LOSSES = {"next_input": next_input_loss, "last_step": last_step_loss}
#: input names of :func:`deep_signal_propagation` -> keyword arguments of
#: :func:`~floss_utils.curse_of_memory.inputs.structured_embedding_inputs` (None: ZO's fitted autocorrelation per
#: coordinate, :func:`~floss_utils.curse_of_memory.inputs.fitted_autocorrelation_inputs`): "structured" adds a mean
#: and correlated coordinates, "mean_only" and "correlated_only" one of the two
INPUTS = {"fitted": None, "structured": {}, "mean_only": {"shared_fraction": 0.0},
          "correlated_only": {"mean_square": 0.0}}


@dataclass
class DeepStats:
    """Outcome of :func:`deep_signal_propagation` (CPU tensors, member axis first).

    Attributes:
        memory, seed: ``(M,)`` each member's ``T_char`` and seed.
        activity: ``(M, n_blocks)`` ``E[|h|^2]`` of each block's recurrent state (mean over
            batch, time and units).
        grad_sq: group name (``"lambda/1"``, ``"feedforward/4"``, ``"encoder"``, ...) ->
            ``(M,)`` mean squared gradient of the loss over the group's parameters.
        loss: ``(M,)``.
    """

    memory: Tensor
    seed: Tensor
    activity: Tensor
    grad_sq: dict
    loss: Tensor


#: default memory for the activations of one group of members in :func:`deep_signal_propagation`
WORKSPACE_BYTES = 2 << 30


def _member_group(batch: int, seq_len: int, d_input: int, d_model: int, n_blocks: int, layer: str,
                  dtype: torch.dtype, max_bytes: int) -> int:
    """Members whose forward and backward pass fit in ``max_bytes`` at once: each block keeps
    about 16 activations of ``(B, T, d_model)`` for the backward pass (twice that for complex
    recurrences), the encoder and decoder a few of ``(B, T, d_input)``."""
    item = torch.empty((), dtype=dtype).element_size()
    per_block = (32 if layer in ("complex", "lru") else 16) * batch * seq_len * d_model * item
    per_member = n_blocks * per_block + 4 * batch * seq_len * d_input * item
    return max(1, int(max_bytes) // per_member)


def deep_signal_propagation(layer: str, norm: str, memories: Sequence[float], seeds: Sequence[int], *,
                            batch: int, seq_len: int, input_seed: int, d_input: int = 768, d_model: int = 256,
                            n_blocks: int = 4, max_phase: float = 2 * math.pi,
                            dtype: torch.dtype = torch.float32, device="cpu",
                            max_bytes: int = WORKSPACE_BYTES, inputs: str = "fitted",
                            loss: str = "next_input") -> DeepStats:
    """Activity and gradient magnitudes at initialization for every memory x seed.

    Members are ``memories x seeds`` (memory-major); all see the same input batch, drawn on the
    CPU from ``input_seed``: ``inputs="fitted"`` Gaussian with ZO's autocorrelation fitted to BERT
    embeddings (:func:`floss_utils.curse_of_memory.inputs.fitted_autocorrelation_inputs`), or
    ``"structured"``, the same around a mean vector with correlated coordinates
    (:func:`floss_utils.curse_of_memory.inputs.structured_embedding_inputs`, its defaults), or
    ``"mean_only"`` / ``"correlated_only"``, one of those two features (:data:`INPUTS`). The loss
    is one of :data:`LOSSES`: ``"next_input"`` (ZO's next-token prediction at every step) or
    ``"last_step"``. One forward and one backward pass of the summed member
    losses per group of members that fits in ``max_bytes``. Members are independent networks: the
    groups (set by the parameters alone, so the same call gives the same numbers) change the
    results at most in the last bits, where a batched matrix product over another number of
    members rounds differently (tested).
    """
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {tuple(INPUTS)}, got {inputs!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
    mem = [float(t) for t in memories for _ in seeds]
    sds = [int(s) for _ in memories for s in seeds]
    g = torch.Generator().manual_seed(input_seed)
    if INPUTS[inputs] is None:
        x = fitted_autocorrelation_inputs(batch, seq_len, d_input, generator=g, dtype=dtype, device=device)
    else:
        x = structured_embedding_inputs(batch, seq_len, d_input, generator=g, dtype=dtype, device=device,
                                        **INPUTS[inputs]).x
    size = _member_group(batch, seq_len, d_input, d_model, n_blocks, layer, dtype, max_bytes)
    parts = [_propagate(layer, norm, mem[i:i + size], sds[i:i + size], x, LOSSES[loss], d_input=d_input, d_model=d_model,
                        n_blocks=n_blocks, max_phase=max_phase, dtype=dtype, device=device)
             for i in range(0, len(mem), size)]
    return DeepStats(memory=torch.tensor(mem), seed=torch.tensor(sds),
                     activity=torch.cat([p.activity for p in parts]),
                     grad_sq={g: torch.cat([p.grad_sq[g] for p in parts]) for g in parts[0].grad_sq},
                     loss=torch.cat([p.loss for p in parts]))


def _propagate(layer: str, norm: str, mem: list[float], sds: list[int], x: Tensor, loss_fn, **kw) -> DeepStats:
    """:func:`deep_signal_propagation` for one group of members, in one pass."""
    net = DeepRecurrentStack(layer, norm, mem, sds, **kw)
    out, states = net(x)
    loss = loss_fn(out, x)
    named = dict(net.named_parameters())
    grads = dict(zip(named, torch.autograd.grad(loss.sum(), list(named.values()))))
    grad_sq = {}
    for group, names in net.param_groups().items():
        num = sum((grads[n].detach() ** 2).flatten(1).sum(1) for n in names)
        grad_sq[group] = (num / sum(named[n][0].numel() for n in names)).cpu()
    activity = torch.stack([(h.detach().abs() ** 2).mean(dim=(1, 2, 3)) for h in states], dim=1)
    return DeepStats(memory=torch.tensor(mem), seed=torch.tensor(sds), activity=activity.cpu(), grad_sq=grad_sq,
                     loss=loss.detach().cpu())


def memory_means(v: Tensor, n_memories: int) -> Tensor:
    """``(M,)`` member values (memory-major) -> ``(n_memories,)`` means over seeds (float64)."""
    return v.double().reshape(n_memories, -1).mean(1)


def group_gradient(stats: DeepStats, group: str, n_memories: int) -> Tensor:
    """Mean over blocks of a parameter group's mean squared gradient, per memory."""
    keys = [k for k in stats.grad_sq if k.split("/")[0] == group]
    return memory_means(torch.stack([stats.grad_sq[k] for k in keys]).double().mean(0), n_memories)


def stats_table(stats: dict[tuple[str, str], DeepStats]):
    """Every measurement of :func:`deep_signal_propagation` runs as one tidy ``pandas.DataFrame``.

    Args:
        stats: ``(layer, norm) -> DeepStats``.
    Returns:
        One row per (layer, norm, member, block or parameter group): ``layer, norm, memory,
        seed, quantity`` (``"activity"`` or ``"grad_sq"``), ``group`` (``"state"`` for activity),
        ``block`` (1-based; 0 for groups outside the blocks) and ``value``.
    """
    import pandas as pd

    rows = []
    for (layer, norm), st in stats.items():
        for i in range(len(st.memory)):
            for b in range(st.activity.shape[1]):
                rows.append({"layer": layer, "norm": norm, "memory": st.memory[i].item(), "seed": st.seed[i].item(),
                             "quantity": "activity", "group": "state", "block": b + 1,
                             "value": st.activity[i, b].item()})
            for g, v in st.grad_sq.items():
                name, _, blk = g.partition("/")
                rows.append({"layer": layer, "norm": norm, "memory": st.memory[i].item(), "seed": st.seed[i].item(),
                             "quantity": "grad_sq", "group": name, "block": int(blk) if blk else 0,
                             "value": v[i].item()})
    return pd.DataFrame(rows)


def growth_with_memory(stats: dict[tuple[str, str], DeepStats], n_memories: int):
    """How each quantity changes from the shortest to the longest memory (means over seeds).

    For every ``(layer, norm)``: the activity of every block, and the mean squared gradient of
    every parameter group (averaged over the blocks it appears in).

    Returns:
        A ``pandas.DataFrame``: ``layer, norm, quantity`` (``"activity, layer 1"``,
        ``"grad lambda"``, ...), ``growth`` (value at the longest memory / at the shortest) and
        ``max/min`` (largest over smallest value across memories).
    """
    import pandas as pd

    rows = []
    for (layer, norm), st in stats.items():
        n_blocks = st.activity.shape[1]
        for b in range(n_blocks):
            a = memory_means(st.activity[:, b], n_memories)
            rows.append({"layer": layer, "norm": norm, "quantity": f"activity, layer {b + 1}",
                         "growth": (a[-1] / a[0]).item(), "max/min": (a.max() / a.min()).item()})
        for g in dict.fromkeys(k.split("/")[0] for k in st.grad_sq):
            v = group_gradient(st, g, n_memories)
            rows.append({"layer": layer, "norm": norm, "quantity": f"grad {g}",
                         "growth": (v[-1] / v[0]).item(), "max/min": (v.max() / v.min()).item()})
    return pd.DataFrame(rows)


#: the recurrent parameter groups of each layer (everything else is "other")
RECURRENT_GROUPS = {"complex": ("lambda",), "lru": ("magnitude", "angle", "gamma"),
                    "gru": ("gru_update", "gru_reset", "gru_candidate")}


def fig5_directions(summary, norm: str = "none", factor: float = 10.0) -> dict[str, bool]:
    """The directions of ZO's Fig. 5 in a :func:`growth_with_memory` table (one norm), each a
    named yes/no, with ``factor`` (a decade, this book's "flat") as the line between growing and flat:

    * ``"complex: activity and lambda gradient grow"`` - the complex network's last-layer activity
      and its ``lambda`` gradient both grow by more than ``factor``;
    * ``"LRU: angle gradient grows, activity flat"`` - the LRU's angle gradient grows by more than
      ``factor`` while its last-layer activity changes by less than ``factor`` either way;
    * ``"GRU: no gradient group grows"`` - no gradient group of the GRU grows by ``factor``;
    * ``"complex: every other gradient grows"`` - every non-``lambda`` gradient group of the complex
      network grows by more than ``factor`` (ZO Fig. 5B: ~1e-6 -> ~1e6);
    * ``"LRU: every other gradient flat"`` - every LRU gradient group but the angle's changes by
      less than ``factor`` either way (ZO: flat).

    Layers missing from ``summary`` are left out of the result.
    """
    rows = summary[summary.norm == norm]
    out: dict[str, bool] = {}
    for layer, g in rows.groupby("layer", sort=False):
        growth = dict(zip(g.quantity, g.growth))
        n_blocks = sum(q.startswith("activity, layer ") for q in growth)
        last = growth[f"activity, layer {n_blocks}"]
        grads = {q[5:]: v for q, v in growth.items() if q.startswith("grad ")}
        if layer == "complex":
            out["complex: activity and lambda gradient grow"] = bool(last > factor and growth["grad lambda"] > factor)
            out["complex: every other gradient grows"] = bool(all(v > factor for g, v in grads.items() if g != "lambda"))
        elif layer == "lru":
            out["LRU: angle gradient grows, activity flat"] = bool(growth["grad angle"] > factor
                                                                   and 1 / factor < last < factor)
            out["LRU: every other gradient flat"] = bool(all(1 / factor < v < factor for g, v in grads.items() if g != "angle"))
        elif layer == "gru":
            out["GRU: no gradient group grows"] = bool(all(v < factor for q, v in growth.items() if q.startswith("grad ")))
    return out


def variant_growth(variants: Sequence[tuple[str, str]], memories: Sequence[float], seeds: Sequence[int], *,
                   layers: Sequence[str] = LAYERS, norm: str = "none", **kw):
    """:func:`growth_with_memory` of every layer under each ``(inputs, loss)`` variant (names of
    :data:`INPUTS` and :data:`LOSSES`): does a conclusion depend on the inputs or on the loss?

    ``kw`` goes to :func:`deep_signal_propagation` (``batch``, ``seq_len``, ``input_seed``, sizes,
    dtype, device). Returns the table of :func:`growth_with_memory` with the columns ``inputs`` and
    ``loss`` added.
    """
    import pandas as pd

    frames = []
    for inputs, loss in variants:
        stats = {(layer, norm): deep_signal_propagation(layer, norm, memories, seeds, inputs=inputs, loss=loss, **kw)
                 for layer in layers}
        frames.append(growth_with_memory(stats, len(memories)).assign(inputs=inputs, loss=loss))
    return pd.concat(frames, ignore_index=True)


#: ZO Fig. 5A (activities) and the GRU's gradients, read off the log panels (the book's page *Methods
#: and reference values*): how each quantity changes from ``T_char = 1`` to ``T_char = 100`` at
#: initialization (value at 100 / value at 1). ``"flat"``: ZO's panel shows it unchanged (growth 1).
#: ``"activity, last layer"``: ZO's "layer 3" counts from 0, the last of their 4 blocks (their
#: ``figures/signal_propagation.ipynb`` plots layers 0 and 3). The gradients of the complex and LRU
#: networks (Fig. 5B) and of the complex network with layer norm (Fig. 5C) come from ZO's own stored
#: outputs instead, record ``zo_fig5_published`` (:func:`zo_fig5_published`). ZO's width is 256, their inputs
#: BERT embeddings (here: surrogate inputs with their fitted autocorrelation).
ZO_FIG5_GROWTH: dict[tuple[str, str, str], float] = {
    ("complex", "none", "activity, last layer"): 1e5,  # O(1) -> ~1e5
    ("lru", "none", "activity, last layer"): 1.0,  # O(1)
    ("gru", "none", "activity, last layer"): 1.0,  # O(1)
    ("gru", "none", "grad other"): 1.0,  # flat (ZO's printed GRU table is empty: read off the panel)
}


def zo_fig5_published(record_results: dict) -> dict[tuple[str, str, str], float]:
    """ZO's growth of every Fig. 5 quantity this book compares, ``(layer, norm, quantity) -> growth``:
    ``ZO_FIG5_GROWTH``'s panel readings, and from record ``zo_fig5_published`` (``record_results``:
    its ``results``) ZO's printed Fig. 5B gradients (complex: ``lambda`` and ``all_but_lambda``; LRU:
    ``theta`` -> the angle, ``nu`` -> the magnitude, ``all_but_lambda`` -> every other group) and
    Fig. 5C's layer-norm curves read off the stored panel (``lambda``, ``all_but_lambda``)."""
    try:
        b, c = record_results["fig5b_growth"], record_results["fig5c_layer_norm"]
        out = {("complex", "none", "grad lambda"): b["complex"]["lambda"],
               ("complex", "none", "grad other"): b["complex"]["all_but_lambda"],
               ("lru", "none", "grad angle"): b["lru"]["theta"],
               ("lru", "none", "grad magnitude"): b["lru"]["nu"],
               ("lru", "none", "grad other"): b["lru"]["all_but_lambda"],
               ("complex", "layer", "grad lambda"): c["lambda"]["growth"],
               ("complex", "layer", "grad other"): c["all_but_lambda"]["growth"]}
    except KeyError as e:
        raise KeyError(f"record zo_fig5_published lacks {e}: is it the record's results?") from None
    return {**ZO_FIG5_GROWTH, **{k: float(v) for k, v in out.items()}}


#: The agreement criterion for a growth read off ZO's panels, within one decade either way (the
#: panels span ~20 decades; the book's width, inputs and seeds differ from ZO's).
ZO_FIG5_FACTOR = 10.0


def published_growth_table(summary, published: dict[tuple[str, str, str], float],
                           factor: float = ZO_FIG5_FACTOR):
    """Set the book's growth with memory beside ZO's, quantity by quantity.

    Args:
        summary: a :func:`growth_with_memory` table (``layer, norm, quantity, growth``).
        published: ``(layer, norm, quantity) -> ZO's growth``; ``"activity, last layer"`` is the
            last block's activity, ``"grad other"`` stands for every gradient group of that network
            not named in ``published`` for it (e.g. every non-recurrent group).
        factor: the agreement criterion (within ``factor`` either way).
    Returns:
        A ``pandas.DataFrame``, one row per book quantity matched: ``layer, norm, quantity,
        published, book, book / published, within factor``. A NaN growth (a group absent at some
        memory, e.g. a norm's parameters in a network without norm) is left out; an infinite one
        (overflow) is kept and is outside the factor.
    """
    import pandas as pd

    if not factor >= 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    _require_cols = {"layer", "norm", "quantity", "growth"} - set(summary.columns)
    if _require_cols:
        raise KeyError(f"summary lacks the columns {sorted(_require_cols)}")
    rows = []
    for (layer, norm, quantity), pub in published.items():
        sub = summary[(summary.layer == layer) & (summary.norm == norm)]
        if not len(sub):
            raise KeyError(f"no {layer!r} network with norm {norm!r} in the summary")
        if quantity == "activity, last layer":
            acts = [q for q in sub.quantity if q.startswith("activity, layer ")]
            if not acts:
                raise KeyError(f"{layer}/{norm}: no activity in the summary")
            names = [max(acts, key=lambda q: int(q.rsplit(" ", 1)[1]))]
        elif quantity == "grad other":
            named = {q for (l, n, q) in published if (l, n) == (layer, norm)}
            names = [q for q in sub.quantity if q.startswith("grad ") and q not in named]
        else:
            names = [quantity]
        for name in names:
            got = sub[sub.quantity == name].growth
            if len(got) != 1:
                raise KeyError(f"{layer}/{norm}: quantity {name!r} not (or not once) in the summary")
            book = float(got.iloc[0])
            if math.isnan(book):
                continue  # a group absent at some memory (e.g. a norm's parameters without norm)
            rows.append({"layer": layer, "norm": norm, "quantity": name, "published": pub, "book": book,
                         "book / published": book / pub,
                         "within factor": bool(math.isfinite(book) and 1 / factor <= book / pub <= factor)})
    return pd.DataFrame(rows)


def outside_text(table) -> str:
    """The rows of a :func:`published_growth_table` outside its factor, as one line of text:
    ``"complex (no norm) D: 2.6e+08 against 1.2e+12; ..."`` (this run's growth against ZO's; the
    ``grad`` prefix dropped), or ``"none"`` when every row agrees."""
    out = table[~table["within factor"].astype(bool)]
    return "; ".join(f"{r.layer} ({'no' if r.norm == 'none' else r.norm} norm) "
                     f"{r.quantity[5:] if r.quantity.startswith('grad ') else r.quantity}: "
                     f"{r.book:.2g} against {r.published:.2g}" for r in out.itertuples()) or "none"
