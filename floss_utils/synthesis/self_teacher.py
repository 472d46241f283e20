"""GF networks as their own teacher: the sharpness and Adam's effective learning rates of a
flossed network (Part IV, *ours*).

* :func:`gf_self_teacher_loss` - ``1/2 mean_{b,t} (r_theta - r_theta0)^2``, the readout of the
  network with parameters ``theta`` against the readout of the network itself (``theta0``). At
  ``theta0`` the loss and its gradient vanish and the Hessian is the Gauss-Newton matrix
  ``E[dr dr^T]``: ZO's teacher-student optimum, with the flossed network as the teacher.
* :func:`gf_readout_variance` - the output scale against which a sharpness can be normalized.
* :func:`adam_self_teacher_run` - Adam on ``J`` of a copy of each network trained on the network's
  readout (from the network itself with noisy targets, or from a perturbed copy); returns Adam's
  moments, for
  :func:`floss_utils.curse_of_memory.landscape.effective_learning_rates`.
* :func:`task_bits` - the random input bits of these losses, one stream per member.
* :func:`paired_shrink`, :func:`paired_shrink_in_table` - how much smaller a per-seed quantity is
  after flossing (geometric-mean ratio, bootstrap interval, sign-flip test), and
  :func:`shrink_weaker` - whether one such effect is weaker than another, interval against interval;
  :func:`arrival_misses` - the networks that did not arrive at their flossing target;
  :func:`kept_run_shrink`, :func:`read_kept_run` - the paired test read off a kept chapter run's
  table, with its networks that did not arrive and its agreement with a record of the same networks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..common import paired_comparison, seeded_generator
from ..flossing.tanh_network import GFNetwork
from ..optim import BatchedAdam
from ..progress import report_progress
from .curvature import flatten, unflatten

__all__ = ["gf_self_teacher_loss", "gf_readout_variance", "gain", "with_gain", "with_memory", "adam_self_teacher_run", "AdamSelfTeacherRun",
           "task_bits", "Shrink", "paired_shrink", "paired_shrink_in_table", "shrink_weaker", "arrival_misses", "KeptRunShrink", "kept_run_shrink", "read_kept_run", "SHARP_BITS", "ADAM_BITS", "ADAM_PERTURB", "ADAM_NOISE"]

#: generator purposes of this module (seeded_generator(seed, purpose, ...)); 0-5 are taken by Part III
SHARP_BITS, ADAM_BITS, ADAM_PERTURB, ADAM_NOISE = 20, 21, 22, 23


def _with(net: GFNetwork, names: Sequence[str], values: Sequence[Tensor]) -> GFNetwork:
    kw = {n: getattr(net, n) for n in ("J", "W_s", "b", "w_r", "c", "x0")}
    kw.update(dict(zip(names, values)))
    return GFNetwork(**kw)


def gain(net: GFNetwork) -> Tensor:
    """``(M,)`` the gain ``g = ||J||_F / sqrt(N)`` of each member: the ``g`` of ``J_ij ~ N(0, g^2/N)``."""
    M, N = net.n_members, net.n_units
    return net.J.detach().reshape(M, -1).norm(dim=1) / N**0.5


def with_gain(net: GFNetwork, target: Tensor | Sequence[float]) -> GFNetwork:
    """A detached copy of ``net`` whose recurrent matrix of member ``m`` is rescaled,
    ``J -> J target_m / g_m``, to the gain ``target_m`` (:func:`gain`); every other parameter is
    unchanged. The matched-gain control of chapter 12: the flossed network's gain without its
    flossing. ``target``: ``(M,)`` positive."""
    t = torch.as_tensor(target, dtype=net.J.dtype, device=net.J.device).reshape(-1)
    if t.shape != (net.n_members,):
        raise ValueError(f"need one target gain per member ({net.n_members}), got shape {tuple(t.shape)}")
    if not bool((t > 0).all()) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"target gains must be finite and positive, got {t.tolist()}")
    out = net.clone()
    out.J.mul_((t / gain(out))[:, None, None])
    return out


def with_memory(net: GFNetwork, target: Tensor | Sequence[float], seeds: Sequence[int], *, steps: int, key: int = 1,
                k: int = 1, lo: float = 0.25, hi: float = 4.0, grid: int = 25, rounds: int = 7) -> tuple[GFNetwork, Tensor]:
    """A detached copy of ``net`` whose recurrent matrix of member ``m`` is rescaled, ``J -> s_m J``,
    until its largest exponent equals ``target_m``: the matched-memory control of chapter 12 (the
    unflossed network at the flossed network's memory ``1/|lambda_1|``, without its flossing).

    ``lambda_1`` is evaluated by :func:`~floss_utils.flossing.flosser.evaluate_exponents` on the
    same input bits and basis at every scale (``seeds``, ``key``, ``steps``, ``k``: the first of
    ``k`` exponents, so that it is the same estimate as a ``k``-exponent evaluation's), so it is a
    deterministic function of ``s``. It need not be monotone in ``s`` (a strongly driven network
    saturates as ``s`` grows, and its ``lambda_1`` falls again), so ``s`` is first scanned on
    ``grid`` log-spaced points of ``[lo, hi]`` for the smallest interval where ``lambda_1 - target``
    turns from negative to non-negative; that interval is then refined ``rounds`` times by the same
    scan on ``grid`` points inside it (every member and every point of a round in one batched
    evaluation; the interval's endpoints keep their earlier values). The scale is located to a
    factor ``(hi/lo)^((grid - 1)^-(rounds + 1))`` (defaults: below ``1 + 1e-10``).

    Missed by construction: a target already met at ``s = lo`` with no later upward crossing, and
    a crossing that goes up and back down between two points of the first scan. A member whose
    ``lambda_1`` never crosses the target upward on the scan has no matched-memory counterpart:
    its scale is NaN and its ``J`` is left unscaled.

    Returns:
        The rescaled copy and the scales ``s`` (M,), NaN where the target is not reached.
    """
    from ..flossing.flosser import evaluate_exponents

    t = torch.as_tensor(target, dtype=torch.float64).reshape(-1)
    M = net.n_members
    if t.shape != (M,) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"need one finite target exponent per member ({M}), got {t.tolist()}")
    if not 0 < lo < hi or grid < 2 or rounds < 0:
        raise ValueError(f"need 0 < lo < hi, grid >= 2 and rounds >= 0, got lo = {lo}, hi = {hi}, grid = {grid}, "
                         f"rounds = {rounds}")

    def gaps(log_scale: Tensor) -> Tensor:  # lambda_1 - target at scales e^log_scale (M, P): one batched evaluation
        P = log_scale.shape[1]
        copies = GFNetwork.cat([net.clone() for _ in range(P)])  # point-major: member m of point p at p * M + m
        copies.J.mul_(log_scale.T.reshape(-1).exp().to(copies.J)[:, None, None])
        lam1 = evaluate_exponents(copies, list(seeds) * P, steps=steps, k=k, key=key)[:, 0]
        return lam1.cpu().to(torch.float64).reshape(P, M).T - t[:, None]

    rows = torch.arange(M)
    pts = torch.linspace(math.log(lo), math.log(hi), grid, dtype=torch.float64).expand(M, grid)
    scan = gaps(pts)  # (M, grid)
    crossing = (scan[:, :-1] < 0) & (scan[:, 1:] >= 0)
    reached = crossing.any(1)
    first = crossing.to(torch.int64).argmax(1)  # the first crossing (0 where none)
    a, b = pts[rows, first], pts[rows, first + 1]
    ga, gb = scan[rows, first], scan[rows, first + 1]
    frac = torch.linspace(0, 1, grid, dtype=torch.float64)[1:-1]
    for _ in range(rounds):
        inner = a[:, None] + (b - a)[:, None] * frac  # (M, grid - 2)
        g = torch.cat([ga[:, None], gaps(inner), gb[:, None]], 1)
        x = torch.cat([a[:, None], inner, b[:, None]], 1)
        crossing = (g[:, :-1] < 0) & (g[:, 1:] >= 0)  # the endpoints straddle: there is one in every reached row
        first = crossing.to(torch.int64).argmax(1)
        a, b, ga, gb = x[rows, first], x[rows, first + 1], g[rows, first], g[rows, first + 1]
    scale = torch.where(reached, ((a + b) / 2).exp(), torch.full_like(a, float("nan")))
    out = net.clone()
    out.J.mul_(torch.where(reached, scale, torch.ones_like(scale)).to(out.J)[:, None, None])
    return out, scale


def _readout(net: GFNetwork, bits: Tensor, burn_in: int) -> Tensor:
    return net.logits(bits)[burn_in:]  # (T - burn_in, M, B)


def gf_self_teacher_loss(net: GFNetwork, names: Sequence[str], bits: Tensor, burn_in: int = 0
                         ) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """The self-teacher loss of each member and the point ``theta0`` where it vanishes.

    Args:
        net: M GF networks (the teachers; detached copies are used).
        names: the parameters the loss is a function of (e.g. ``("J",)`` or ``("J", "W_s")``).
        bits: inputs ``(T, M, B)`` with ``B = net.batch_size`` (the learned initial states).
        burn_in: leading steps left out of the loss.
    Returns:
        ``(loss_fn, theta0)``: ``loss_fn(theta (M, P)) -> (M,)`` is
        ``1/2 mean_{t > burn_in, b} (r_t(theta) - r_t(theta0))^2``; ``theta0`` ``(M, P)``.
    """
    if bits.ndim != 3 or bits.shape[1:] != (net.n_members, net.batch_size):
        raise ValueError(f"bits must have shape (T, M={net.n_members}, B={net.batch_size}), got {tuple(bits.shape)}")
    if not 0 <= burn_in < bits.shape[0]:
        raise ValueError(f"burn_in must lie in [0, T = {bits.shape[0]}), got {burn_in}")
    teacher = net.clone()
    like = teacher.tensors(names)
    theta0 = flatten(like)
    with torch.no_grad():
        target = _readout(teacher, bits, burn_in)

    def loss_fn(theta: Tensor) -> Tensor:
        r = _readout(_with(teacher, names, unflatten(theta, like)), bits, burn_in)
        return 0.5 * ((r - target) ** 2).mean(dim=(0, 2))

    return loss_fn, theta0


@torch.no_grad()
def gf_readout_variance(net: GFNetwork, bits: Tensor, burn_in: int = 0) -> Tensor:
    """``(M,)`` variance of each member's readout over time steps and batch (the output scale
    against which a sharpness can be normalized)."""
    r = _readout(net, bits, burn_in)
    return r.var(dim=(0, 2), correction=0)


def task_bits(seeds: Sequence[int], purpose: int, key: int, steps: int, batch: int) -> Tensor:
    """Random input bits ``(steps, M, batch)``, member m's from ``(seeds[m], purpose, key)``."""
    return torch.stack([torch.randint(0, 2, (steps, batch), generator=seeded_generator(int(s), purpose, key))
                        for s in seeds], dim=1).to(torch.float64)


@dataclass
class AdamSelfTeacherRun:
    """Outcome of :func:`adam_self_teacher_run`: Adam's moments of ``J`` ``(M, N, N)`` after
    ``steps`` updates, the batch losses ``(steps, M)`` (against the noisy targets), the gradient
    norms ``(steps, M)`` and the distance ``||J - J0||_F / sqrt(N)`` of the last iterate from the
    teacher ``(M,)``."""

    m: Tensor
    v: Tensor
    steps: int
    lr: float
    losses: Tensor
    grad_norms: Tensor
    drift: Tensor


def adam_self_teacher_run(net: GFNetwork, seeds: Sequence[int], *, steps: int, lr: float, perturbation: float = 0.0,
                          label_noise: float = 0.0, seq_len: int, burn_in: int = 0) -> AdamSelfTeacherRun:
    """Train ``J`` of a copy of every network on the network's own readout with Adam.

    The student starts at ``J + perturbation * Z / sqrt(N)`` (Z standard normal from
    ``(seeds[m], ADAM_PERTURB)``; ``perturbation = 0``: at the teacher, the trained state); every
    step sees fresh bits ``(seq_len, M, B)`` from ``(seeds[m], ADAM_BITS, step)`` and minimizes
    ``1/2 mean_{t > burn_in, b} (r_t(J) - r_t(J0) - label_noise xi_tb)^2`` with ``xi`` standard
    normal from ``(seeds[m], ADAM_NOISE, step)`` (``label_noise`` in units of the readout). At the
    teacher the expected gradient vanishes and each batch's gradient is the noise projected on
    ``dr/dJ``, so Adam's second moment of an entry settles at ``label_noise^2`` times a diagonal
    entry of the Gauss-Newton matrix over the batch size: its effective learning rates read the
    curvature the way they do near any optimum reached with noisy data. Members are independent
    (one tensor program).
    """
    if steps < 1 or not lr > 0 or perturbation < 0 or label_noise < 0:
        raise ValueError(f"need steps >= 1, lr > 0, perturbation >= 0, label_noise >= 0; got {steps}, {lr}, "
                         f"{perturbation}, {label_noise}")
    if not 0 <= burn_in < seq_len:
        raise ValueError(f"burn_in must lie in [0, seq_len = {seq_len}), got {burn_in}")
    teacher = net.clone()
    M, N, B = net.n_members, net.n_units, net.batch_size
    Z = torch.stack([torch.randn(N, N, generator=seeded_generator(int(s), ADAM_PERTURB), dtype=torch.float64)
                     for s in seeds]).to(teacher.J)
    J = (teacher.J + perturbation * Z / math.sqrt(N)).requires_grad_(True)
    opt = BatchedAdam([J], lr=lr)
    losses, norms = [], []
    where = f"{M} networks of N = {N}, sequences of {seq_len}"
    report_progress("adam_self_teacher_run", 0, steps, unit="Adam steps", detail=where)
    for step in range(steps):
        bits = task_bits(seeds, ADAM_BITS, step, seq_len, B).to(teacher.J)
        with torch.no_grad():
            target = _readout(teacher, bits, burn_in)
        if label_noise > 0:
            xi = torch.stack([torch.randn(seq_len - burn_in, B, generator=seeded_generator(int(s), ADAM_NOISE, step),
                                          dtype=torch.float64) for s in seeds], dim=1)
            target = target + label_noise * xi.to(target)
        r = _readout(_with(teacher, ("J",), (J,)), bits, burn_in)
        loss = 0.5 * ((r - target) ** 2).mean(dim=(0, 2))
        (g,) = torch.autograd.grad(loss.sum(), J)
        opt.step([g])
        losses.append(loss.detach())
        norms.append(g.reshape(M, -1).norm(dim=-1))
        report_progress("adam_self_teacher_run", step + 1, steps, unit="Adam steps", detail=where)
    drift = (J.detach() - teacher.J).reshape(M, -1).norm(dim=1) / math.sqrt(N)
    return AdamSelfTeacherRun(m=opt.m[0].detach(), v=opt.v[0].detach(), steps=steps, lr=lr,
                              losses=torch.stack(losses), grad_norms=torch.stack(norms), drift=drift)


@dataclass(frozen=True)
class Shrink:
    """How much smaller a positive per-seed quantity is *after* than *before*, paired by seed.

    Attributes:
        ratio: geometric mean over seeds of ``after / before`` (below 1: smaller after).
        lo, hi: its percentile-bootstrap interval at ``level`` (resampling the seeds).
        p: one-sided sign-flip p-value of "smaller after" (exact up to 20 seeds).
        n_smaller: seeds where ``after < before``.
        n: seeds.
        p_min: the smallest p the test can reach with ``n`` seeds (the underlying
            :class:`floss_utils.common.PairedComparison`'s ``p_min``: ``2^-n`` up to 20 seeds).
        level: the interval's confidence level.
    """

    ratio: float
    lo: float
    hi: float
    p: float
    n_smaller: int
    n: int
    p_min: float
    level: float

    def decidable(self, alpha: float) -> bool:
        """Whether ``n`` seeds can reach ``p < alpha`` at all."""
        return self.p_min < alpha

    def __str__(self) -> str:
        return (f"ratio {self.ratio:.2f} ({100 * self.level:g} % interval {self.lo:.2f} to {self.hi:.2f}), "
                f"{self.n_smaller} of {self.n} seeds smaller, p = {self.p:.2g}")


def paired_shrink(before, after, *, level: float, seed: int = 0) -> Shrink:
    """The paired shrink ``after / before`` of positive per-seed values ``(n,)`` each, same seed
    order: :func:`floss_utils.common.paired_comparison` on their logarithms, back on the ratio
    scale (the interval of the mean log ratio, exponentiated)."""
    before, after = np.asarray(before, dtype=float).reshape(-1), np.asarray(after, dtype=float).reshape(-1)
    if before.shape != after.shape:
        raise ValueError(f"need one value per seed in both conditions, got {before.size} and {after.size}")
    if not (np.isfinite(before).all() and np.isfinite(after).all() and (before > 0).all() and (after > 0).all()):
        raise ValueError("need finite positive values to compare as ratios")
    pc = paired_comparison(np.log(before), np.log(after), level=level, seed=seed)
    return Shrink(ratio=math.exp(-pc.mean), lo=math.exp(-pc.hi), hi=math.exp(-pc.lo), p=pc.p_greater,
                  n_smaller=pc.n_greater, n=pc.n, p_min=pc.p_min, level=level)


def paired_shrink_in_table(table: pd.DataFrame, column: str, *, before: str = "unflossed", after: str = "0",
                           level: float, seed: int = 0, seeds: Sequence[int] | None = None) -> Shrink:
    """:func:`paired_shrink` of ``column`` between two conditions of a table with one row per
    ``(condition, seed)`` (columns ``condition``, ``seed``, ``column``), paired by seed; over the
    seeds ``seeds`` only where given (each must be in the table)."""
    for name in ("condition", "seed", column):
        if name not in table.columns:
            raise KeyError(f"the table has no column {name!r} (columns: {list(table.columns)})")
    cond = table.condition.astype(str)
    a = table[cond == before].set_index("seed")[column]
    b = table[cond == after].set_index("seed")[column]
    if a.empty or b.empty:
        raise ValueError(f"the table has no rows for condition {before!r} or {after!r} "
                         f"(conditions: {sorted(cond.unique())})")
    if not (a.index.is_unique and b.index.is_unique) or set(a.index) != set(b.index):
        raise ValueError(f"conditions {before!r} and {after!r} must have the same seeds, once each: "
                         f"{sorted(a.index)} vs {sorted(b.index)}")
    if seeds is None:
        seeds = sorted(a.index)
    elif not set(seeds) <= set(a.index):
        raise ValueError(f"seeds {sorted(set(seeds) - set(a.index))} are not in the table")
    return paired_shrink(a.loc[list(seeds)].to_numpy(), b.loc[list(seeds)].to_numpy(), level=level, seed=seed)


def arrival_misses(table: pd.DataFrame, condition: str, target: float, tol: float,
                   column: str = "mean flossed lambda") -> list[int]:
    """Seeds of ``condition`` whose ``column`` (per step) lies ``tol`` or farther from ``target``:
    the networks flossed to ``target`` that did not arrive, by chapter 12's criterion (the mean of
    the flossed exponents within ``tol`` of the target)."""
    rows = table[table.condition.astype(str) == condition]
    if rows.empty:
        raise ValueError(f"the table has no rows for condition {condition!r}")
    return sorted(int(s) for s in rows.loc[(rows[column] - target).abs() >= tol, "seed"])


def shrink_weaker(other: Shrink, other_slope: tuple[float, float], this: Shrink, this_slope: tuple[float, float]
                  ) -> bool:
    """Whether the effect measured as ``other`` is weaker than ``this``, interval against interval:
    the interval of ``other``'s ratio lies wholly above ``this``'s (nearer 1: a smaller shrink) and
    the interval ``(lo, hi)`` of ``other``'s (negative) slope against the sharpness wholly above
    ``this``'s (shallower). Both ratios must carry intervals at the same level; an interval that is
    NaN, or a ratio over one seed (its bootstrap interval is a point), gives False: nothing is shown."""
    if other.level != this.level:
        raise ValueError(f"compare intervals at one level, got {other.level} and {this.level}")
    values = (other.lo, other.hi, this.lo, this.hi, *other_slope, *this_slope)
    if min(other.n, this.n) < 2 or not all(math.isfinite(v) for v in values):
        return False
    return other.lo > this.hi and other_slope[0] > this_slope[1]


@dataclass(frozen=True)
class KeptRunShrink:
    """Section 12.4's paired test read off a kept chapter run (see :func:`kept_run_shrink`).

    Attributes:
        seeds: the run's seeds, sorted.
        shrink: unflossed -> flossed to 0 over every seed.
        not_arrived: seeds whose network flossed to 0 did not arrive (:func:`arrival_misses`).
        shrink_arrived: the same test over the seeds that arrived (None with fewer than 2).
        ratios: per seed, flossed to 0 over unflossed (``pd.Series`` indexed by seed).
        flossed_lambda: per seed, the mean flossed exponent of the network flossed to 0 (per step).
        shared: the seeds the run shares with the record it is compared with.
        equal_to_record: whether both conditions' values equal the record's exactly on ``shared``
            (False when nothing is shared).
    """

    seeds: list[int]
    shrink: Shrink
    not_arrived: list[int]
    shrink_arrived: Shrink | None
    ratios: pd.Series
    flossed_lambda: pd.Series
    shared: list[int]
    equal_to_record: bool

    @property
    def worst(self) -> int:
        """The seed with the largest ratio (the least shrink)."""
        return int(self.ratios.idxmax())

    def arrival_text(self) -> str:
        """Which networks flossed to 0 did not arrive, and the test over those that did, in words."""
        if not self.not_arrived:
            return "every network flossed to 0 arrived by section 12.2's criterion"
        return (f"{len(self.not_arrived)} of the {len(self.seeds)} networks flossed to 0 did not arrive by section 12.2's "
                f"criterion (seeds {', '.join(f'{s} at {self.flossed_lambda[s]:+.3f}' for s in self.not_arrived)}: the "
                f"mean of their flossed exponents); over the {len(self.seeds) - len(self.not_arrived)} that did: "
                + (f"{self.shrink_arrived}" if self.shrink_arrived is not None else "too few to compare"))


def kept_run_shrink(populations: pd.DataFrame, record: pd.DataFrame, *, tol: float, level: float, seed: int = 0,
                    column: str = "median effective lr") -> KeptRunShrink:
    """The paired shrink of ``column`` from the unflossed networks to those flossed to 0 in a kept
    run's ``populations`` table (one row per ``condition, seed``, with ``column`` and ``mean
    flossed lambda``), over every seed and over those that arrived within ``tol`` of 0; and the
    run's values against a ``record`` of the same networks (columns ``seed, eta_unflossed,
    eta_flossed_to_0``), exact equality on the seeds both hold."""
    for name in ("seed", "eta_unflossed", "eta_flossed_to_0"):
        if name not in record.columns:
            raise KeyError(f"the record has no column {name!r} (columns: {list(record.columns)})")
    shrink = paired_shrink_in_table(populations, column, level=level, seed=seed)
    cond = populations.condition.astype(str)
    seeds = sorted(int(s) for s in populations.seed[cond == "0"])
    missed = arrival_misses(populations, "0", 0.0, tol)
    arrived = [s for s in seeds if s not in missed]
    shrink_arrived = (paired_shrink_in_table(populations, column, level=level, seed=seed, seeds=arrived)
                      if len(arrived) >= 2 else None)
    value = lambda c: populations[cond == c].set_index("seed")[column].loc[seeds]  # noqa: E731
    ratios = value("0") / value("unflossed")
    lam = populations[cond == "0"].set_index("seed")["mean flossed lambda"].loc[seeds]
    rec = record.set_index("seed")
    shared = [s for s in seeds if s in rec.index]
    equal = bool(shared) and (np.array_equal(rec.loc[shared, "eta_unflossed"].to_numpy(), value("unflossed").loc[shared].to_numpy())
                              and np.array_equal(rec.loc[shared, "eta_flossed_to_0"].to_numpy(), value("0").loc[shared].to_numpy()))
    return KeptRunShrink(seeds=seeds, shrink=shrink, not_arrived=missed, shrink_arrived=shrink_arrived, ratios=ratios,
                         flossed_lambda=lam, shared=shared, equal_to_record=equal)


def read_kept_run(directory: str | Path, record: pd.DataFrame, *, tolerance: Callable[[Sequence[float]], float],
                  level: float, seed: int = 0) -> tuple[dict | None, KeptRunShrink | None]:
    """A chapter-12 run kept by ``benchmarks/bench_book.py`` (a folder with ``run.json`` and, where
    the run got that far, section 12.4's ``populations.csv``): its ``run.json`` (None if absent) and
    :func:`kept_run_shrink` of its table (None if the run wrote none), with the arrival tolerance
    ``tolerance(targets)`` of the run's own flossing targets."""
    directory = Path(directory)
    if not (directory / "run.json").is_file():
        return None, None
    run = json.loads((directory / "run.json").read_text())
    if not (directory / "populations.csv").is_file():
        return run, None
    tol = tolerance(run["parameters"]["targets"])
    return run, kept_run_shrink(pd.read_csv(directory / "populations.csv"), record, tol=tol, level=level, seed=seed)
