"""Chapter 9 (flossing controls gradients): its experiment, and intervals and tests across seeds.

* :func:`flossed_ensemble`: GF networks at several gains, each seed flossed on several numbers
  of exponents (and kept unflossed), all in one batch;
* :func:`held_out_drive`: the recurrent map, initial states and input drive of held-out bits
  along which the chapter measures gradient norms and condition numbers;

* :func:`seed_interval`: mean over seeds and the half-width of its two-sided Student-t
  interval, Bonferroni-corrected for the number of intervals a chapter reads together;
* :func:`sign_test`: exact one-sided sign test of paired differences across seeds (how many
  are positive, and the binomial tail probability under "no effect");
* :func:`sign_test_decidable`: whether ``n`` pairs can reach ``p < alpha`` at all;
* :func:`sign_tests_holm`: one such sign test per condition (e.g. per gain), decided together by
  Holm's step-down procedure at a family-wise error rate.

A check built on them has a threshold taken from the spread across seeds and a stated error
rate, never from the observed value.
"""

from __future__ import annotations

import math

from typing import Hashable, Sequence

import pandas as pd
import torch
from torch import Tensor

from ..common import holm, sign_test_greater

__all__ = ["flossed_ensemble", "held_out_drive", "seed_interval", "sign_test", "sign_test_decidable", "sign_tests_holm"]


def flossed_ensemble(gains: Sequence[float], k_flossed: Sequence[int], seeds: Sequence[int], *, n_units: int,
                     k: int, traj_steps: int, floss_lr: float, ons: int, floss_steps: int,
                     dtype: torch.dtype = torch.float64, device="cpu"):
    """GF networks (:func:`~floss_utils.flossing.tanh_network.init_gf_networks`, one input
    bit per step) at each gain, one copy per number of flossed exponents and seed, flossed toward
    ``lambda* = 0`` in one batch (:class:`~floss_utils.flossing.flosser.Flosser`, basis of
    ``k`` vectors, trajectories of ``traj_steps`` steps, Adam at ``floss_lr``, a QR every ``ons``
    steps, ``floss_steps`` updates). ``k_flossed`` entry 0 means "not flossed": that copy is never
    active and keeps the initial network, so it gives the exponents before flossing.

    Returns ``(net, members)``: the flossed :class:`~floss_utils.flossing.tanh_network.GFNetwork`
    ensemble and its members' ``(gain, k_flossed, seed)``, gain-major, then ``k_flossed``, then
    seed (member ``i`` of ``net`` is ``members[i]``).
    """
    from .flosser import Flosser, FlossingConfig
    from .tanh_network import GFNetwork, init_gf_networks

    if any(c < 0 or c > k for c in k_flossed):
        raise ValueError(f"every k_flossed must lie in [0, k = {k}], got {list(k_flossed)}")
    members = [(float(g), int(c), int(s)) for g in gains for c in k_flossed for s in seeds]
    member_seeds = [s for _, _, s in members]
    net = GFNetwork.cat([init_gf_networks([s for gg, _, s in members if gg == float(g)], n_units, 1, gain=g,
                                          dtype=dtype, device=device) for g in gains])
    flosser = Flosser(net, FlossingConfig(k=k, steps=traj_steps, lr=floss_lr, ons=ons), member_seeds,
                      n_floss=[max(c, 1) for _, c, _ in members])
    flosser.run(floss_steps, active=torch.tensor([c > 0 for _, c, _ in members]))
    return net, members


def held_out_drive(net, member_seeds: Sequence[int], horizon: int):
    """What chapter 9 measures along: ``(system, h0, drive)`` of a copy of ``net`` driven by
    held-out bits (:data:`~floss_utils.flossing.tasks.HELD_OUT`, epoch 0, step 0) for ``horizon``
    steps: its recurrent map, its initial states ``(M, N)`` and ``drive(t)``, the input drive
    ``(M, N)`` at step ``t``, as :func:`~floss_utils.lyapunov.jacobians.gradient_norms` and
    :func:`~floss_utils.lyapunov.jacobians.log_extreme_singular_values` take them."""
    from . import tasks

    netc = net.clone()
    bits = tasks.sample_bits(member_seeds, tasks.HELD_OUT, 0, 0, horizon, 1, dtype=netc.x0.dtype,
                             device=netc.x0.device)[:, :, 0]  # (horizon, M)
    drive_t = netc.drive(bits)
    return netc.recurrent_map(), netc.x0[:, 0], (lambda t: drive_t[t])


def seed_interval(values: Tensor, dim: int = -1, *, n_tests: int = 1, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    """Mean over ``dim`` (the seeds) and the half-width of the ``1 - alpha`` Student-t interval of
    that mean, Bonferroni-corrected for ``n_tests`` simultaneous intervals
    (quantile ``1 - alpha / (2 n_tests)``, ``n - 1`` degrees of freedom).

    Returns:
        (mean, half_width), each ``values`` without ``dim``; the half-width is ``inf`` when
        there are fewer than two seeds (no spread to measure).
    """
    from scipy import stats

    n = values.shape[dim]
    mean = values.mean(dim)
    if n < 2:
        return mean, torch.full_like(mean, math.inf)
    q = float(stats.t.ppf(1 - alpha / (2 * n_tests), n - 1))
    return mean, q * values.std(dim) / math.sqrt(n)


def sign_test(differences: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """Exact one-sided sign test that paired ``differences`` are positive, over all ``n`` pairs
    along ``dim``: :func:`floss_utils.common.sign_test_greater` with every pair that is not strictly
    positive (ties included) counted against - the conservative reading for claims of a strict
    increase (``sign_test_greater`` itself leaves ties out; pass it the counts to do so).

    Returns:
        (n_positive, p): the number of strictly positive differences along ``dim`` and
        ``P(X >= n_positive)`` for ``X ~ Binomial(n, 1/2)``, the probability of at least that
        many under the null hypothesis of no effect.
    """
    n = differences.shape[dim]
    k = (differences > 0).sum(dim)
    p = torch.tensor([sign_test_greater(int(j), n - int(j)) for j in k.reshape(-1).tolist()],
                     dtype=torch.float64).reshape(k.shape)
    return k, p


def sign_test_decidable(n: int, alpha: float = 0.05) -> bool:
    """Whether a one-sided sign test over ``n`` pairs can reach ``p < alpha`` (``2^-n < alpha``)."""
    return 0.5 ** n < alpha


def sign_tests_holm(differences: Tensor, names: Sequence[Hashable], alpha: float = 0.05) -> pd.DataFrame:
    """One exact one-sided :func:`sign_test` per row of ``differences`` ``(conditions, seeds)`` (a
    positive difference supports the claim), the rows decided together by Holm's step-down procedure
    (:func:`floss_utils.common.holm`) at family-wise error rate ``alpha``.

    Returns:
        one row per condition, in the given order: ``name``, ``n_for`` (positive differences), ``n``
        (seeds), ``p`` and ``supported`` (rejected by Holm); empty for no conditions.
    """
    if differences.ndim != 2 or differences.shape[0] != len(names):
        raise ValueError(f"differences must be (conditions, seeds) with one row per name ({len(names)}), "
                         f"got {tuple(differences.shape)}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {list(names)}")
    columns = ["name", "n_for", "n", "p", "supported"]
    if not len(names):
        return pd.DataFrame(columns=columns)
    n_for, p = sign_test(differences)
    supported = holm({name: float(q) for name, q in zip(names, p.tolist())}, alpha)
    return pd.DataFrame({"name": list(names), "n_for": n_for.tolist(), "n": differences.shape[1], "p": p.tolist(),
                         "supported": [supported[name] for name in names]}, columns=columns)
