"""Diagonal recurrences trained on a memory task, in each parametrization and normalization
(chapter 12, §12.8; *ours*).

The closed forms of §12.7 say how the sharpness of a diagonal recurrence grows as ``|lambda| -> 1``
for one unit and white noise at the optimum of a self-teacher loss. This module asks the same of
recurrences that *learn* a memory task (GF's delayed copy): the memory they need is set by the
task, not by a flossing target, and what they reach is measured, not assumed::

    h_t = lambda * h_{t-1} + gamma * B s_t,   logit_t = Re(sum_i C_i h_{t,i}) + c,   s_t = 2 x_t - 1

with ``lambda`` in one of the parametrizations of
:func:`floss_utils.curse_of_memory.students.lambda_from_params` (``"polar"``, ``"exp"``,
``"exp_opt"``, as in :func:`~floss_utils.synthesis.diagonal.diagonal_self_teacher_loss`) and
``gamma = sqrt(1 - nu^2)`` (recomputed from ``nu`` at every step and held constant when
differentiating, as in ZO) or 1. :func:`train_diagonal_on_task` trains the recurrence parameters,
``B``, ``C`` and ``c`` with Adam on the binary cross-entropy of the scored steps, from one
initialization shared by every version, and returns the trained state and the sharpness of the task
loss with respect to the magnitude and the angle parameters there (Lanczos on the full Hessian of
a held-out batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..common import PairedComparison, paired_comparison
from ..curse_of_memory.scans import lower_toeplitz
from ..curse_of_memory.students import lambda_from_params, params_from_lambda
from ..flossing.tasks import HELD_OUT, TRAIN, Task, TaskBatch, accuracy, bce_loss, sample_batch
from ..optim import BatchedAdam
from ..progress import report_progress
from .curvature import sharpness
from .diagonal import PARAMETRIZATIONS, DiagonalPopulation

__all__ = ["DiagonalTaskRun", "ChosenRate", "train_diagonal_on_task", "diagonal_task_loss", "learning_rate_grid",
           "choose_learning_rate", "paired_sharpness"]


def _logits(mag: Tensor, ang: Tensor, B: Tensor, C: Tensor, c: Tensor, bits: Tensor, magnitude: str, angle: str,
            normalized: bool) -> Tensor:
    """Logits ``(T, M, batch)`` for input bits ``(T, M, batch)``.

    The input is one scalar per step, so the readout of the recurrence is a convolution of the
    inputs with one real kernel per member, ``k(tau) = Re sum_i C_i gamma_i B_i lambda_i^tau``:
    ``logit_t = sum_{s <= t} k(t - s) s_s + c``, one product with a lower-triangular Toeplitz
    matrix instead of ``T`` sequential steps (exact: the powers are products, nothing is inverted;
    equal to the step-by-step recurrence to round-off, tested)."""
    lam = lambda_from_params(mag, ang, magnitude, angle)  # (M, n)
    nu = lam.abs()
    gamma = torch.sqrt(1 - nu.detach() ** 2) if normalized else torch.ones_like(nu)
    T = bits.shape[0]
    kernel = ((C * gamma * B).unsqueeze(-1) * _powers(lam, T)).sum(-2).real  # (M, T): k(0) .. k(T-1)
    s = (2 * bits - 1).permute(1, 0, 2).to(kernel.dtype)  # (M, T, batch)
    return (lower_toeplitz(kernel) @ s + c[:, None, None]).permute(1, 0, 2)  # row t: k(t), ..., k(0), 0, ..., 0


def _powers(lam: Tensor, T: int) -> Tensor:
    """``lam^0 .. lam^(T-1)`` along a new last axis, by doubling (each power a product of at most
    ``log2 T`` factors; differentiable twice)."""
    out, top = torch.ones_like(lam).unsqueeze(-1), lam  # top = lam^(length of out)
    while out.shape[-1] < T:
        out = torch.cat([out, out * top.unsqueeze(-1)], -1)
        top = top * top
    return out[..., :T]


def diagonal_task_loss(params: dict[str, Tensor], batch: TaskBatch, *, parametrization: str, normalized: bool
                       ) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """The task loss as a function of the recurrence parameters ``theta = (mag, ang)`` ``(M, 2n)``
    (``B``, ``C``, ``c`` fixed at ``params``) and the point ``theta0`` of ``params``: for
    :func:`~floss_utils.synthesis.curvature.sharpness`."""
    magnitude, angle = PARAMETRIZATIONS[parametrization]
    n = params["mag"].shape[-1]
    theta0 = torch.cat([params["mag"], params["ang"]], -1).detach()

    def loss_fn(theta: Tensor) -> Tensor:
        return bce_loss(_logits(theta[:, :n], theta[:, n:], params["B"], params["C"], params["c"], batch.inputs,
                            magnitude, angle, normalized), batch)

    return loss_fn, theta0


@dataclass
class DiagonalTaskRun:
    """Outcome of :func:`train_diagonal_on_task` for ``M`` members of ``n`` complex units.

    Attributes:
        params: the trained ``mag``, ``ang`` ``(M, n)``, ``B``, ``C`` ``(M, n)`` complex, ``c`` ``(M,)``.
        nu: ``(M, n)`` the trained ``|lambda|``.
        losses: ``(steps, M)`` training losses.
        accuracy: ``(M,)`` held-out accuracy at the end (NaN for an unstable member: ``|lambda| >= 1``,
            a non-finite loss at the end, or a step whose gradient was not finite).
        validation_accuracy: ``(M,)`` the same on a second held-out batch: for choosing among runs
            (e.g. a learning rate) without reusing the batch that reports ``accuracy`` and the
            sharpness.
        projected_steps: ``(M,)`` steps after which the polar magnitudes were projected back into
            ``[0, nu_max]`` (0 for the exp parametrizations).
        sharpness_magnitude, sharpness_angle: ``(M,)`` top Hessian eigenvalue of the held-out task
            loss w.r.t. the magnitude and the angle parameters at the trained state (NaN where unstable).
    """

    params: dict[str, Tensor]
    nu: Tensor
    losses: Tensor
    accuracy: Tensor
    validation_accuracy: Tensor
    projected_steps: Tensor
    sharpness_magnitude: Tensor
    sharpness_angle: Tensor


def train_diagonal_on_task(pop: DiagonalPopulation, seeds: Sequence[int], task: Task, *, parametrization: str,
                           normalized: bool, steps: int, lr: float | Sequence[float], seq_len: int, batch: int,
                           lanczos_iters: int = 20, nu_max: float = 0.9999) -> DiagonalTaskRun:
    """Train ``pop`` (its ``lambda``, ``B``, ``C`` as initialization) on ``task`` in one version.

    Args:
        pop: the initialization (the same for every version that is compared).
        seeds: ``M`` data seeds (the task batches: every version sees the same ones).
        task: e.g. :func:`~floss_utils.flossing.tasks.copy_task`.
        parametrization: ``"polar"``, ``"exp"`` or ``"exp_opt"``; normalized: ``gamma`` or 1.
        steps, lr: Adam steps (one fresh batch each) and learning rate, one or one per member (a
            learning-rate grid as one ensemble: repeat the population and the seeds).
        seq_len, batch: sequence length and sequences per batch.
        lanczos_iters: of each sharpness (at most ``n``).
        nu_max: in the polar parametrization, ``nu`` is projected back into ``[0, nu_max]`` after
            every Adam step (nothing else keeps a raw modulus inside the unit disc, and
            ``gamma = sqrt(1 - nu^2)`` is undefined beyond it); the exp parametrizations need none.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}")
    M, n = pop.nu.shape
    lrs = torch.as_tensor(lr, dtype=torch.float64).reshape(-1).expand(M) if torch.as_tensor(lr).numel() == 1 \
        else torch.as_tensor(lr, dtype=torch.float64)
    if steps < 1 or lrs.shape != (M,) or not bool((lrs > 0).all()):
        raise ValueError(f"need steps >= 1 and lr > 0 (one, or one per member: {M}), got {steps}, {lr}")
    if len(seeds) != M:
        raise ValueError(f"need one data seed per member ({M}), got {len(seeds)}")
    magnitude, angle = PARAMETRIZATIONS[parametrization]
    mag0, ang0 = params_from_lambda(pop.nu, pop.theta, magnitude, angle)
    # B and C as real (M, n, 2) tensors (Adam's moments are real: g * g of a complex gradient is not |g|^2)
    p = {"mag": mag0.clone(), "ang": ang0.clone(), "B": torch.view_as_real(pop.B).clone(),
         "C": torch.view_as_real(pop.C).clone(), "c": torch.zeros(M, dtype=pop.nu.dtype, device=pop.nu.device)}
    for t in p.values():
        t.requires_grad_(True)
    names = list(p)
    opt = BatchedAdam([p[k] for k in names], lr=lrs.to(pop.nu).contiguous())
    tasks, data = [task] * M, [int(s) for s in seeds]
    losses = []
    never_frozen = torch.ones(M, dtype=torch.bool, device=pop.nu.device)
    projected = torch.zeros(M, dtype=torch.long, device=pop.nu.device)
    # progress: one call's steps; a caller may train several versions one after another, so the loop is
    # reported as partial (an extrapolation from it is a lower bound)
    where = dict(unit="Adam steps", partial=True, detail=f"{M} members, {parametrization}, normalized={normalized}")
    report_progress("train_diagonal_on_task", 0, steps, **where)
    for step in range(steps):
        b = sample_batch(tasks, data, TRAIN, step, seq_len, batch, dtype=pop.nu.dtype, device=pop.nu.device)
        logits = _logits(p["mag"], p["ang"], torch.view_as_complex(p["B"]), torch.view_as_complex(p["C"]), p["c"],
                         b.inputs, magnitude, angle, normalized)
        loss = bce_loss(logits, b)
        grads = torch.autograd.grad(loss.sum(), [p[k] for k in names])
        updated = opt.step(list(grads))
        never_frozen &= updated  # a member with a non-finite gradient is not updated (and would stay so)
        if magnitude == "polar":  # project nu = mag back into [0, nu_max]: nothing else keeps it in the disc
            with torch.no_grad():
                outside = (p["mag"] > nu_max) | (p["mag"] < 0)
                projected += outside.any(-1)
                p["mag"].clamp_(0.0, nu_max)
        losses.append(loss.detach())
        report_progress("train_diagonal_on_task", step + 1, steps, **where)
    losses = torch.stack(losses)
    trained = {k: v.detach() for k, v in p.items()}
    trained["B"], trained["C"] = torch.view_as_complex(trained["B"]), torch.view_as_complex(trained["C"])
    held = sample_batch(tasks, data, HELD_OUT, steps, seq_len, batch, dtype=pop.nu.dtype, device=pop.nu.device)
    val = sample_batch(tasks, data, HELD_OUT, steps + 1, seq_len, batch, dtype=pop.nu.dtype, device=pop.nu.device)
    with torch.no_grad():
        acc, val_acc = (accuracy(_logits(trained["mag"], trained["ang"], trained["B"], trained["C"], trained["c"],
                                         hb.inputs, magnitude, angle, normalized), hb) for hb in (held, val))
    nu = lambda_from_params(trained["mag"], trained["ang"], magnitude, angle).abs()
    # a member whose |lambda| left the unit disc (possible in the polar parametrization) or whose loss went
    # non-finite has no meaningful curvature: NaN, and left out of the batched Lanczos
    stable = (nu < 1).all(-1) & torch.isfinite(losses[-1]) & torch.isfinite(acc) & never_frozen
    s_mag = torch.full((M,), float("nan"), dtype=torch.float64)
    s_ang = s_mag.clone()
    idx = torch.nonzero(stable).reshape(-1)
    if len(idx):
        sub = {k: v[idx] for k, v in trained.items()}
        held_sub = TaskBatch(held.inputs[:, idx], held.targets[:, idx], held.mask[:, idx])
        f, th = diagonal_task_loss(sub, held_sub, parametrization=parametrization, normalized=normalized)
        is_mag = torch.arange(2 * n, device=th.device) < n
        iters = min(lanczos_iters, n)
        s_mag[idx.cpu()] = sharpness(f, th, iters=iters, mask=is_mag).cpu().double()
        s_ang[idx.cpu()] = sharpness(f, th, iters=iters, mask=~is_mag).cpu().double()
    acc = torch.where(stable, acc, torch.full_like(acc, float("nan")))
    val_acc = torch.where(stable, val_acc, torch.full_like(val_acc, float("nan")))
    return DiagonalTaskRun(params=trained, nu=nu.cpu(), losses=losses.cpu(), accuracy=acc.cpu(),
                           validation_accuracy=val_acc.cpu(), projected_steps=projected.cpu(),
                           sharpness_magnitude=s_mag, sharpness_angle=s_ang)


def learning_rate_grid(pop: DiagonalPopulation, seeds: Sequence[int], lrs: Sequence[float]
                       ) -> tuple[DiagonalPopulation, list[int], list[float]]:
    """A learning-rate grid as one ensemble for :func:`train_diagonal_on_task`: the population and
    the data seeds repeated once per rate, rate-major (member ``r * S + s`` is seed ``s`` at rate
    ``lrs[r]``), and the per-member learning rates."""
    L, seeds = len(lrs), [int(s) for s in seeds]
    if L < 1 or len(seeds) != pop.nu.shape[0]:
        raise ValueError(f"need at least one learning rate and one seed per member ({pop.nu.shape[0]}), "
                         f"got {L} rates and {len(seeds)} seeds")
    grid = DiagonalPopulation(*(x.repeat(L, 1) for x in (pop.nu, pop.theta, pop.B, pop.C)))
    return grid, seeds * L, [float(lr) for lr in lrs for _ in seeds]


@dataclass
class ChosenRate:
    """One version's runs at the learning rate :func:`choose_learning_rate` chose (``S`` seeds).

    Attributes:
        lr: the chosen rate (NaN: none had a stable median member).
        accuracy, magnitude, angle, nu_max: ``(S,)`` held-out accuracy, the magnitude and angle
            sharpness and the largest ``|lambda|`` at that rate (all NaN when none was chosen).
        projected: median number of steps whose polar magnitudes were projected back (NaN: none chosen).
        unstable: unstable seeds at that rate (``S`` when none was chosen).
        unstable_grid: unstable members over the whole grid.
        accuracy_by_rate: ``(L,)`` median held-out accuracy at each rate (over the stable seeds).
        magnitude_by_rate, angle_by_rate: ``(L,)`` median magnitude and angle sharpness at each rate
            (over the stable seeds; NaN where none is stable): to compare versions at one rate.
    """

    lr: float
    accuracy: Tensor
    magnitude: Tensor
    angle: Tensor
    nu_max: Tensor
    projected: float
    unstable: int
    unstable_grid: int
    accuracy_by_rate: np.ndarray
    magnitude_by_rate: np.ndarray
    angle_by_rate: np.ndarray


def choose_learning_rate(run: DiagonalTaskRun, lrs: Sequence[float]) -> ChosenRate:
    """Choose the learning rate of a grid run (members laid out by :func:`learning_rate_grid`) on
    the validation batch, which reports nothing else: the rate whose median validation accuracy
    over the seeds is highest, an unstable seed counting as the worst (accuracy -1); no rate when
    every rate's median seed is unstable. Ties: the first rate in ``lrs``. The median of an even
    number of seeds is the lower of the two middle ones (``torch.median``)."""
    L = len(lrs)
    if L < 1 or run.accuracy.numel() % L:
        raise ValueError(f"{run.accuracy.numel()} members do not form a grid of {L} learning rates")
    S = run.accuracy.numel() // L
    val = torch.nan_to_num(run.validation_accuracy.reshape(L, S), nan=-1.0).median(1).values
    by_rate = run.accuracy.reshape(L, S).nanmedian(1).values.numpy()
    mag_by_rate = run.sharpness_magnitude.reshape(L, S).nanmedian(1).values.numpy()
    ang_by_rate = run.sharpness_angle.reshape(L, S).nanmedian(1).values.numpy()
    unstable_grid = int(torch.isnan(run.accuracy).sum())
    if not bool((val >= 0).any()):
        nan_s = torch.full((S,), float("nan"), dtype=torch.float64)
        return ChosenRate(float("nan"), nan_s, nan_s, nan_s, nan_s, float("nan"), S, unstable_grid, by_rate,
                          mag_by_rate, ang_by_rate)
    best = int(val.argmax())
    sl = slice(best * S, (best + 1) * S)
    return ChosenRate(lr=float(lrs[best]), accuracy=run.accuracy[sl], magnitude=run.sharpness_magnitude[sl],
                      angle=run.sharpness_angle[sl], nu_max=run.nu[sl].max(1).values,
                      projected=float(run.projected_steps[sl].double().median()),
                      unstable=int(torch.isnan(run.accuracy[sl]).sum()), unstable_grid=unstable_grid,
                      accuracy_by_rate=by_rate, magnitude_by_rate=mag_by_rate, angle_by_rate=ang_by_rate)


def paired_sharpness(a: Tensor, b: Tensor, *, level: float, seed: int = 0) -> Optional[PairedComparison]:
    """``log a - log b`` paired by seed (:func:`~floss_utils.common.paired_comparison`) over the
    seeds where both are finite and positive (the top eigenvalue of a full Hessian away from an
    optimum can be negative, and a log ratio needs both positive); ``None`` when no seed is left."""
    x, y = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"need values for the same seeds, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return paired_comparison(np.log(x[ok]), np.log(y[ok]), level=level, seed=seed) if ok.any() else None
