"""Binary memory tasks of GF: delayed copy and hierarchical XOR, batched over ensemble members.

Inputs are bits ``s_t`` in {0, 1} on one channel, ``t = 0 .. T-1`` (all presented to the
network). With delay ``d`` and order ``h`` the target is the parity of ``2^h`` past inputs::

    y_t = parity(s_{t-d}, s_{t-2d}, ..., s_{t-2^h d})

* order 0 is the **delayed copy** ``y_t = s_{t-d}``;
* order 1 is **XOR** of lags ``d`` and ``2d``; order h is the hierarchical XOR of GF.

The largest lag is ``L = 2^h d``; the first step with a defined target is ``t = L`` (0-based),
whose target depends on ``s_0``, the first presented input. The public GF code generates
``T + d`` bits, drops the first ``d``, and scores from step ``2d`` (1-based) on: that step's
target depends on a dropped input (chance-level there, an accuracy ceiling of 0.998 at T = 300,
d = 10). Here the first scored step is exactly the first scorable one (tested).

Every member m of an ensemble has its own task (delay, order) and its own data seed; bits for
(data seed, epoch, purpose) come from an independent generator, so a member sees the same data
whether it is trained alone or in an ensemble, and members sharing a data seed see the same bits
(common random numbers across conditions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..common import seeded_generator

__all__ = ["Task", "copy_task", "xor_task", "tasks_with_lag", "targets", "score_mask", "sample_bits", "TaskBatch",
           "sample_batch", "accuracy", "bce_loss", "TRAIN", "HELD_OUT", "FLOSS"]

#: generator purposes (second key of seeded_generator; purpose 0 is network initialization)
TRAIN, HELD_OUT, FLOSS = 1, 2, 3


@dataclass(frozen=True)
class Task:
    """Parity of the inputs at lags ``d, 2d, ..., 2^order d`` (order 0: delayed copy).

    Attributes:
        delay: d >= 1 (steps).
        order: h >= 0.
    """

    delay: int
    order: int = 1

    def __post_init__(self) -> None:
        for name in ("delay", "order"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"Task.{name} must be an int, got {type(v).__name__} {v!r}")
        if self.delay < 1:
            raise ValueError(f"Task.delay must be >= 1, got {self.delay}")
        if self.order < 0:
            raise ValueError(f"Task.order must be >= 0, got {self.order}")

    @property
    def lags(self) -> tuple[int, ...]:
        """The lags whose inputs the target depends on, ``d, 2d, ..., 2^order d``."""
        return tuple(self.delay * j for j in range(1, 2 ** self.order + 1))

    @property
    def first_scored(self) -> int:
        """First 0-based step whose target depends on presented inputs only (the largest lag)."""
        return self.lags[-1]

    @property
    def name(self) -> str:
        return f"copy(d={self.delay})" if self.order == 0 else f"xor{self.order}(d={self.delay})"


def copy_task(delay: int) -> Task:
    """Delayed copy ``y_t = s_{t-d}``."""
    return Task(delay, 0)


def xor_task(delay: int, order: int = 1) -> Task:
    """Hierarchical XOR of order h (h = 1: XOR of lags d and 2d)."""
    return Task(delay, order)


def tasks_with_lag(orders: Sequence[int], lag: int) -> list[Task]:
    """Tasks of the given orders h sharing the largest lag ``L = 2^h d`` (so ``d = L / 2^h``):
    with L fixed, the order alone sets the temporal complexity (how many past bits the target
    combines), not how far back the network must remember. Raises if ``2^h`` does not divide L."""
    out = []
    for h in orders:
        if isinstance(h, bool) or not isinstance(h, int) or h < 0:
            raise ValueError(f"orders must be non-negative ints, got {h!r}")
        if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1 or lag % (2 ** h):
            raise ValueError(f"the largest lag {lag!r} must be a positive multiple of 2^h = {2 ** h} "
                             f"for order h = {h} (delay d = lag / 2^h must be a whole number of steps)")
        out.append(Task(lag // 2 ** h, h))
    return out


def _as_tasks(tasks: Task | Sequence[Task], n: int) -> list[Task]:
    if isinstance(tasks, Task):
        return [tasks] * n
    tasks = list(tasks)
    if len(tasks) != n:
        raise ValueError(f"need one task per member: got {len(tasks)} tasks for {n} members")
    return tasks


def targets(s: Tensor, tasks: Task | Sequence[Task]) -> Tensor:
    """Targets for inputs ``s`` (T, M, B) in {0, 1}: (T, M, B), 0 where not yet defined.

    Member m uses ``tasks[m]`` (or one task for all).
    """
    if s.ndim != 3:
        raise ValueError(f"inputs must have shape (T, M, B), got {tuple(s.shape)}")
    T, M, _ = s.shape
    bits = s.to(torch.long)
    out = torch.zeros_like(bits)
    for m, task in enumerate(_as_tasks(tasks, M)):
        L = task.first_scored
        if L >= T:
            continue
        acc = torch.zeros_like(bits[L:, m])
        for lag in task.lags:
            acc = acc ^ bits[L - lag : T - lag, m]
        out[L:, m] = acc
    return out.to(s.dtype)


def score_mask(T: int, tasks: Task | Sequence[Task], n_members: int | None = None,
               device: str | torch.device = "cpu") -> Tensor:
    """(T, M) bool: the steps scored for each member (``t >= first_scored``)."""
    n = n_members if n_members is not None else (1 if isinstance(tasks, Task) else len(tasks))
    tasks = _as_tasks(tasks, n)
    first = torch.tensor([t.first_scored for t in tasks], device=device)
    mask = torch.arange(T, device=device).unsqueeze(1) >= first
    if not bool(mask.any(0).all()):
        bad = [t.name for t in tasks if t.first_scored >= T]
        raise ValueError(f"sequence length T = {T} leaves no scored step for task(s) {bad}: need T > 2^order * delay")
    return mask


def sample_bits(data_seeds: Sequence[int], purpose: int, epoch: int, step: int, T: int, B: int,
                *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Tensor:
    """Input bits (T, M, B) for member data seeds ``data_seeds`` (length M).

    The bits of a member depend only on (its data seed, purpose, epoch, step); members sharing a
    data seed get identical bits (drawn once).
    """
    cache: dict[int, Tensor] = {}
    cols = []
    for seed in data_seeds:
        if seed not in cache:
            g = seeded_generator(int(seed), purpose, epoch, step)
            cache[seed] = torch.randint(0, 2, (T, B), generator=g)
        cols.append(cache[seed])
    return torch.stack(cols, dim=1).to(device=device, dtype=dtype)


@dataclass
class TaskBatch:
    """Inputs (T, M, B), targets (T, M, B) and the scored-step mask (T, M)."""

    inputs: Tensor
    targets: Tensor
    mask: Tensor


def sample_batch(tasks: Sequence[Task], data_seeds: Sequence[int], purpose: int, epoch: int, T: int,
                 B: int, *, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> TaskBatch:
    """A fresh batch for every member: bits from :func:`sample_bits`, targets, scored mask."""
    s = sample_bits(data_seeds, purpose, epoch, 0, T, B, dtype=dtype, device=device)
    return TaskBatch(s, targets(s, tasks), score_mask(T, tasks, len(tasks), device=device))


def accuracy(logits: Tensor, batch: TaskBatch) -> Tensor:
    """Fraction of scored (step, sequence) pairs where ``logit >= 0`` matches the target bit: (M,)."""
    correct = ((logits >= 0).to(batch.targets.dtype) == batch.targets) & batch.mask.unsqueeze(-1)
    n = batch.mask.sum(0) * logits.shape[-1]
    return correct.sum(dim=(0, 2)).to(logits.dtype) / n.to(logits.dtype)


def bce_loss(logits: Tensor, batch: TaskBatch) -> Tensor:
    """Binary cross-entropy with logits ``(T, M, B)``, averaged over each member's scored steps and
    batch: ``(M,)`` (the task loss of every model trained on these tasks)."""
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none")
    mask = batch.mask.unsqueeze(-1).to(bce.dtype)
    return (bce * mask).sum(dim=(0, 2)) / (mask.sum(dim=(0, 2)) * bce.shape[-1])

