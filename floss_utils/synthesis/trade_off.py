"""Both sides of the trade-off: networks flossed to several targets, then trained on a memory task
(chapter 12, §12.6; *ours*).

Flossing to ``lambda* = 0`` keeps gradients alive over long horizons (GF) and makes the loss sharp
(the curse of memory, §12.3); a negative target is flatter but keeps a memory of only about
``1/|lambda*|`` steps. :func:`memory_trade_off` measures both sides on the same networks: each
network is flossed to its target before training (GF's "pre" schedule: ``pre_steps`` flossing
steps, then task training from that state; no flossing without a target), and for each one it
records the exponents (the first ``k``, those flossed) and the self-teacher sharpness as training starts and whether, and when,
training on the task succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..common import sign_test_greater, wilson_interval
from ..flossing.tanh_network import GFNetwork, init_gf_networks
from ..flossing.tasks import Task
from .curvature import sharpness
from .self_teacher import SHARP_BITS, gf_self_teacher_loss, task_bits

__all__ = ["TradeOff", "PairedSuccess", "memory_trade_off"]


@dataclass(frozen=True)
class PairedSuccess:
    """Condition ``a`` against ``b`` on the same seeds (see :meth:`TradeOff.fewer_successes`).

    Attributes:
        n_for: seeds where ``a`` fails and ``b`` succeeds.
        n_against: seeds where ``a`` succeeds and ``b`` fails.
        p: exact one-sided sign-test p-value for "``a`` succeeds less often than ``b``" over the
            seeds where they differ (:func:`~floss_utils.common.sign_test_greater`; 1 when none do).
    """

    n_for: int
    n_against: int
    p: float


@dataclass
class TradeOff:
    """Outcome of :func:`memory_trade_off`; conditions ``C`` (``None``: unflossed, then the
    targets), seeds ``S``.

    Attributes:
        conditions: ``C`` targets, ``None`` for the unflossed networks.
        seeds: ``S`` network (and data) seeds.
        lambda1: ``(C, S)`` the largest exponent as training starts (evaluation bits, key 1).
        mean_flossed: ``(C, S)`` the mean of the first ``k`` exponents (the flossed ones) then.
        sharpness: ``(C, S)`` the self-teacher sharpness w.r.t. ``J`` as training starts.
        success_epoch: ``(C, S)`` first epoch with held-out accuracy >= the threshold (-1: never).
        final_accuracy: ``(C, S)`` the last held-out accuracy (NaN where the member diverged).
        diverged: ``(C, S)`` bool: went non-finite while flossing or training.
        epochs: training epochs run.
        training: the trainer's record (members in condition-major order: ``c * S + s``).
    """

    conditions: list[Optional[float]]
    seeds: list[int]
    lambda1: Tensor
    mean_flossed: Tensor
    sharpness: Tensor
    success_epoch: Tensor
    final_accuracy: Tensor
    diverged: Tensor
    epochs: int
    training: object = None

    @property
    def success(self) -> Tensor:
        """``(C, S)`` bool."""
        return self.success_epoch >= 0

    def label(self, c: Optional[float]) -> str:
        return "unflossed" if c is None else f"{c:g}"

    def _row(self, c: Optional[float]) -> int:
        if c not in self.conditions:
            raise ValueError(f"no condition {c!r}; the conditions are {self.conditions}")
        return self.conditions.index(c)

    def successes(self) -> dict[Optional[float], int]:
        """Seeds that learn the task, per condition."""
        return {c: int(self.success[i].sum()) for i, c in enumerate(self.conditions)}

    def median_sharpness(self) -> dict[Optional[float], float]:
        """Median sharpness as training starts, per condition (over the members whose flossing did
        not go non-finite: theirs is NaN)."""
        return {c: float(self.sharpness[i].nanmedian()) for i, c in enumerate(self.conditions)}

    def fewer_successes(self, a: Optional[float], b: Optional[float]) -> PairedSuccess:
        """Does condition ``a`` succeed less often than ``b``? Paired by seed: the seeds where only
        ``b`` succeeds against those where only ``a`` does, and the one-sided exact sign test
        (seeds where both or neither succeed carry no information on the difference)."""
        sa, sb = self.success[self._row(a)], self.success[self._row(b)]
        n_for, n_against = int((~sa & sb).sum()), int((sa & ~sb).sum())
        return PairedSuccess(n_for, n_against, sign_test_greater(n_for, n_against))

    def recipe(self) -> Optional[float]:
        """The target these runs recommend, by the rule chapter 12 states before its runs: among
        the negative targets that learned the task at least once and at least as often as target
        0, the one with the smallest (finite) median sharpness as training starts; ``None`` when
        no negative target did (then the runs support flossing to 0 where the task needs the
        memory). Ties in sharpness: the first in ``conditions``. Needs target 0 among the
        conditions."""
        self._row(0.0)
        k, sharp = self.successes(), self.median_sharpness()
        kept = [c for c in self.conditions
                if c is not None and c < 0 and k[c] > 0 and k[c] >= k[0.0] and np.isfinite(sharp[c])]
        return min(kept, key=lambda c: sharp[c]) if kept else None

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """One row per condition: successes of ``S``, the rate's Wilson interval at ``level``, the
        median epochs to success (of those that succeed), the medians of ``lambda_1`` and of the
        sharpness as training starts (over the members that did not diverge while flossing), and
        the memory time ``1/|lambda*|``."""
        k = self.success.sum(1).numpy()
        n = len(self.seeds)
        lo, hi = wilson_interval(k, n, level)
        ep = [float(np.median(e[e >= 0])) if (e >= 0).any() else float("nan") for e in self.success_epoch.numpy()]
        return pd.DataFrame({"target": [self.label(c) for c in self.conditions],
                             "memory 1/|target|": [float("nan") if c is None or c == 0 else 1 / abs(c)
                                                   for c in self.conditions],
                             "successes": [f"{int(x)}/{n}" for x in k], "rate": k / n, "rate lo": lo, "rate hi": hi,
                             "median epochs to success": ep,
                             "median lambda_1": self.lambda1.nanmedian(1).values.numpy(),
                             "median mean flossed exponent": self.mean_flossed.nanmedian(1).values.numpy(),
                             "median sharpness": self.sharpness.nanmedian(1).values.numpy()})


def memory_trade_off(seeds: Sequence[int], targets: Sequence[float], task: Task, *, config, pre_steps: int,
                     eval_steps: int, sharp_seq_len: int, burn_in: int, lanczos_iters: int) -> TradeOff:
    """Floss networks to each target, measure them, train them on ``task``.

    Conditions: unflossed, then one per target; every condition uses the same ``seeds`` (network
    and data seeds: paired by seed, common random numbers). All ``(1 + len(targets)) * S``
    networks form one ensemble.

    Args:
        seeds: ``S`` seeds.
        targets: the flossing targets ``lambda*`` (per step).
        task: the training task (e.g. :func:`~floss_utils.flossing.tasks.copy_task`).
        config: the :class:`~floss_utils.flossing.trainer.TrainConfig` of training (network size,
            epochs, batch, learning rate, clipping; its ``flossing`` is used for the flossing).
        pre_steps: flossing steps before training (GF's ``E_p``).
        eval_steps: steps of the exponent evaluation as training starts.
        sharp_seq_len, burn_in, lanczos_iters: the self-teacher sharpness as training starts
            (:func:`~floss_utils.synthesis.self_teacher.gf_self_teacher_loss`).
    """
    from ..common import resolve_device, resolve_dtype
    from ..flossing.flosser import Flosser, evaluate_exponents
    from ..flossing.trainer import Member, schedule, train

    seeds = [int(s) for s in seeds]
    conds: list[Optional[float]] = [None] + [float(t) for t in targets]
    if not seeds or not targets:
        raise ValueError("need at least one seed and one target")
    if isinstance(pre_steps, bool) or not isinstance(pre_steps, int) or pre_steps < 1:
        raise ValueError(f"pre_steps must be an int >= 1, got {pre_steps!r}")
    C, S = len(conds), len(seeds)
    ms = [s for _ in conds for s in seeds]
    target_of = [c for c in conds for _ in seeds]
    cfg = config
    net = init_gf_networks(ms, cfg.n_units, cfg.batch_size, gain=cfg.gain, orthogonal=cfg.orthogonal,
                           dtype=resolve_dtype(cfg.dtype), device=resolve_device(cfg.device))
    # the "pre" schedule of the trainer, run here so that the flossed state can be measured: the same Flosser,
    # arguments and steps as train() uses at epoch 1 (tested equal to train() with schedule "pre")
    flosser = Flosser(net, cfg.flossing, ms, on_nonfinite="mark",
                      targets=[0.0 if t is None else t for t in target_of])
    active = torch.tensor([t is not None for t in target_of])
    for _ in range(pre_steps):
        flosser.step(active)  # as train() does: members marked bad are masked on the device
    bad = flosser.bad.cpu()
    start = net.clone()
    ok = torch.nonzero(~bad).reshape(-1).tolist()
    lam1 = torch.full((C * S,), float("nan"), dtype=torch.float64)
    mean_k = torch.full((C * S,), float("nan"), dtype=torch.float64)
    sharp = torch.full((C * S,), float("nan"), dtype=torch.float64)
    if ok:
        live = start.select(ok)
        lam = evaluate_exponents(live, [ms[i] for i in ok], steps=eval_steps, k=cfg.flossing.k, key=1).cpu().double()
        lam1[ok], mean_k[ok] = lam[:, 0], lam.mean(1)
        bits = task_bits([ms[i] for i in ok], SHARP_BITS, 0, sharp_seq_len, cfg.batch_size).to(live.J)
        f, J0 = gf_self_teacher_loss(live, ("J",), bits, burn_in)
        sharp[ok] = sharpness(f, J0, iters=lanczos_iters).cpu().double()
    result = train([Member(s, s, task, schedule("none")) for s in ms], cfg, network=net)
    diverged = bad | (result.diverged_epoch >= 0)
    success = torch.where(diverged, torch.full_like(result.success_epoch, -1), result.success_epoch)
    acc = result.accuracy
    final = torch.stack([acc[~torch.isnan(acc[:, m]), m][-1] if bool((~torch.isnan(acc[:, m])).any())
                         else torch.tensor(float("nan"), dtype=acc.dtype) for m in range(C * S)])
    final = torch.where(diverged, torch.full_like(final, float("nan")), final)
    shape = (C, S)
    return TradeOff(conditions=conds, seeds=seeds, lambda1=lam1.reshape(shape), mean_flossed=mean_k.reshape(shape), sharpness=sharp.reshape(shape),
                    success_epoch=success.reshape(shape), final_accuracy=final.double().reshape(shape),
                    diverged=diverged.reshape(shape), epochs=int(result.epochs[-1]), training=result)
