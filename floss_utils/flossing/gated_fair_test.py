"""A fair test of flossing on gated cells (chapter 11, section 11.2): does flossing before
training help a GRU or an LSTM learn GF's delayed copy, against a baseline trained as well as
it can be?

The conditions of the test (:class:`GatedDesign`):

* **room for the memory**: the cell's hidden size is at least twice the delay (checked), so that
  a failure cannot come from a state too small to hold the bits in flight;
* **a good initialization** as the baseline: the bias of the gate that carries the state over at +1
  (``carry_bias``): the LSTM's forget gate (the usual recipe, Jozefowicz et al. 2015) and, as its
  counterpart, the GRU's update gate;
* **flossing that can be told from freezing**: the recurrent weights ``J`` only (the input
  weights and the gate biases stay as initialized), ``k`` about the delay, and a target slightly
  below zero (:func:`fair_flossing`: ``-1 / (2 d)`` by default, at which a gradient shrinks by
  ``e^{-1/2}`` over the delay). A cell frozen by its carry gate (GRU update gate ``z -> 1``,
  LSTM forget gate ``f -> 1``) has every exponent at zero and so overshoots a negative target,
  but ``J`` holds the gates' recurrent blocks too, so a partial freeze is not ruled out: whether
  the flossed cell froze is **measured** (:func:`gated_probe`), beside a flossing that is known to
  freeze (:func:`freezing_flossing`: ``W_s, J, b``, every exponent, to zero);
* **a learning rate per condition**, chosen from a grid on a validation batch that nothing else
  reads (:meth:`GatedTestRun.chosen_lr`);
* **pairs**: every seed's network is trained unflossed and flossed, at every rate of the grid,
  on the same data, as one ensemble (:func:`run_gated_test`).

What :func:`gated_probe` measures along input-driven trajectories, per network (geometric means
over sequences and start steps ``t``; ``x_t`` the whole state, ``(h, c)`` for the LSTM, ``l_{t+d}``
the copy task's cross-entropy at step ``t + d``, whose target is the bit ``s_t``):

* ``write = ||dx_t / ds_t||``: how strongly the current bit enters the state;
* ``reach = ||dl_{t+d} / dx_t||``: how strongly the loss ``d`` steps later reaches back to it;
* ``signal = |dl_{t+d} / ds_t|``: the loss's gradient with respect to the bit itself, through the
  state (``dl_{t+d}/dx_t . dx_t/ds_t``), the path by which the task can teach storing it;
* the mean carry gate (GRU ``z``, LSTM ``f``) and the first ``k`` exponents.

Flossing that improves gradient flow raises ``signal``; flossing that freezes the cell raises the
carry gate and lowers ``write`` (a partial freeze can also raise ``reach`` and ``signal``: the
signatures are read together, and beside the freezing flossing's). ``reach`` and ``signal`` carry the
readout's error ``|sigmoid(r) - y|`` and the untrained readout ``w_r``; both are the same for the
three probes of one network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor

from ..common import PARAM_NAMES, PairedComparison, paired_comparison, sign_test_greater, wilson_interval, holm, holm_reachable, holm_threshold
from .flosser import FlossingConfig, Flosser, evaluate_exponents
from .gated_cells import CellNetwork, gate_values, init_cell_networks
from .tasks import accuracy, copy_task, sample_batch, sample_bits
from .trainer import Member, TrainConfig, schedule, train

__all__ = ["VALIDATION", "PROBE_BITS", "CARRY_GATE", "fair_flossing", "freezing_flossing", "GatedProbe",
           "delay_gradients", "gated_probe", "GatedDesign", "GatedTestRun", "GatedClaims", "run_gated_test",
           "gated_claims_frame", "QUESTIONS", "gated_verdicts", "chosen_curves", "side_by_side", "describe_comparison",
           "flossing_effect", "VERDICT_WORDS", "claim_text", "QUESTION_CLAIMS", "question_text"]

#: generator purposes of this module, the second key of ``seeded_generator`` (0 to 5 are taken by the rest of Part III)
VALIDATION, PROBE_BITS = 6, 7
#: the gate that carries each cell's state over (near 1 the cell stops writing, or forgetting)
CARRY_GATE = {"gru": "z", "lstm": "f"}
#: the two conditions of the test, in ensemble order
CONDITIONS = ("unflossed", "flossed")


def fair_flossing(delay: int, *, lr: float, steps: int = 55, ons: int = 1, target: Optional[float] = None,
                  k: Optional[int] = None) -> FlossingConfig:
    """The flossing of the fair test: recurrent weights ``J`` only, ``k = delay`` exponents (default),
    target ``-1 / (2 delay)`` per step (default; a frozen cell, all exponents 0, misses it)."""
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ValueError(f"delay must be an int >= 1, got {delay!r}")
    return FlossingConfig(k=delay if k is None else int(k), steps=steps, lr=lr, ons=ons, params=("J",),
                          target=-1.0 / (2 * delay) if target is None else float(target))


def freezing_flossing(n_state: int, *, lr: float, steps: int = 55, ons: int = 1) -> FlossingConfig:
    """A flossing known to freeze a gated cell: every parameter (``W_s, J, b``), all ``n_state``
    exponents, target 0 (the chapter's earlier choice; the reference the fair flossing is set beside)."""
    return FlossingConfig(k=int(n_state), steps=steps, lr=lr, ons=ons, params=("W_s", "J", "b"), target=0.0)


@dataclass
class GatedProbe:
    """What :func:`gated_probe` measured, one value per network (``(M,)``; exponents ``(M, k)``)."""

    carry_gate: Tensor
    write: Tensor
    reach: Tensor
    signal: Tensor
    exponents: Tensor

    def frame(self, seeds: Sequence[int], **labels) -> pd.DataFrame:
        """One row per network: seed, the four measures, ``lambda_1``, and the mean and mean square of the k
        exponents."""
        e = self.exponents.double()
        return pd.DataFrame({**{k: [v] * len(seeds) for k, v in labels.items()}, "seed": list(seeds),
                             "carry_gate": self.carry_gate.tolist(), "write": self.write.tolist(),
                             "reach": self.reach.tolist(), "signal": self.signal.tolist(),
                             "lambda_1": e[:, 0].tolist(), "mean_exponent": e.mean(1).tolist(),
                             "mean_sq_exponent": (e ** 2).mean(1).tolist()})


def _geometric_mean(x: Tensor) -> Tensor:
    """Geometric mean over every axis but the first: (M, ...) -> (M,)."""
    return torch.exp(torch.log(x.clamp_min(1e-300)).flatten(1).mean(1))


def delay_gradients(net: CellNetwork, s: Tensor, delay: int, starts: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """``write``, ``reach`` and ``signal`` (module docstring) of M networks, each ``(M, B, P)``.

    Args:
        net: M gated networks (their learned initial states start the trajectories).
        s: input bits (T, M, B).
        delay: d, the copy task's delay.
        starts: P steps ``t`` (``1 <= t`` and ``t + d < T``) at which the bit ``s_t`` is followed.
    Each start is a separate ``d``-step rollout from the trajectory's state before ``t``, so the
    gradients are those of the single loss term ``l_{t+d}``.
    """
    T, M, B = s.shape
    starts = [int(t) for t in starts]
    if not starts or min(starts) < 1 or max(starts) + delay >= T:
        raise ValueError(f"need start steps t with 1 <= t and t + delay < T = {T} (delay {delay}), got {starts}")
    s = s.to(net.dtype)
    params = [t.detach() for t in (net.J, net.W_s, net.b, net.w_r, net.c)]
    quiet = CellNetwork(net.kind, *params, net.x0.detach())
    with torch.no_grad():
        states = quiet.run(s)  # states[t] = x after s_t
    P, S = len(starts), quiet.n_units
    x_before = torch.stack([states[t - 1] for t in starts], dim=2).reshape(M, B * P, S)
    bit = torch.stack([s[t] for t in starts], dim=2).reshape(M, B * P)
    with fwAD.dual_level():  # dx_t/ds_t: one forward-mode pass with tangent 1 on the bit
        x_dual = quiet.step(x_before, fwAD.make_dual(bit, torch.ones_like(bit)))
        write = fwAD.unpack_dual(x_dual).tangent.norm(dim=-1)
    bit_leaf = bit.clone().requires_grad_(True)
    x_t = quiet.step(x_before, bit_leaf)
    x = x_t
    for j in range(1, delay + 1):
        x = quiet.step(x, torch.stack([s[t + j] for t in starts], dim=2).reshape(M, B * P))
    loss = F.binary_cross_entropy_with_logits(quiet.readout(x), bit, reduction="sum")
    g_x, g_s = torch.autograd.grad(loss, [x_t, bit_leaf])
    shape = (M, B, P)
    return write.reshape(shape), g_x.norm(dim=-1).reshape(shape), g_s.abs().reshape(shape)


def gated_probe(net: CellNetwork, seeds: Sequence[int], delay: int, *, k: int, n_starts: int = 16,
                key: int = 0, exponent_steps: Optional[int] = None) -> GatedProbe:
    """Measure M gated networks (module docstring) on input bits from ``(seeds[m], PROBE_BITS, key)``:
    a trajectory of ``2 d + n_starts + d`` steps from the learned initial states, the bit at each of the
    ``n_starts`` steps after the first ``2 d`` followed for ``d`` steps; the carry gate averaged over the
    same steps; the first ``k`` exponents on a trajectory of ``exponent_steps`` (default ``8 d + 55``)."""
    if len(seeds) != net.n_members:
        raise ValueError(f"need one seed per network: got {len(seeds)} for M = {net.n_members}")
    burn = 2 * delay
    T = burn + n_starts + delay
    s = sample_bits(seeds, PROBE_BITS, key, 0, T, net.batch_size, dtype=net.dtype, device=net.device)
    write, reach, signal = delay_gradients(net, s, delay, range(burn, burn + n_starts))
    gate = gate_values(net, s)[CARRY_GATE[net.kind]][burn:burn + n_starts]  # (P, M, B, N)
    lam = evaluate_exponents(net, seeds, steps=exponent_steps or 8 * delay + 55, k=k, key=key)
    return GatedProbe(carry_gate=gate.transpose(0, 1).flatten(1).mean(1).cpu(), write=_geometric_mean(write).cpu(),
                      reach=_geometric_mean(reach).cpu(), signal=_geometric_mean(signal).cpu(), exponents=lam.cpu())


@dataclass(frozen=True)
class GatedDesign:
    """One cell's fair test (module docstring). ``flossing`` defaults to :func:`fair_flossing` of the
    delay at ``floss_lr``; ``lrs`` is the grid the task learning rate is chosen from."""

    kind: str
    n_hidden: int
    delay: int
    seq_len: int
    epochs: int
    lrs: tuple[float, ...]
    pre_steps: int
    floss_lr: float = 3e-3
    flossing: Optional[FlossingConfig] = None
    batch_size: int = 16
    carry_bias: float = 1.0
    clip: float = 0.03
    eval_every: int = 10
    success_threshold: float = 0.95
    validation_batches: int = 4
    dtype: str = "float64"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in CARRY_GATE:
            raise ValueError(f"GatedDesign.kind must be one of {list(CARRY_GATE)}, got {self.kind!r}")
        for name in ("n_hidden", "delay", "seq_len", "epochs", "pre_steps", "batch_size", "eval_every",
                     "validation_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"GatedDesign.{name} must be an int >= 1, got {v!r}")
        if self.n_hidden < 2 * self.delay:
            raise ValueError(f"GatedDesign: n_hidden = {self.n_hidden} is less than twice the delay {self.delay}; "
                             "a fair test gives the cell room for the bits in flight")
        if self.seq_len <= self.delay:
            raise ValueError(f"GatedDesign: seq_len = {self.seq_len} leaves no scored step after the delay {self.delay}")
        if not self.lrs or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.lrs):
            raise ValueError(f"GatedDesign.lrs must be a non-empty sequence of positive numbers, got {self.lrs!r}")
        if self.fair.k > self.n_state:
            raise ValueError(f"GatedDesign: {self.fair.k} flossed exponents exceed the state size {self.n_state}")

    @property
    def n_state(self) -> int:
        """The state dimension, N for the GRU and 2N for the LSTM."""
        return self.n_hidden * (1 if self.kind == "gru" else 2)

    @property
    def fair(self) -> FlossingConfig:
        """The flossing of the flossed condition."""
        return self.flossing or fair_flossing(self.delay, lr=self.floss_lr)


def _concat(nets: Sequence[CellNetwork]) -> CellNetwork:
    return CellNetwork(nets[0].kind, **{n: torch.cat([getattr(x, n).detach() for x in nets]) for n in PARAM_NAMES})


def _floss(net: CellNetwork, seeds: Sequence[int], config: FlossingConfig, steps: int) -> tuple[CellNetwork, Tensor]:
    """A flossed copy of ``net`` and the (M,) mask of members whose flossing went non-finite (left as they were
    at that step)."""
    out = net.clone()
    flosser = Flosser(out, config, seeds, on_nonfinite="mark")
    for _ in range(steps):
        flosser.step()
    return out.clone(), flosser.bad.cpu()


@dataclass
class GatedClaims:
    """The test's decisions for one cell at the chosen learning rates (:meth:`GatedTestRun.claims`).

    Attributes:
        accuracy: flossed minus unflossed final held-out accuracy, paired over seeds.
        success: per condition ``(successes, n, low, high)`` (Wilson interval at ``level``).
        faster: ``(seeds faster flossed, seeds faster unflossed, one-sided sign-test p)`` on the epochs
            to success (a seed that never succeeds counts as slowest; seeds where neither succeeds are ties).
        probe: per measure (``write, reach, signal``) the paired comparison of ``log(flossed / initial)``
            (> 0: flossing raised it), and ``carry_gate`` of the difference flossed - initial.
        reference_probe: the same for the freezing flossing (empty without it).
        accuracy_lower, probe_lower, reference_lower: the one-sided sign-flip p-values of the opposite
            direction (flossed below unflossed; flossing lowered the measure).
        accuracy_untied, probe_untied, reference_untied: the seeds whose difference is not zero (a tie
            carries no sign: the smallest p the test can reach is ``2^-untied``).
    """

    accuracy: PairedComparison
    accuracy_lower: float
    accuracy_untied: int
    success: dict[str, tuple[int, int, float, float]]
    faster: tuple[int, int, float]
    probe: dict[str, PairedComparison]
    probe_lower: dict[str, float]
    probe_untied: dict[str, int]
    reference_probe: dict[str, PairedComparison] = field(default_factory=dict)
    reference_lower: dict[str, float] = field(default_factory=dict)
    reference_untied: dict[str, int] = field(default_factory=dict)


@dataclass
class GatedTestRun:
    """Outcome of :func:`run_gated_test` for one cell.

    Attributes:
        design: the design; seeds: the network seeds.
        probes: ``{"initial", "flossed", "reference"}`` -> :class:`GatedProbe` (``reference``: the
            freezing flossing, when run).
        floss_failed: (S,) bool, seeds whose fair flossing went non-finite.
        runs: one row per (condition, lr, seed): final and validation accuracy, success epoch (-1: never),
            diverged epoch (-1: never).
        curves: held-out accuracy per evaluated epoch, (E, M) in ensemble order (condition, lr, seed), and
            ``epochs`` (E,).
    """

    design: GatedDesign
    seeds: list[int]
    probes: dict[str, GatedProbe]
    floss_failed: Tensor
    runs: pd.DataFrame
    curves: np.ndarray
    epochs: np.ndarray

    def chosen_lr(self) -> dict[str, float]:
        """Per condition, the rate whose median validation accuracy over the seeds is highest (a diverged
        member counts as accuracy -1; ties: the first rate of the grid)."""
        out = {}
        for cond in CONDITIONS:
            r = self.runs[self.runs.condition == cond]
            med = [float(np.median(r[r.lr == lr].validation_accuracy.fillna(-1.0))) for lr in self.design.lrs]
            out[cond] = float(self.design.lrs[int(np.argmax(med))])
        return out

    def chosen_at_edge(self) -> dict[str, bool]:
        """Per condition, whether the chosen rate is the grid's smallest or largest (then a rate outside the
        grid might have done better; a grid of one rate is always at its edge)."""
        lo, hi = min(self.design.lrs), max(self.design.lrs)
        return {c: lr in (lo, hi) for c, lr in self.chosen_lr().items()}

    def at_chosen(self) -> pd.DataFrame:
        """The runs at each condition's chosen rate, one row per (condition, seed)."""
        lr = self.chosen_lr()
        keep = np.array([row.lr == lr[row.condition] for row in self.runs.itertuples()])
        return self.runs[keep].reset_index(drop=True)

    def claims(self, level: float = 0.95) -> GatedClaims:
        """Paired comparisons at the chosen rates (a diverged member's accuracy counts as 0.5, chance)."""
        t = self.at_chosen()
        acc = {c: t[t.condition == c].set_index("seed").final_accuracy.fillna(0.5).loc[self.seeds].to_numpy()
               for c in CONDITIONS}
        success = {}
        for c in CONDITIONS:
            k, n = int((t[t.condition == c].success_epoch >= 0).sum()), len(self.seeds)
            lo, hi = wilson_interval(k, n, level)
            success[c] = (k, n, float(lo), float(hi))
        ep = {c: t[t.condition == c].set_index("seed").success_epoch.loc[self.seeds].to_numpy().astype(float)
              for c in CONDITIONS}
        ep = {c: np.where(v < 0, np.inf, v) for c, v in ep.items()}
        n_for = int((ep["flossed"] < ep["unflossed"]).sum())
        n_against = int((ep["flossed"] > ep["unflossed"]).sum())
        has_ref = "reference" in self.probes
        return GatedClaims(accuracy=paired_comparison(acc["flossed"], acc["unflossed"], level=level),
                           accuracy_lower=paired_comparison(acc["unflossed"], acc["flossed"], level=level).p_greater,
                           accuracy_untied=int((acc["flossed"] != acc["unflossed"]).sum()),
                           success=success, faster=(n_for, n_against, sign_test_greater(n_for, n_against)),
                           probe=self._probe_change("flossed", level),
                           probe_lower=self._probe_lower("flossed"), probe_untied=self._probe_untied("flossed"),
                           reference_probe=self._probe_change("reference", level) if has_ref else {},
                           reference_lower=self._probe_lower("reference") if has_ref else {},
                           reference_untied=self._probe_untied("reference") if has_ref else {})

    def _measures(self, which: str) -> dict[str, np.ndarray]:
        p = self.probes[which]
        out = {m: torch.log(getattr(p, m)).numpy() for m in ("write", "reach", "signal")}
        out["carry_gate"] = p.carry_gate.numpy()
        return out

    def _probe_change(self, which: str, level: float) -> dict[str, PairedComparison]:
        a, b = self._measures(which), self._measures("initial")
        return {m: paired_comparison(a[m], b[m], level=level) for m in a}

    def _probe_lower(self, which: str) -> dict[str, float]:
        a, b = self._measures(which), self._measures("initial")
        return {m: paired_comparison(b[m], a[m]).p_greater for m in a}

    def _probe_untied(self, which: str) -> dict[str, int]:
        a, b = self._measures(which), self._measures("initial")
        return {m: int((a[m] != b[m]).sum()) for m in a}

    def by_rate(self, level: float = 0.95) -> pd.DataFrame:
        """Flossed minus unflossed final held-out accuracy at every rate of the grid (paired over seeds; a
        diverged member counts as chance, 0.5), with each condition's successes: the comparison without
        the choice of rate, which picks each condition's best on the same seeds."""
        rows = []
        for lr in self.design.lrs:
            acc = {c: self.runs[(self.runs.condition == c) & (self.runs.lr == lr)].set_index("seed")
                   .final_accuracy.fillna(0.5).loc[self.seeds].to_numpy() for c in CONDITIONS}
            succ = {c: int((self.runs[(self.runs.condition == c) & (self.runs.lr == lr)].success_epoch >= 0).sum())
                    for c in CONDITIONS}
            pc = paired_comparison(acc["flossed"], acc["unflossed"], level=level)
            rows.append(dict(cell=self.design.kind, lr=lr, successes_unflossed=succ["unflossed"],
                             successes_flossed=succ["flossed"], difference=pc.mean, lo=pc.lo, hi=pc.hi,
                             higher=pc.n_greater, lower=int((acc["flossed"] < acc["unflossed"]).sum()), n=pc.n,
                             p_higher=pc.p_greater))
        return pd.DataFrame(rows)

    def probe_table(self) -> pd.DataFrame:
        """Every probe, one row per (probe, seed)."""
        return pd.concat([p.frame(self.seeds, cell=self.design.kind, probe=name) for name, p in self.probes.items()],
                         ignore_index=True)


def run_gated_test(design: GatedDesign, seeds: Sequence[int], *, reference: bool = True) -> GatedTestRun:
    """Run one cell's fair test (module docstring) on networks ``seeds``.

    The flossed networks are flossed once (``design.pre_steps`` steps of :attr:`GatedDesign.fair`) and
    then trained, with their unflossed twins, at every rate of ``design.lrs`` as one ensemble of
    ``2 * len(lrs) * len(seeds)`` members (condition-major, then rate, then seed); every member sees its
    seed's data. With ``reference``, the same networks are also flossed by :func:`freezing_flossing`
    (probed only, not trained).
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 1:
        raise ValueError("seeds must name at least one network")
    d = design
    net0 = init_cell_networks(d.kind, seeds, d.n_hidden, d.batch_size, forget_bias=d.carry_bias,
                              update_bias=d.carry_bias, dtype=d.dtype, device=d.device)
    k = d.fair.k
    probes = {"initial": gated_probe(net0, seeds, d.delay, k=k)}
    flossed, failed = _floss(net0, seeds, d.fair, d.pre_steps)
    probes["flossed"] = gated_probe(flossed, seeds, d.delay, k=k)
    if reference:
        frozen, _ = _floss(net0, seeds, freezing_flossing(d.n_state, lr=d.fair.lr, steps=d.fair.steps, ons=d.fair.ons),
                           d.pre_steps)
        probes["reference"] = gated_probe(frozen, seeds, d.delay, k=k)
    task = copy_task(d.delay)
    layout = [(c, lr, s) for c in CONDITIONS for lr in d.lrs for s in seeds]
    members = [Member(s, s, task, schedule("none"), lr=float(lr)) for _, lr, s in layout]
    network = _concat([net0 if c == "unflossed" else flossed for c in CONDITIONS for _ in d.lrs])
    tc = TrainConfig(epochs=d.epochs, batch_size=d.batch_size, seq_len=d.seq_len, lr=float(d.lrs[0]), clip=d.clip,
                     n_units=d.n_hidden, flossing=FlossingConfig(k=1), success_threshold=d.success_threshold,
                     eval_every=d.eval_every, dtype=d.dtype, device=d.device)
    res = train(members, tc, network=network)
    with torch.no_grad():  # the validation batches: read by the learning-rate choice only
        val = []
        for j in range(d.validation_batches):
            batch = sample_batch([task] * len(members), [m.data_seed for m in members], VALIDATION, j, d.seq_len,
                                 d.batch_size, dtype=res.network.dtype, device=res.network.device)
            val.append(accuracy(res.network.logits(batch.inputs), batch))
        val_acc = torch.stack(val).mean(0).cpu()
    alive = res.diverged_epoch < 0
    final = res.accuracy[-1]
    runs = pd.DataFrame({"cell": d.kind, "condition": [c for c, _, _ in layout], "lr": [lr for _, lr, _ in layout],
                         "seed": [s for _, _, s in layout],
                         "final_accuracy": torch.where(alive, final, torch.nan).tolist(),
                         "validation_accuracy": torch.where(alive, val_acc.to(final.dtype), torch.nan).tolist(),
                         "success_epoch": res.success_epoch.tolist(), "diverged_epoch": res.diverged_epoch.tolist()})
    evaluated = ~torch.isnan(res.accuracy).all(1)
    return GatedTestRun(design=d, seeds=seeds, probes=probes, floss_failed=failed, runs=runs,
                        curves=res.accuracy[evaluated].numpy(), epochs=res.epochs[evaluated].numpy())


def gated_claims_frame(claims: dict[str, GatedClaims]) -> pd.DataFrame:
    """Every cell's comparisons as one table: one row per (cell, quantity) with the estimate, its interval,
    the seeds in favour (``n_for``: flossed above unflossed, or flossing raised the measure), against
    (``n_lower``), with a non-zero difference (``n_untied``), the number of seeds, and the one-sided
    p-values of a rise (``p``) and of a fall (``p_lower``). Probe rows are the mean
    of ``log(after / before)`` (the carry gate: of the difference); ``freezing flossing`` rows are the
    reference's."""
    nan = float("nan")
    rows = []
    for kind, c in claims.items():
        a = c.accuracy
        rows.append(dict(cell=kind, quantity="final accuracy, flossed - unflossed", estimate=a.mean, lo=a.lo, hi=a.hi,
                         n_for=a.n_greater, n_lower=c.accuracy_untied - a.n_greater, n_untied=c.accuracy_untied,
                         n=a.n, p=a.p_greater, p_lower=c.accuracy_lower))
        for cond, (k, n, lo, hi) in c.success.items():
            rows.append(dict(cell=kind, quantity=f"success rate, {cond}", estimate=k / n, lo=lo, hi=hi, n_for=k,
                             n_lower=nan, n_untied=nan, n=n, p=nan, p_lower=nan))
        f, ag, p = c.faster
        rows.append(dict(cell=kind, quantity="reaches success sooner, flossed", estimate=nan, lo=nan, hi=nan,
                         n_for=f, n_lower=ag, n_untied=f + ag, n=f + ag, p=p, p_lower=sign_test_greater(ag, f)))
        for which, probe, lower, untied in (("fair flossing", c.probe, c.probe_lower, c.probe_untied),
                                            ("freezing flossing", c.reference_probe, c.reference_lower,
                                             c.reference_untied)):
            for m, pc in probe.items():
                what = "change of the mean carry gate" if m == "carry_gate" else f"log change of {m}"
                rows.append(dict(cell=kind, quantity=f"{which}: {what}", estimate=pc.mean, lo=pc.lo, hi=pc.hi,
                                 n_for=pc.n_greater, n_lower=untied[m] - pc.n_greater, n_untied=untied[m], n=pc.n,
                                 p=pc.p_greater, p_lower=lower[m]))
    return pd.DataFrame(rows)


#: the questions :func:`gated_verdicts` decides: name -> (quantity of :func:`gated_claims_frame`, direction)
QUESTIONS = {
    "accuracy": ("final accuracy, flossed - unflossed", "up"),
    "fair_signal": ("fair flossing: log change of signal", "up"),
    "fair_signal_fall": ("fair flossing: log change of signal", "down"),
    "fair_gate": ("fair flossing: change of the mean carry gate", "up"),
    "fair_write": ("fair flossing: log change of write", "down"),
    "freezing_signal": ("freezing flossing: log change of signal", "up"),
    "freezing_gate": ("freezing flossing: change of the mean carry gate", "up"),
    "freezing_write": ("freezing flossing: log change of write", "down"),
}


def gated_verdicts(frame: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Each question of :data:`QUESTIONS` decided for every cell of a :func:`gated_claims_frame` table (its
    one-sided p-value in the question's direction), the cells of one question together at family-wise
    ``alpha`` (Holm). Verdict ``"yes"``, ``"not shown"`` (the test could have decided and did not: not
    evidence of no effect), or ``"not decidable"`` when even the smallest p its untied seeds allow
    (``2^-u`` for a sign-flip test over ``u`` untied seeds) would not have passed Holm beside the other
    cells' p as observed (:func:`~floss_utils.common.holm_reachable`).
    The questions are not corrected against each other.

    Returns one row per (question, cell): p, n (untied seeds), the threshold Holm compared that p with
    (``alpha / (cells - rank)``, rank 0 for the smallest p; NaN when Holm stopped at a smaller p and never
    compared this one), verdict."""
    rows = []
    for q, (quantity, direction) in QUESTIONS.items():
        sub = frame[frame.quantity == quantity]
        if sub.empty:
            continue
        col = "p" if direction == "up" else "p_lower"
        pvals = dict(zip(sub.cell, sub[col].astype(float)))
        decided = holm(pvals, alpha)
        reachable = holm_reachable(pvals, {c: 2.0 ** -int(n) for c, n in zip(sub.cell, sub.n_untied)}, alpha)
        order = sorted(pvals, key=pvals.get)
        for cell, n in zip(sub.cell, sub.n_untied.astype(int)):
            rank = order.index(cell)
            compared = all(decided[c] for c in order[:rank])  # Holm reached this p
            verdict = "yes" if decided[cell] else "not shown" if reachable[cell] else "not decidable"
            rows.append(dict(question=q, cell=cell, p=pvals[cell], n=n,
                             threshold=holm_threshold(pvals, cell, alpha) if compared else float("nan"), verdict=verdict))
    return pd.DataFrame(rows)


def chosen_curves(run: GatedTestRun) -> pd.DataFrame:
    """Held-out accuracy against epoch at each condition's chosen rate: one row per (epoch, condition, seed)."""
    lr = run.chosen_lr()
    layout = [(c, r, s) for c in CONDITIONS for r in run.design.lrs for s in run.seeds]
    rows = []
    for j, (c, r, s) in enumerate(layout):
        if r == lr[c]:
            rows.append(pd.DataFrame({"cell": run.design.kind, "condition": c, "lr": r, "seed": s,
                                      "epoch": run.epochs, "accuracy": run.curves[:, j]}))
    return pd.concat(rows, ignore_index=True)


def side_by_side(frames: dict[str, pd.DataFrame], quantities: Sequence[str]) -> pd.DataFrame:
    """The same comparisons at several sizes: one row per (cell, quantity) of ``quantities``, one column per
    size (``frames``: size label -> :func:`gated_claims_frame` table), each entry "estimate [lo, hi], seeds up /
    down, one-sided p of a rise / of a fall" (a success rate: "k of n [lo, hi]"; the speed row: seeds sooner /
    later and its p-values)."""
    def entry(r) -> str:
        if str(r.quantity).startswith("success rate"):
            return f"{int(r.n_for)} of {int(r.n)} [{r.lo:.2f}, {r.hi:.2f}]"
        ps = f"p {r.p:.2g} / {r.p_lower:.2g}"
        if pd.isna(r.estimate):
            return f"{int(r.n_for)} sooner / {int(r.n_lower)} later, {ps}"
        return f"{r.estimate:+.3g} [{r.lo:+.3g}, {r.hi:+.3g}], {int(r.n_for)} up / {int(r.n_lower)} down, {ps}"

    out = None
    for label, f in frames.items():
        sub = f[f.quantity.isin(quantities)].copy()
        sub[label] = [entry(r) for r in sub.itertuples()]
        sub = sub[["cell", "quantity", label]]
        out = sub if out is None else out.merge(sub, on=["cell", "quantity"], how="outer")
    order = {q: i for i, q in enumerate(quantities)}
    return out.sort_values(["cell", "quantity"], key=lambda c: c.map(order) if c.name == "quantity" else c
                           ).reset_index(drop=True)


def describe_comparison(frame: pd.DataFrame, cell: str, quantity: str, direction: str = "up") -> str:
    """One row of a :func:`gated_claims_frame` table in words: "+0.012 (95 % interval -0.004 to +0.030), higher
    for 6 of 8 seeds, p = 0.035" (a success rate: "7 of 8 (95 % Wilson 0.53 to 0.98)"; the speed row: "5 of 6
    seeds whose two networks differ, p = 0.11"); ``direction="down"`` counts the seeds lower and gives the
    p-value of a fall."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    rows = frame[(frame.cell == cell) & (frame.quantity == quantity)]
    if len(rows) != 1:
        raise KeyError(f"no single row for cell {cell!r}, quantity {quantity!r}")
    r = rows.iloc[0]
    if quantity.startswith("success rate"):
        return f"{int(r.n_for)} of {int(r.n)} (95 % Wilson {r.lo:.2f} to {r.hi:.2f})"
    if pd.isna(r.estimate):
        return f"{int(r.n_for)} of {int(r.n)} seeds whose two networks differ, p = {r.p:.2g}"
    up = direction == "up"
    return (f"{r.estimate:+.3g} (95 % bootstrap interval {r.lo:+.3g} to {r.hi:+.3g}), {'higher' if up else 'lower'} for "
            f"{int(r.n_for if up else r.n_lower)} of {int(r.n)} seeds, p = {r.p if up else r.p_lower:.2g}")


def flossing_effect(frame: pd.DataFrame, verdicts: pd.DataFrame, cell: str) -> str:
    """What the fair flossing did to one cell before training, in words, from a :func:`gated_claims_frame`
    table and its :func:`gated_verdicts` (with the freezing flossing's rows): whether it raised or lowered the
    gradient signal (or neither, detectably), how far it moved the carry gate compared with the freezing
    flossing, and the factors on reach and write beside the freezing flossing's. Factors are geometric means
    over the seeds (``exp`` of the mean log change)."""
    rows = frame.set_index(["cell", "quantity"])
    v = verdicts.set_index(["question", "cell"]).verdict

    def est(which: str, what: str) -> float:
        return float(rows.loc[(cell, f"{which} flossing: {what}")].estimate)

    signal = math.exp(est("fair", "log change of signal"))
    if v.loc[("fair_signal", cell)] == "yes":
        text = f"raises the gradient signal (x{signal:.2g})"
    elif v.loc[("fair_signal_fall", cell)] == "yes":
        text = f"lowers the gradient signal (x{signal:.2g})"
    else:
        text = f"changes the gradient signal by no detectable amount (x{signal:.2g})"
    gate, frozen = est("fair", "change of the mean carry gate"), est("freezing", "change of the mean carry gate")
    moved = "raises" if v.loc[("fair_gate", cell)] == "yes" else "changes, by no detectable rise,"
    text += (f"; it {moved} the carry gate by {gate:+.2f}"
             + (f", {gate / frozen:.0%} of the freezing flossing's {frozen:+.2f}" if frozen > 0 else
                f" (the freezing flossing: {frozen:+.2f})"))
    f = {(w, m): math.exp(est(w, f"log change of {m}")) for w in ("fair", "freezing") for m in ("reach", "write")}
    return text + (f"; reach x{f[('fair', 'reach')]:.2g} and write x{f[('fair', 'write')]:.2g}, against "
                   f"x{f[('freezing', 'reach')]:.2g} and x{f[('freezing', 'write')]:.2g} for the freezing flossing")


#: how a verdict of :func:`gated_verdicts` reads in GF's claim (:func:`claim_text`)
VERDICT_WORDS = {"yes": "supported", "not shown": "not shown at family-wise 0.05",
                 "not decidable": "not decidable (too few seeds whose two networks differ)"}


def claim_text(frame: pd.DataFrame, verdicts: pd.DataFrame, cell: str) -> str:
    """GF's claim for one cell (flossing before training raises the final held-out accuracy) in words,
    from a :func:`gated_claims_frame` table and its :func:`gated_verdicts`: the verdict
    (:data:`VERDICT_WORDS`), flossed minus unflossed (:func:`describe_comparison`), the threshold Holm
    compared its p with (or that Holm stopped at the other cell's smaller p) and the p of a fall."""
    v = verdicts.set_index(["question", "cell"]).loc[("accuracy", cell)]
    holm_said = (f"Holm's threshold at its rank {v.threshold:.3g}" if pd.notna(v.threshold) else
                 "Holm stopped at the other cell's smaller p")
    quantity = "final accuracy, flossed - unflossed"
    fall = frame.set_index(["cell", "quantity"]).loc[(cell, quantity)].p_lower
    return (f"{VERDICT_WORDS[v.verdict]}: flossed minus unflossed " + describe_comparison(frame, cell, quantity)
            + f" ({holm_said}; the opposite direction, a fall: p = {fall:.2g})")


#: what each probe question of :data:`QUESTIONS` asserts about a flossing, in words (:func:`question_text`)
QUESTION_CLAIMS = {"fair_signal": "raises the signal", "fair_gate": "raises the carry gate",
                   "fair_write": "lowers the write", "freezing_signal": "raises the signal",
                   "freezing_write": "lowers the write", "freezing_gate": "raises the carry gate"}


def question_text(frame: pd.DataFrame, verdicts: pd.DataFrame, question: str, cell: str) -> str:
    """One probe question (:data:`QUESTION_CLAIMS`) for one cell in words: "it raises the signal",
    "that it raises the signal is not shown" or "too few seeds to say whether it raises the signal",
    after its :func:`gated_verdicts` verdict, then the comparison in the question's direction
    (:func:`describe_comparison`)."""
    if question not in QUESTION_CLAIMS:
        raise KeyError(f"no words for question {question!r}; known: {sorted(QUESTION_CLAIMS)}")
    claim, (quantity, direction) = QUESTION_CLAIMS[question], QUESTIONS[question]
    v = verdicts.set_index(["question", "cell"]).loc[(question, cell)].verdict
    text = (f"it {claim}" if v == "yes" else f"that it {claim} is not shown" if v == "not shown"
            else f"too few seeds to say whether it {claim}")
    return f"{text}: {describe_comparison(frame, cell, quantity, direction)}"
