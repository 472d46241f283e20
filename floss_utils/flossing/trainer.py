"""Training GF networks on the binary memory tasks, with flossing schedules, as ensembles.

Protocol (GF's public code, :class:`TrainConfig` defaults): one Adam step (lr 1e-3, per-tensor
gradient-norm clipping at 0.03) per epoch on a fresh batch (B = 16 sequences of T = 300 steps);
binary cross-entropy with logits, averaged over the scored steps (from the first scorable one,
:attr:`floss_utils.flossing.tasks.Task.first_scored`) and the batch; all of ``J, W_s, b, w_r, c, x0``
are trained. After each step the held-out accuracy is measured on a fresh batch. A run
**succeeds** at the first epoch whose held-out accuracy reaches ``success_threshold`` (0.95).

Flossing schedules (:class:`Schedule`; epochs are numbered from 1, flossing happens before the
task step of its epoch):

* ``none``: no flossing;
* ``pre``: ``E_p = 500`` flossing steps at epoch 1 (pre-flossing);
* ``inter``: ``E_i = 500`` flossing steps at every epoch that is a multiple of ``E_f = 100``,
  at most ``N_i = 2`` rounds (inter-flossing);
* ``both``: pre- and inter-flossing.

An **ensemble** is a list of :class:`Member` (network seed, data seed, task, schedule), trained as
one batched program: parameters of shape (M, ...), per-member Adam states, per-member per-tensor
clipping, per-member flossing (a member is flossed only in the steps its schedule asks for), and
per-member divergence detection (a member whose loss or gradient becomes non-finite is marked,
frozen and reported; the others go on). A member trained in an ensemble follows the same
trajectory as when trained alone (tested). Use :func:`grid` to build seeds x schedules x tasks.
Members whose flossing before the first task step is one and the same computation (the same
seed, steps, target, flossed count and initial parameters; :func:`first_flossing_twins`) are flossed
once and the result copied: a grid over tasks pre-flosses each (seed, schedule) once, not once per
task (chapter 10: 240 pre-flossed networks computed as 10).

Records per epoch (:class:`TrainResult`): task loss, held-out accuracy, the gradient norm of the
loss with respect to the initial state ``x0`` (before clipping); the exponents by the flossing
protocol every ``exponents_every`` epochs (and at epoch 0); the flossing loss of every flossing
step.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..common import PARAM_NAMES, resolve_device, resolve_dtype
from ..progress import report_progress
from ..lyapunov.estimator import NonFiniteError
from ..optim import BatchedAdam, member_norms
from .flosser import FlossingConfig, Flosser, evaluate_exponents
from .tanh_network import GFNetwork, init_gf_networks
from .tasks import HELD_OUT, TRAIN, Task, TaskBatch, accuracy, bce_loss, sample_batch

__all__ = ["Schedule", "SCHEDULES", "schedule", "Member", "grid", "TrainConfig", "TrainResult",
           "train", "task_loss", "first_flossing_twins"]


@dataclass(frozen=True)
class Schedule:
    """When to floss. ``pre_steps`` = E_p; ``inter_steps`` = E_i every ``inter_every`` = E_f epochs,
    at most ``inter_rounds`` = N_i times."""

    name: str
    pre_steps: int = 0
    inter_steps: int = 0
    inter_every: int = 100
    inter_rounds: int = 0

    def __post_init__(self) -> None:
        for f in ("pre_steps", "inter_steps", "inter_every", "inter_rounds"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"Schedule.{f} must be a non-negative int, got {v!r}")
        if self.inter_every < 1:
            raise ValueError(f"Schedule.inter_every must be >= 1, got {self.inter_every}")

    def floss_steps(self, epoch: int) -> int:
        """Flossing steps before the task step of ``epoch`` (1-based)."""
        n = self.pre_steps if epoch == 1 else 0
        if self.inter_steps and epoch % self.inter_every == 0 and epoch // self.inter_every <= self.inter_rounds:
            n += self.inter_steps
        return n

    @property
    def total_steps(self) -> int:
        return self.pre_steps + self.inter_steps * self.inter_rounds


def schedule(name: str, pre_steps: int = 500, inter_steps: int = 500, inter_every: int = 100,
             inter_rounds: int = 2) -> Schedule:
    """One of ``none``, ``pre``, ``inter``, ``both`` with the given sizes (defaults: GF)."""
    table = {
        "none": Schedule("none"),
        "pre": Schedule("pre", pre_steps=pre_steps),
        "inter": Schedule("inter", inter_steps=inter_steps, inter_every=inter_every, inter_rounds=inter_rounds),
        "both": Schedule("both", pre_steps, inter_steps, inter_every, inter_rounds),
    }
    if name not in table:
        raise ValueError(f"unknown schedule {name!r}; use one of {list(table)}")
    return table[name]


#: every schedule by name, with GF's default sizes.
SCHEDULES = {n: schedule(n) for n in ("none", "pre", "inter", "both")}


@dataclass(frozen=True)
class Member:
    """One network of an ensemble: its seed (initialization, flossing draws), its data seed
    (task batches), its task and its flossing schedule; optionally its own flossing target
    lambda* and number of flossed exponents (default: those of the :class:`~floss_utils.flossing.flosser.FlossingConfig`),
    and its own learning rate of the task training (default ``TrainConfig.lr``; a learning-rate grid
    runs as one ensemble)."""

    net_seed: int
    data_seed: int
    task: Task
    schedule: Schedule
    target: Optional[float] = None
    n_floss: Optional[int] = None
    lr: Optional[float] = None

    def __post_init__(self) -> None:
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not (math.isfinite(self.lr) and self.lr > 0)):
            raise ValueError(f"Member.lr must be a positive finite number or None, got {self.lr!r}")
        if self.n_floss is not None and (isinstance(self.n_floss, bool) or not isinstance(self.n_floss, int)
                                         or self.n_floss < 1):
            raise ValueError(f"Member.n_floss must be a positive int or None, got {self.n_floss!r}")
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError(f"Member.target must be a finite number or None, got {self.target!r}")


def grid(seeds: Sequence[int], schedules: Sequence[Schedule], tasks: Sequence[Task]) -> list[Member]:
    """Every (seed, schedule, task) combination; the data seed is the network seed, so the
    conditions of one seed see the same task batches (common random numbers)."""
    return [Member(s, s, t, sch) for t, sch, s in itertools.product(tasks, schedules, seeds)]


@dataclass(frozen=True)
class TrainConfig:
    """Sizes and hyper-parameters (defaults: GF's public protocol)."""

    epochs: int = 3001
    batch_size: int = 16
    seq_len: int = 300
    lr: float = 1e-3
    clip: float = 0.03
    n_units: int = 80
    gain: float = 1.0
    orthogonal: bool = False
    flossing: FlossingConfig = field(default_factory=FlossingConfig)
    success_threshold: float = 0.95
    eval_every: int = 1
    exponents_every: int = 0
    stop_when_done: bool = False
    dtype: str = "float64"
    device: str = "cpu"

    def __post_init__(self) -> None:
        for f in ("epochs", "batch_size", "seq_len", "n_units", "eval_every"):
            if getattr(self, f) < 1:
                raise ValueError(f"TrainConfig.{f} must be >= 1, got {getattr(self, f)}")
        if self.exponents_every < 0:
            raise ValueError(f"TrainConfig.exponents_every must be >= 0, got {self.exponents_every}")
        if not 0 < self.success_threshold <= 1:
            raise ValueError(f"TrainConfig.success_threshold must lie in (0, 1], got {self.success_threshold}")
        if not (self.lr > 0 and self.clip > 0):
            raise ValueError(f"TrainConfig.lr and clip must be > 0, got {self.lr}, {self.clip}")


@dataclass
class TrainResult:
    """Histories of an ensemble run (M members, E epochs run).

    Attributes:
        members: the members, in ensemble order.
        epochs: (E,) epoch numbers 1..E.
        loss: (E, M) training loss (before the step).
        accuracy: (E, M) held-out accuracy after the step (NaN where not evaluated).
        grad_norm_x0: (E, M) ``||dL/dx0||`` before clipping.
        exponent_epochs: (R,) epochs of the exponent records (0 = at initialization).
        exponents: (R, M, k) exponents by the flossing protocol (no gradient).
        floss_epochs: (S,) epoch of each flossing step; floss_loss: (S, M) (NaN: not flossed).
        success_epoch: (M,) first epoch with held-out accuracy >= threshold (-1: never).
        diverged_epoch: (M,) epoch at which a member went non-finite (-1: never).
        network: the trained ensemble.
    """

    members: list[Member]
    epochs: Tensor
    loss: Tensor
    accuracy: Tensor
    grad_norm_x0: Tensor
    exponent_epochs: Tensor
    exponents: Tensor
    floss_epochs: Tensor
    floss_loss: Tensor
    success_epoch: Tensor
    diverged_epoch: Tensor
    network: GFNetwork

    @property
    def success(self) -> Tensor:
        """(M,) bool."""
        return self.success_epoch >= 0

    def frame(self):
        """Tidy per-epoch table (pandas): member, seed, schedule, task, epoch, loss, accuracy, grad_norm_x0."""
        import pandas as pd

        E, M = self.loss.shape
        rows = {
            "member": [m for _ in range(E) for m in range(M)],
            "seed": [mb.net_seed for _ in range(E) for mb in self.members],
            "schedule": [mb.schedule.name for _ in range(E) for mb in self.members],
            "task": [mb.task.name for _ in range(E) for mb in self.members],
            "delay": [mb.task.delay for _ in range(E) for mb in self.members],
            "order": [mb.task.order for _ in range(E) for mb in self.members],
            "epoch": self.epochs.repeat_interleave(M).tolist(),
            "loss": self.loss.flatten().tolist(),
            "accuracy": self.accuracy.flatten().tolist(),
            "grad_norm_x0": self.grad_norm_x0.flatten().tolist(),
        }
        return pd.DataFrame(rows)


def task_loss(net: GFNetwork, batch: TaskBatch) -> Tensor:
    """Binary cross-entropy with logits, averaged over each member's scored steps and batch: (M,)."""
    return bce_loss(net.logits(batch.inputs), batch)


def _safe_exponents(net: GFNetwork, seeds: list[int], alive: Tensor, fc: FlossingConfig, key: int) -> Tensor:
    """Exponents (M, k) by the flossing protocol of the alive members with finite parameters;
    NaN rows for the others (and for any member whose estimate fails on its own)."""
    M = net.n_members
    ok = alive.clone()
    for t in net.tensors():
        ok &= torch.isfinite(t.detach().reshape(M, -1)).all(-1)
    out = torch.full((M, fc.k), float("nan"), dtype=net.dtype, device=net.device)
    idx = torch.nonzero(ok).flatten().tolist()
    groups = [idx]
    while groups:
        g = groups.pop()
        if not g:
            continue
        try:
            out[g] = evaluate_exponents(net.select(g), [seeds[m] for m in g], steps=fc.steps, k=fc.k,
                                        key=key, reorth=fc.reorth, dtype=fc.dtype).to(net.dtype)
        except NonFiniteError:
            if len(g) > 1:  # rare: locate the failing member(s) by bisection
                groups += [g[: len(g) // 2], g[len(g) // 2:]]
    return out


def first_flossing_twins(members: Sequence[Member], net: GFNetwork, flosser: Flosser) -> list[tuple[int, list[int]]]:
    """Groups of members whose flossing at epoch 1 is one and the same computation: the same
    network seed (flossing inputs and basis), number of steps at epoch 1, target and number of
    flossed exponents, and identical parameters (checked, not assumed). Before the first task step
    nothing depends on the task, the data or the learning rate, so a seeds x schedules x tasks grid
    pre-flosses each (seed, schedule) once instead of once per task. Returns
    ``[(representative, [twins...]), ...]`` for the groups of two or more; ``[]`` when there are none.
    """
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        steps = m.schedule.floss_steps(1)
        if steps > 0:
            key = (m.net_seed, steps, float(flosser.targets[i]),
                   None if flosser.n_floss is None else int(flosser.n_floss[i]))
            groups.setdefault(key, []).append(i)
    tensors = net.tensors(PARAM_NAMES)
    twins = []
    for idx in groups.values():
        rep, same = idx[0], []
        for i in idx[1:]:
            if all(torch.equal(t[i], t[rep]) for t in tensors):
                same.append(i)
        if same:
            twins.append((rep, same))
    return twins


def _copy_to_twins(values: Tensor, twins: list[tuple[int, list[int]]]) -> Tensor:
    """``values`` (M, ...) with each twin's entry replaced by its representative's."""
    out = values.clone()
    for rep, dups in twins:
        out[dups] = values[rep]
    return out


def train(members: Sequence[Member], config: TrainConfig = TrainConfig(),
          network: Optional[GFNetwork] = None) -> TrainResult:
    """Train an ensemble (see the module docstring).

    Args:
        members: one :class:`Member` per network.
        config: the protocol.
        network: optional initial ensemble (default :func:`~floss_utils.flossing.tanh_network.init_gf_networks` from the members'
            seeds); it is updated in place.
    """
    members = list(members)
    M = len(members)
    if M == 0:
        raise ValueError("members must contain at least one Member")
    cfg = config
    dtype, device = resolve_dtype(cfg.dtype), resolve_device(cfg.device)
    tasks = [m.task for m in members]
    for m in members:
        if m.task.first_scored >= cfg.seq_len:
            raise ValueError(f"task {m.task.name} has no scored step within seq_len = {cfg.seq_len}")
    net = network if network is not None else init_gf_networks(
        [m.net_seed for m in members], cfg.n_units, cfg.batch_size, gain=cfg.gain,
        orthogonal=cfg.orthogonal, dtype=dtype, device=device)
    if net.n_members != M or net.batch_size != cfg.batch_size:
        raise ValueError(f"network has M = {net.n_members}, B = {net.batch_size}; expected {M}, {cfg.batch_size}")
    net.requires_grad_(True)
    params = net.tensors(PARAM_NAMES)
    lr = cfg.lr if all(m.lr is None for m in members) else torch.tensor(
        [cfg.lr if m.lr is None else float(m.lr) for m in members], dtype=torch.float64, device=device)
    opt = BatchedAdam(params, lr=lr, clip=cfg.clip)
    fc = cfg.flossing
    for m in members:
        if m.n_floss is not None and m.n_floss > fc.k:
            raise ValueError(f"member {m}: n_floss = {m.n_floss} exceeds the basis size k = {fc.k} "
                             "of TrainConfig.flossing")
    flosser = Flosser(net, fc, [m.net_seed for m in members], on_nonfinite="mark",
                      targets=[fc.target if m.target is None else m.target for m in members],
                      n_floss=[fc.k if m.n_floss is None else m.n_floss for m in members])
    seeds = [m.net_seed for m in members]
    data_seeds = [m.data_seed for m in members]
    alive = torch.ones(M, dtype=torch.bool, device=device)
    diverged = torch.full((M,), -1, dtype=torch.long, device=device)
    success = torch.full((M,), -1, dtype=torch.long, device=device)
    nan = torch.full((M,), float("nan"), dtype=dtype, device=device)
    losses, accs, gnorms = [], [], []
    exp_epochs, exps = [], []
    fl_epochs, fl_losses = [], []

    def record_exponents(epoch: int) -> None:
        exp_epochs.append(epoch)
        exps.append(_safe_exponents(net, seeds, alive, cfg.flossing, key=epoch))

    if cfg.exponents_every:
        record_exponents(0)
    twins = first_flossing_twins(members, net, flosser)
    epoch = 0
    later = sorted({e for m in members for e in range(m.schedule.inter_every, cfg.epochs + 1, m.schedule.inter_every)
                    if e > 1 and m.schedule.floss_steps(e)})  # inter-flossing epochs (what the progress reports say)
    uneven = f"{len(later)} later epochs also floss (from epoch {later[0]}), costing more" if later else ""
    for epoch in range(1, cfg.epochs + 1):
        # ---- flossing phase (members whose schedule asks for it, alive ones only; at epoch 1 one
        # member of each group of twins is flossed and its state copied to the others)
        n_floss = [m.schedule.floss_steps(epoch) for m in members]
        if max(n_floss) > 0:
            flossed = alive.cpu().clone()
            if epoch == 1 and twins:
                flossed[[d for _, dups in twins for d in dups]] = False
            if epoch == 1:  # the pre-flossing, a loop of its own for progress (the training is not in it: partial)
                pre = dict(unit="flossing steps before training", partial=True,
                           detail=f"{int((torch.tensor([n > 0 for n in n_floss]) & flossed).sum())} of {M} members "
                                  f"flossed; the {cfg.epochs} training epochs are not counted")
                report_progress("pre-flossing", 0, max(n_floss), **pre)
            for j in range(max(n_floss)):
                act = torch.tensor([n > j for n in n_floss]) & flossed
                out = flosser.step(act)
                fl_epochs.append(epoch)
                fl_losses.append(_copy_to_twins(out.loss, twins) if epoch == 1 and twins else out.loss)
                if epoch == 1:
                    report_progress("pre-flossing", j + 1, max(n_floss), **pre)
            if epoch == 1:
                for rep, dups in twins:
                    flosser.copy_member(rep, dups)
            newly = flosser.bad & alive
            diverged = torch.where(newly, torch.full_like(diverged, epoch), diverged)
            alive = alive & ~flosser.bad
        # ---- task step
        batch = sample_batch(tasks, data_seeds, TRAIN, epoch, cfg.seq_len, cfg.batch_size,
                             dtype=dtype, device=device)
        loss = task_loss(net, batch)
        grads = torch.autograd.grad(loss.sum(), params)
        gnorms.append(member_norms(grads[PARAM_NAMES.index("x0")]).detach())
        losses.append(loss.detach())
        updated = opt.step(grads, alive & torch.isfinite(loss))
        newly = alive & ~updated
        diverged = torch.where(newly, torch.full_like(diverged, epoch), diverged)
        alive = alive & updated
        # ---- held-out accuracy
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            held = sample_batch(tasks, data_seeds, HELD_OUT, epoch, cfg.seq_len, cfg.batch_size,
                                dtype=dtype, device=device)
            with torch.no_grad():
                acc = accuracy(net.logits(held.inputs), held)
            acc = torch.where(alive, acc, nan)
            hit = (success < 0) & (acc >= cfg.success_threshold)
            success = torch.where(hit, torch.full_like(success, epoch), success)
            accs.append(acc)
            if cfg.stop_when_done and bool(((success >= 0) | ~alive).all()):
                break
        else:
            accs.append(nan)
        if cfg.exponents_every and epoch % cfg.exponents_every == 0:
            record_exponents(epoch)
        # progress in the epochs after the first, whose pre-flossing (up to pre_steps flossing steps) costs far more
        # than a task epoch: a run stopped later is extrapolated from like epochs (inter-flossing epochs still cost more)
        if cfg.epochs > 1:
            report_progress("train", epoch - 1, cfg.epochs - 1, unit="epochs after the first", detail=uneven)
    if cfg.epochs > 1:  # the loop is over (also when it stopped early)
        report_progress("train", cfg.epochs - 1, cfg.epochs - 1, unit="epochs after the first")
    k = cfg.flossing.k
    return TrainResult(
        members=members,
        epochs=torch.arange(1, epoch + 1),
        loss=torch.stack(losses).cpu(),
        accuracy=torch.stack(accs).cpu(),
        grad_norm_x0=torch.stack(gnorms).cpu(),
        exponent_epochs=torch.tensor(exp_epochs, dtype=torch.long),
        exponents=torch.stack(exps).cpu() if exps else torch.zeros(0, M, k, dtype=dtype),
        floss_epochs=torch.tensor(fl_epochs, dtype=torch.long),
        floss_loss=torch.stack(fl_losses).cpu() if fl_losses else torch.zeros(0, M, dtype=dtype),
        success_epoch=success.cpu(),
        diverged_epoch=diverged.cpu(),
        network=net,
    )
