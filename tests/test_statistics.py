"""The statistics helpers of floss_utils.common against independent ground truths: the Wilson
interval's closed forms at 0 and n successes and SciPy's ``binomtest(...).proportion_ci(method=
"wilson")``; the one-sided Fisher test against a hand count of hypergeometric tables and SciPy's
``fisher_exact(alternative="greater")``; the percentile bootstrap against the normal-theory
interval of a mean of a large Gaussian sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from floss_utils.common import bootstrap_interval, fisher_greater, loglog_slope, mcnemar_exact, median_interval, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (5, 10), (10, 10), (1, 1), (17, 60), (59, 60)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k, n, level):
    lo, hi = wilson_interval(k, n, level)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert float(lo) == pytest.approx(ref.low, abs=1e-12)
    assert float(hi) == pytest.approx(ref.high, abs=1e-12)


def test_wilson_closed_forms_at_the_edges():
    z = stats.norm.ppf(0.975)
    for n in (1, 5, 10, 40):
        lo, hi = wilson_interval(0, n)
        assert float(lo) == pytest.approx(0.0, abs=1e-15) and float(hi) == pytest.approx(z * z / (n + z * z), rel=1e-12)
        lo, hi = wilson_interval(n, n)
        assert float(hi) == pytest.approx(1.0, abs=1e-15) and float(lo) == pytest.approx(n / (n + z * z), rel=1e-12)


def test_wilson_is_elementwise_and_handles_n_zero():
    lo, hi = wilson_interval(np.array([0, 2, 4]), np.array([0, 4, 4]))
    assert lo.shape == (3,) and (lo[0], hi[0]) == (0.0, 1.0)
    assert lo[1] < 0.5 < hi[1] and hi[2] == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, level=1.0)


def _fisher_by_hand(k1, n1, k2, n2):
    """P(X >= k1) for the hypergeometric law, summed from binomial coefficients."""
    K, N = k1 + k2, n1 + n2
    tot = math.comb(N, n1)
    return sum(math.comb(K, x) * math.comb(N - K, n1 - x) for x in range(k1, min(K, n1) + 1)) / tot


@pytest.mark.parametrize("k1,n1,k2,n2", [(10, 10, 0, 10), (7, 10, 3, 10), (3, 10, 7, 10), (5, 10, 5, 10),
                                         (0, 10, 0, 10), (18, 30, 9, 30), (2, 3, 1, 12), (12, 12, 12, 12)])
def test_fisher_greater_matches_scipy_and_a_hand_count(k1, n1, k2, n2):
    p = fisher_greater(k1, n1, k2, n2)
    ref = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater").pvalue
    assert p == pytest.approx(ref, rel=1e-9, abs=1e-15)
    assert p == pytest.approx(_fisher_by_hand(k1, n1, k2, n2), rel=1e-9, abs=1e-15)


def test_fisher_greater_known_value_and_errors():
    # 10/10 vs 0/10: only the observed table is as extreme, 1 / C(20, 10)
    assert fisher_greater(10, 10, 0, 10) == pytest.approx(1 / math.comb(20, 10), rel=1e-12)
    with pytest.raises(ValueError):
        fisher_greater(11, 10, 0, 10)
    with pytest.raises(ValueError):
        fisher_greater(-1, 10, 0, 10)


def test_bootstrap_of_a_gaussian_mean_matches_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=2000)
    lo, hi = bootstrap_interval(x, level=0.95, n_boot=4000, seed=3)
    se = x.std(ddof=1) / math.sqrt(x.size)
    z = stats.norm.ppf(0.975)
    # the percentile interval of a mean of n = 2000 Gaussian values is the normal one up to
    # Monte-Carlo error of the quantiles (a few per cent of the half-width)
    assert lo == pytest.approx(x.mean() - z * se, abs=0.1 * z * se)
    assert hi == pytest.approx(x.mean() + z * se, abs=0.1 * z * se)


def test_bootstrap_is_seeded_and_degenerate_for_one_value():
    x = [0.1, 0.5, 0.3, 0.9, 0.2]
    assert bootstrap_interval(x, seed=5) == bootstrap_interval(x, seed=5)
    assert bootstrap_interval([0.4]) == (0.4, 0.4)
    lo, hi = bootstrap_interval(x, statistic=np.median)
    assert min(x) <= lo <= np.median(x) <= hi <= max(x)
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_mcnemar_exact_against_a_hand_count_and_scipy():
    # Hand count: 3 discordant pairs all one way -> p = 2 * (1/2)^3 = 0.25; the doc example of
    # chapter 5 (2 discordant, both one way) -> p = 2 * 1/4 = 0.5.
    a = np.array([True, True, True, False, False, True])
    b = np.array([False, False, False, False, False, True])
    assert mcnemar_exact(a, b) == (3, 0, 0.25)
    assert mcnemar_exact(np.array([True, True, False]), np.array([False, False, False])) == (2, 0, 0.5)
    # against SciPy's exact two-sided binomial test on the discordant pairs, many random tables
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        x, y = rng.random(n) < 0.5, rng.random(n) < rng.random()
        n10, n01, p = mcnemar_exact(x, y)
        assert (n10, n01) == (int((x & ~y).sum()), int((~x & y).sum()))
        want = 1.0 if n10 + n01 == 0 else stats.binomtest(n10, n10 + n01, 0.5).pvalue
        assert p == pytest.approx(want, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="equal length"):
        mcnemar_exact(np.array([True]), np.array([True, False]))
    with pytest.raises(TypeError, match="booleans"):
        mcnemar_exact(np.array([1, 0]), np.array([0, 1]))


def test_loglog_slope_of_exact_and_noisy_power_laws():
    x = np.array([1.0, 2.0, 5.0, 10.0, 30.0])
    s, lo, hi = loglog_slope(x, 7 * x**3)  # exact: y = 7 x^3, every resample (with two x values or more) gives 3
    assert s == pytest.approx(3.0, abs=1e-12) and lo == pytest.approx(3.0, abs=1e-9) and hi == pytest.approx(3.0, abs=1e-9)
    rng = np.random.default_rng(0)
    xs = np.exp(rng.uniform(0, 3, 400))
    ys = xs ** -1.5 * np.exp(0.1 * rng.standard_normal(400))
    s, lo, hi = loglog_slope(xs, ys, level=0.95)
    # least squares on log-log data with known noise sd 0.1: the slope's sd is 0.1 / sqrt(sum (lx - mean)^2)
    sd = 0.1 / np.sqrt(((np.log(xs) - np.log(xs).mean()) ** 2).sum())
    assert abs(s + 1.5) < 4 * sd and lo < s < hi and (hi - lo) == pytest.approx(2 * 1.96 * sd, rel=0.3)
    for bad in (([1, 2], [1, 2]), ([1, 1, 1], [1, 2, 3]), ([1, 2, -3], [1, 2, 3])):
        with pytest.raises(ValueError):
            loglog_slope(*bad)


def test_loglog_slope_cluster_bootstrap_resamples_whole_groups():
    # 6 groups of 20 points; each group shares one offset of sd 0.5 in log y (as networks of one seed share draws).
    # The slope's error is carried by the 6 offsets, so the cluster interval must be wider than the naive one.
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 20)
    lx = rng.uniform(0, 3, 120) + 0.3 * g  # groups sit at different x, so their offsets tilt the fit
    ly = 2.0 * lx + 0.5 * rng.standard_normal(6)[g] + 0.01 * rng.standard_normal(120)
    s_naive, lo_n, hi_n = loglog_slope(np.exp(lx), np.exp(ly))
    s_clust, lo_c, hi_c = loglog_slope(np.exp(lx), np.exp(ly), groups=g)
    assert s_naive == s_clust  # the point estimate does not depend on the resampling
    assert (hi_c - lo_c) > 1.5 * (hi_n - lo_n)
    exact = loglog_slope(np.exp(lx), np.exp(3 * lx), groups=g)
    assert exact[0] == pytest.approx(3.0, abs=1e-12) and exact[1] == pytest.approx(3.0, abs=1e-9)
    with pytest.raises(ValueError, match="label every point"):
        loglog_slope(np.exp(lx), np.exp(ly), groups=g[:10])
    with pytest.raises(ValueError, match="two groups"):
        loglog_slope(np.exp(lx), np.exp(ly), groups=np.zeros(120))


def test_holm_by_hand():
    from floss_utils.common import holm

    # m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values
    out = holm({"a": 0.01, "b": 0.04, "c": 0.016, "d": 0.03})
    assert out == {"a": True, "c": True, "d": False, "b": False}  # 0.03 > 0.025 stops the procedure
    assert holm({"a": 0.012, "b": 0.049}) == {"a": True, "b": True}  # 0.012 <= 0.025, 0.049 <= 0.05
    assert holm({"a": 0.03, "b": 0.001}) == {"b": True, "a": True}
    assert holm({"only": 0.05}) == {"only": True} and holm({}) == {}
    # step-down: a larger p cannot be rejected once a smaller one was not
    assert holm({"a": 0.026, "b": 0.026}) == {"a": False, "b": False}
    with pytest.raises(ValueError, match="alpha"):
        holm({"a": 0.01}, alpha=0)
    with pytest.raises(ValueError, match="p-values"):
        holm({"a": 1.5})


def test_holm_threshold_by_hand():
    from floss_utils.common import holm_threshold

    p = {"a": 0.03, "b": 0.001, "c": 0.2, "d": 0.03}
    # sorted b, a, d, c (ties in the given order): thresholds 0.05/4, 0.05/3, 0.05/2, 0.05/1
    assert [holm_threshold(p, k) for k in "badc"] == pytest.approx([0.0125, 0.05 / 3, 0.025, 0.05])
    assert holm_threshold(p, "c", alpha=0.1) == pytest.approx(0.1)
    with pytest.raises(KeyError, match="'e'"):
        holm_threshold(p, "e")


def test_holm_reachable_by_hand():
    from floss_utils.common import holm_reachable

    # chapter 10's book-scale case: four tests pass at p <= 0.002, the fifth (5 untied seeds, p >= 2^-5 = 0.031)
    # ranks last, where Holm's threshold is 0.05 / 1: it could have passed, so "not supported", not "not decidable"
    p = {"pre": 0.002, "inter": 0.00098, "both": 0.00098, "speed": 0.00098, "further": 0.19}
    best = {"pre": 2 ** -9, "inter": 2 ** -10, "both": 2 ** -10, "speed": 2 ** -10, "further": 2 ** -5}
    assert holm_reachable(p, best) == {k: True for k in p}
    assert holm_reachable(p, {**best, "further": 2 ** -4})["further"] is False  # 0.0625 > 0.05 at any rank
    # alone against one test that fails: 2^-5 = 0.031 ranks first, threshold 0.05 / 2 = 0.025, so it cannot pass;
    # the other (0.04 at best) cannot pass either, whatever its rank
    assert holm_reachable({"a": 0.04, "b": 0.2}, {"a": 0.04, "b": 2 ** -5}) == {"a": False, "b": False}
    # beside a test that passes, the same 2^-5 ranks second, threshold 0.05: reachable
    assert holm_reachable({"a": 0.001, "b": 0.2}, {"a": 0.001, "b": 2 ** -5}) == {"a": True, "b": True}
    with pytest.raises(ValueError, match="same tests"):
        holm_reachable({"a": 0.1}, {"b": 0.01})


def test_sign_test_greater_by_hand():
    # P(Binomial(n, 1/2) >= k) written out: 5 of 5 -> 1/32; 7 of 8 -> (8 + 1)/256; 0 of 3 -> 1;
    # nothing untied -> 1
    from floss_utils.common import sign_test_greater

    assert sign_test_greater(5, 0) == pytest.approx(1 / 32, rel=1e-12)
    assert sign_test_greater(7, 1) == pytest.approx(9 / 256, rel=1e-12)
    assert sign_test_greater(0, 3) == 1.0 and sign_test_greater(0, 0) == 1.0
    with pytest.raises(ValueError, match=">= 0"):
        sign_test_greater(-1, 2)


def test_cluster_signs_counts_net_signs_per_cluster_by_hand():
    # seed 0: +1 +1 -1 (net +1, for); seed 1: +1 -1 (net 0, neither); seed 2: -1 0 (against)
    import pandas as pd

    from floss_utils.common import cluster_signs

    idx = pd.MultiIndex.from_tuples([(0, "a"), (0, "b"), (0, "c"), (1, "a"), (1, "b"), (2, "a"), (2, "b")],
                                    names=["seed", "task"])
    assert cluster_signs(pd.Series([1, 1, -1, 1, -1, -1, 0], index=idx), "seed") == (1, 1)
    assert cluster_signs(pd.Series([], dtype=float), "seed") == (0, 0)


def test_median_interval_order_statistics_and_coverage_by_hand():
    # n = 5: only the range qualifies, coverage 1 - 2 (1/2)^5 = 0.9375
    assert median_interval([5.0, 1.0, 3.0, 2.0, 4.0], level=0.9) == (1.0, 5.0, 0.9375)
    # n = 10 at 95%: k = 2 covers 1 - 2 * 11/1024; k = 3 only 1 - 2 * 56/1024 = 0.89
    lo, hi, cov = median_interval(np.arange(1.0, 11.0), level=0.95)
    assert (lo, hi) == (2.0, 9.0) and cov == pytest.approx(1 - 22 / 1024)
    # too few draws for the level: the range with its own (lower) coverage
    assert median_interval([2.0, 1.0], level=0.9) == (1.0, 2.0, 0.5)
    with pytest.raises(ValueError, match="empty"):
        median_interval([])
    with pytest.raises(ValueError, match="level"):
        median_interval([1.0], level=1.0)


def test_median_interval_covers_a_known_median_at_its_stated_rate():
    # exponential draws, median ln 2: over 4000 samples of 7 the interval covers it at its stated coverage
    rng = np.random.default_rng(11)
    samples = rng.exponential(size=(4000, 7))
    hits, coverages = [], set()
    for x in samples:
        lo, hi, cov = median_interval(x, level=0.9)
        hits.append(lo <= np.log(2) <= hi)
        coverages.add(cov)
    (cov,) = coverages  # the same k for every sample of 7: k = 2 covers 1 - 2 * 8/128 = 0.875 < 0.9, so k = 1
    assert cov == pytest.approx(1 - 2 / 128)
    assert abs(np.mean(hits) - cov) < 4 * np.sqrt(cov * (1 - cov) / 4000)
