"""floss_utils.common.paired_comparison against independent ground truths: scipy's exact
permutation test, the closed form 2^-n of a unanimous sign, the binomial limit of a large sample,
and the bootstrap interval against the normal-theory one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from floss_utils.common import paired_comparison


@pytest.mark.parametrize("n", [3, 6, 9])
def test_exact_p_matches_scipy_permutation_test(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
    ours = paired_comparison(a, b)
    ref = stats.permutation_test((a - b,), np.mean, permutation_type="samples", alternative="greater",
                                 n_resamples=np.inf).pvalue
    assert ours.p_greater == pytest.approx(ref, rel=1e-12)
    assert ours.n == n and ours.mean == pytest.approx((a - b).mean())
    assert ours.n_greater == int((a > b).sum())


@pytest.mark.parametrize("n", [1, 4, 8])
def test_unanimous_pairs_reach_the_smallest_p(n):
    # every pair favours a: only the identity sign pattern is as extreme -> p = 2^-n exactly
    r = paired_comparison(np.arange(n) + 2.0, np.ones(n))
    assert r.p_greater == r.p_min == 2.0 ** -n
    assert r.decidable(0.05) == (n >= 5)
    # every pair favours b: p = 1
    assert paired_comparison(np.ones(n), np.arange(n) + 2.0).p_greater == 1.0


def test_monte_carlo_beyond_20_pairs_agrees_with_the_normal_limit():
    rng = np.random.default_rng(0)
    d = rng.normal(0.25, 1, 60)
    r = paired_comparison(d, np.zeros(60), n_flips=200000)
    # the sign-flip distribution of the mean has variance sum(d^2)/n^2: normal limit
    z = d.mean() / (np.sqrt((d ** 2).sum()) / d.size)
    assert r.p_greater == pytest.approx(stats.norm.sf(z), abs=0.01)


def test_bootstrap_interval_covers_like_the_t_interval():
    rng = np.random.default_rng(1)
    d = rng.normal(1.0, 2.0, 40)
    r = paired_comparison(d, np.zeros(40), level=0.9)
    half = stats.t.ppf(0.95, 39) * d.std(ddof=1) / np.sqrt(40)
    assert r.lo == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert r.hi == pytest.approx(d.mean() + half, abs=0.15 * half)


def test_refuses_non_finite_or_empty():
    with pytest.raises(ValueError):
        paired_comparison([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError):
        paired_comparison([], [])


def test_monte_carlo_path_reports_its_own_smallest_p():
    # beyond 20 pairs p = (1 + hits) / (1 + n_flips) >= 1 / (1 + n_flips), not 2^-n: unanimous pairs reach exactly that
    r = paired_comparison(np.arange(30) + 2.0, np.ones(30), n_flips=999)
    assert r.p_min == 1 / 1000 and r.p_greater == r.p_min
    assert not paired_comparison(np.arange(30) + 2.0, np.ones(30), n_flips=9).decidable(0.05)
