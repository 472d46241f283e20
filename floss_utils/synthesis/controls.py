"""Controls that separate the memory from everything else flossing changes (chapter 12, §12.3; *ours*).

Flossing a GF network to ``lambda* = 0`` lengthens its memory, but it also raises the gain of
``J`` and moves ``W_s`` and ``b``. :func:`self_teacher_controls` builds, for ``n`` networks flossed
to 0 and the same ``n`` networks unflossed (paired by seed), three controls and measures them as
the chapter measures the population (exponents, self-teacher sharpness, readout variance):

* **matched gain** - the unflossed network with ``J`` rescaled to the flossed network's gain
  (:func:`~floss_utils.synthesis.self_teacher.with_gain`);
* **J only** - the unflossed network flossed to 0 with ``W_s`` and ``b`` frozen, and its own
  matched-gain control (the unflossed network at the ``J``-only network's gain);
* **matched memory** - the unflossed ``J`` scaled until its ``lambda_1`` equals the flossed
  network's (:func:`~floss_utils.synthesis.self_teacher.with_memory`); a seed whose unflossed
  network reaches that ``lambda_1`` at no scale has no such control.

:func:`control_comparisons` sets them against the flossed and unflossed networks, paired by seed
(log sharpness; :func:`~floss_utils.common.paired_comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..common import PairedComparison, paired_comparison
from ..flossing.tanh_network import GFNetwork
from .curvature import sharpness
from .self_teacher import SHARP_BITS, gain, gf_readout_variance, gf_self_teacher_loss, task_bits, with_gain, with_memory

__all__ = ["SelfTeacherControls", "self_teacher_controls", "control_comparisons", "CONTROLS", "FRESH_KEY"]

#: the labels of the controls, in the order of :attr:`SelfTeacherControls.labels`
CONTROLS = ("matched gain", "J only, flossed to 0", "matched gain (J only)", "matched memory")
#: the input key of the second, independent evaluation of the matched-memory networks' lambda_1 (the match uses key 1)
FRESH_KEY = 2


@dataclass
class SelfTeacherControls:
    """Outcome of :func:`self_teacher_controls`.

    Rows (``R = 3 n + n_reached``): the ``n`` matched-gain networks, the ``n`` J-only networks,
    their ``n`` matched-gain controls, then the matched-memory networks of the seeds that reach the
    flossed ``lambda_1`` (seed order), labelled by :data:`CONTROLS`.

    Attributes:
        seeds: ``n`` seeds, in the order of the flossed and unflossed networks.
        networks: the ``R`` control networks (detached).
        labels: ``R`` labels.
        row_seeds: ``R`` seeds.
        exponents: ``(R, k)`` exponents on the chapter's evaluation bits (key 1).
        sharpness: ``(R,)`` top Hessian eigenvalue of the self-teacher loss w.r.t. ``J``.
        readout_variance: ``(R,)``.
        memory_scale: ``(n,)`` the scale of ``J`` of each matched-memory network, NaN where
            ``lambda_1`` is not reached.
        untouched: whether flossing ``J`` alone left ``W_s``, ``b``, ``w_r``, ``c`` bit for bit.
        fresh_lambda1: ``(n_reached, 2)`` ``lambda_1`` on independent input bits (key
            :data:`FRESH_KEY`) of the flossed network and of its matched-memory control: the match
            is made on the evaluation bits, this says whether it holds off them.
    """

    seeds: list[int]
    networks: GFNetwork
    labels: list[str]
    row_seeds: list[int]
    exponents: Tensor
    sharpness: Tensor
    readout_variance: Tensor
    memory_scale: Tensor
    untouched: bool
    fresh_lambda1: Tensor

    @property
    def reached(self) -> np.ndarray:
        """``(n,)`` bool: the seeds with a matched-memory control."""
        return np.isfinite(self.memory_scale.numpy())

    def rows(self, label: str) -> np.ndarray:
        """Row indices of one control (in seed order)."""
        if label not in CONTROLS:
            raise ValueError(f"unknown control {label!r}; the controls are {CONTROLS}")
        return np.flatnonzero(np.asarray(self.labels) == label)

    def table(self) -> pd.DataFrame:
        """One row per control network: label, seed, ``lambda_1``, gain, sharpness."""
        return pd.DataFrame({"network": self.labels, "seed": self.row_seeds,
                             "lambda_1": self.exponents[:, 0].numpy(), "gain g": gain(self.networks).cpu().numpy(),
                             "sharpness": self.sharpness.numpy()})


def self_teacher_controls(unflossed: GFNetwork, flossed: GFNetwork, seeds: Sequence[int], flossed_lambda1: Tensor, *,
                          flossing, floss_steps: int, eval_steps: int, k: int, seq_len: int, burn_in: int,
                          lanczos_iters: int) -> SelfTeacherControls:
    """Build and measure the controls of chapter 12 for ``n`` networks, paired by seed.

    Args:
        unflossed: the ``n`` networks before flossing (not changed).
        flossed: the same ``n`` networks flossed to 0 (not changed).
        seeds: their ``n`` seeds (the input bits of every evaluation, as in the chapter).
        flossed_lambda1: ``(n,)`` the flossed networks' ``lambda_1`` as the chapter measured it
            (``evaluate_exponents(..., steps=eval_steps, k=k, key=1)``): the matched-memory target.
        flossing: the population's :class:`~floss_utils.flossing.flosser.FlossingConfig`; the
            J-only networks are flossed with it and ``params=("J",)`` for ``floss_steps`` steps.
        eval_steps, k: the exponent evaluation (key 1), as the chapter's.
        seq_len, burn_in, lanczos_iters: the self-teacher loss and its sharpness, as the chapter's.
    """
    from ..flossing.flosser import Flosser, evaluate_exponents

    n = unflossed.n_members
    seeds = [int(s) for s in seeds]
    if flossed.n_members != n or len(seeds) != n:
        raise ValueError(f"need as many flossed networks and seeds as unflossed networks ({n}); "
                         f"got {flossed.n_members} and {len(seeds)}")
    target = torch.as_tensor(flossed_lambda1, dtype=torch.float64).reshape(-1)
    if target.shape != (n,):
        raise ValueError(f"flossed_lambda1 must have shape ({n},), got {tuple(target.shape)}")
    matched = with_gain(unflossed, gain(flossed))
    j_only = unflossed.clone()
    Flosser(j_only, replace(flossing, params=("J",)), seeds, targets=[0.0] * n).run(floss_steps)
    j_only = j_only.clone()
    untouched = all(torch.equal(getattr(j_only, p), getattr(unflossed, p)) for p in ("W_s", "b", "w_r", "c"))
    matched_j = with_gain(unflossed, gain(j_only))
    matched_m, scale = with_memory(unflossed, target, seeds, steps=eval_steps, key=1, k=k)
    reached = torch.isfinite(scale)
    idx = torch.nonzero(reached).reshape(-1).tolist()
    parts = [matched, j_only, matched_j] + ([matched_m.select(idx)] if idx else [])
    nets = GFNetwork.cat(parts)
    labels = [CONTROLS[0]] * n + [CONTROLS[1]] * n + [CONTROLS[2]] * n + [CONTROLS[3]] * len(idx)
    row_seeds = seeds * 3 + [seeds[i] for i in idx]
    lam = evaluate_exponents(nets, row_seeds, steps=eval_steps, k=k, key=1).cpu()
    bits = task_bits(row_seeds, SHARP_BITS, 0, seq_len, nets.batch_size).to(nets.J)
    loss_fn, J0 = gf_self_teacher_loss(nets, ("J",), bits, burn_in)
    sharp = sharpness(loss_fn, J0, iters=lanczos_iters).cpu()
    var_r = gf_readout_variance(nets, bits, burn_in).cpu()
    if idx:
        pair = GFNetwork.cat([flossed.select(idx), matched_m.select(idx)])
        fresh = evaluate_exponents(pair, [seeds[i] for i in idx] * 2, steps=eval_steps, k=k, key=FRESH_KEY)[:, 0].cpu()
        fresh = fresh.reshape(2, len(idx)).T
    else:
        fresh = torch.zeros(0, 2, dtype=torch.float64)
    return SelfTeacherControls(seeds=seeds, networks=nets, labels=labels, row_seeds=row_seeds, exponents=lam,
                               sharpness=sharp, readout_variance=var_r, memory_scale=scale, untouched=untouched,
                               fresh_lambda1=fresh)


def control_comparisons(controls: SelfTeacherControls, sharp_flossed, sharp_unflossed, relative_flossed, *,
                        level: float = 0.9, seed: int = 0) -> dict[str, PairedComparison]:
    """The paired comparisons of chapter 12's controls, on log sharpness, by seed.

    Args:
        controls: from :func:`self_teacher_controls`.
        sharp_flossed, sharp_unflossed: ``(n,)`` sharpness of the flossed-to-0 and unflossed
            networks (seed order).
        relative_flossed: ``(n,)`` the flossed networks' sharpness per unit of readout variance.
        level, seed: of the bootstrap intervals.

    Returns:
        ``"flossed vs matched gain"``, ``"J only vs its matched gain"``, ``"matched gain vs
        unflossed"`` (the gain's own share), and, where at least two seeds reach the flossed
        ``lambda_1``, ``"flossed vs matched memory"`` and the same per unit of readout variance
        (``"flossed vs matched memory, relative"``). Each ``a - b`` in the order of its name.
    """
    S0, Su, R0 = (np.log(np.asarray(x, dtype=float).reshape(-1)) for x in (sharp_flossed, sharp_unflossed, relative_flossed))
    n = len(controls.seeds)
    if not S0.shape == Su.shape == R0.shape == (n,):
        raise ValueError(f"need ({n},) values per condition, got {S0.shape}, {Su.shape}, {R0.shape}")
    logS = np.log(controls.sharpness.numpy())
    logR = np.log((controls.sharpness / controls.readout_variance).numpy())
    at = lambda label: logS[controls.rows(label)]
    pc = lambda a, b: paired_comparison(a, b, level=level, seed=seed)
    out = {"flossed vs matched gain": pc(S0, at(CONTROLS[0])),
           "J only vs its matched gain": pc(at(CONTROLS[1]), at(CONTROLS[2])),
           "matched gain vs unflossed": pc(at(CONTROLS[0]), Su)}
    reached = controls.reached
    if reached.sum() >= 2:
        mem = controls.rows(CONTROLS[3])
        out["flossed vs matched memory"] = pc(S0[reached], logS[mem])
        out["flossed vs matched memory, relative"] = pc(R0[reached], logR[mem])
    return out
