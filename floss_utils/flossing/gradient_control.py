"""Statistics for chapter 9 (flossing controls gradients): intervals and tests across seeds.

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

__all__ = ["seed_interval", "sign_test", "sign_test_decidable", "sign_tests_holm"]


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
