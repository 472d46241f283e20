"""Tests of floss_utils.curse_of_memory.zo_comparison against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from floss_utils.curse_of_memory.zo_comparison import (both_averagings, on_learning_rates, ordinal, rank_among,
                                                       restrict_to_protocol, runs_array, seed_rank_test,
                                                       separation_test, teacher_separation, teacher_spread,
                                                       within_factor)


def test_within_factor_includes_both_edges_and_rejects_bad_input():
    assert within_factor(3.0, 1.0) and within_factor(1 / 3, 1.0) and within_factor(1.0, 1.0)
    assert not within_factor(3.0001, 1.0) and not within_factor(0.33, 1.0)
    assert within_factor(9.9, 1.0, factor=10)
    with pytest.raises(ValueError, match="factor"):
        within_factor(1.0, 1.0, factor=0.5)
    with pytest.raises(ValueError, match="reference"):
        within_factor(1.0, 0.0)


def runs_table():
    return pd.DataFrame({"arch": ["rnn", "rnn", "rnn", "lru", "lru", "complex"],
                         "lr": [1e-3, 3.2e-4, 1e-5, 0.1, 0.32, 1e-2],
                         "seed": [0, 1, 0, 2, 0, 0],
                         "max_phase": [0.1 * math.pi, 0.3 * math.pi, 0.1 * math.pi, math.pi, 0.01 * math.pi, math.pi]})


def test_on_learning_rates_keeps_exactly_the_rates_on_each_grid():
    out = on_learning_rates(runs_table(), {"rnn": [1e-3, 3.2e-4], "lru": [0.1]})
    assert out.index.tolist() == [0, 1, 3]  # 1e-5 is off the dense grid, 0.32 off the LRU's, "complex" has none


def test_restrict_to_protocol_needs_rate_seed_and_angle_range():
    out = restrict_to_protocol(runs_table(), {"rnn": [1e-3, 3.2e-4, 1e-5], "lru": [0.1, 0.32]}, seeds=[0],
                               theta0_over_pi=[0.1, 0.01])
    assert out.index.tolist() == [0, 2, 4]  # row 1: seed 1; row 3: seed 2 and pi; row 5: no complex rates


def test_both_averagings_differ_where_a_seed_diverged():
    # rate 1e-3: seeds 1.0 and inf; rate 1e-4: seeds 2.0 and 2.0. The book's rule keeps 1e-3 out (a seed
    # diverged) and picks 1e-4 (mean 2); ZO's drops the diverged seed and picks 1e-3 (mean 1 of one seed).
    runs = pd.DataFrame({"arch": ["rnn"] * 4, "lr": [1e-3, 1e-3, 1e-4, 1e-4], "seed": [0, 1, 0, 1],
                         "final_loss": [1.0, math.inf, 2.0, 2.0]})
    row = both_averagings(runs, ["arch"]).iloc[0]
    assert (row.lr, row["mean"]) == (1e-4, 2.0)
    assert (row.lr_zo, row.mean_zo, row.n_diverged_zo, row.n_seeds_zo) == (1e-3, 1.0, 1, 2)


def test_teacher_spread_ratios_by_hand():
    best = pd.DataFrame({"teacher_seed": [0, 0, 1, 1], "theta0_over_pi": [0.01, 1.0, 0.01, 1.0],
                         "mean": [1e-6, 1e-5, 4e-6, 8e-6]})
    zero = {(0, 0.01): 10.0, (0, 1.0): 20.0, (1, 0.01): 5.0, (1, 1.0): 5.0}
    t = teacher_spread(best, zero, 0.01, 1.0)
    assert t.loc[0, "ratio"] == pytest.approx(10.0) and t.loc[1, "ratio"] == pytest.approx(2.0)
    assert t.loc[0, "ratio, relative"] == pytest.approx((1e-5 / 20) / (1e-6 / 10))  # = 5
    assert t.loc[1, "ratio, relative"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no runs at"):
        teacher_spread(best, zero, 0.1, 1.0)


def test_seed_rank_test_exact_p_value():
    # teacher 0's two seeds below all ten others: one arrangement of C(12, 2) = 66 is as extreme
    at_best = pd.DataFrame({"teacher_seed": [0, 0] + [1] * 5 + [2] * 5,
                            "final_loss": [1e-7, 2e-7] + list(np.linspace(1e-6, 1e-5, 10))})
    own, rest, p = seed_rank_test(at_best, 0)
    assert len(own) == 2 and len(rest) == 10
    assert p == pytest.approx(1 / 66)
    # the highest two seeds: p = 1 (every arrangement is at least as extreme in the "less" direction)
    _, _, p_high = seed_rank_test(at_best.assign(final_loss=-at_best.final_loss), 0)
    assert p_high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="teacher 9"):
        seed_rank_test(at_best, 9)


def test_ordinal():
    assert [ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]


def test_rank_among():
    assert rank_among(0.026, [4.1, 1.0, 4.5, 0.02, 0.053, 1.4]) == (2, 7)
    assert rank_among(0.01, [1.0, 2.0]) == (1, 3) and rank_among(5.0, [1.0, 2.0]) == (3, 3)
    assert rank_among(1.0, [1.0, 2.0]) == (1, 3)  # a tie counts above the value
    with pytest.raises(ValueError, match="empty"):
        rank_among(1.0, [])


def test_runs_array_and_teacher_separation_by_hand():
    runs = pd.DataFrame({"teacher_seed": [1, 1, 1, 1, 2, 2, 2, 2],
                         "lr": [1e-3, 1e-3, 1e-4, 1e-4] * 2, "seed": [0, 1] * 4,
                         "final_loss": [5.0, math.inf, 4.6, 4.8, 0.02, 0.03, 0.5, float("nan")]})
    values = runs_array(runs, [1, 2], [1e-3, 1e-4], [0, 1])
    np.testing.assert_array_equal(values, [[[5.0, np.inf], [4.6, 4.8]], [[0.02, 0.03], [0.5, np.inf]]])  # NaN -> inf
    # teacher 1 (index 0): lowest run 4.6; best rate 1e-4 (1e-3 has a diverged seed), highest seed there 4.8.
    # teacher 2 (index 1): lowest run 0.02; best rate 1e-3, highest seed there 0.03
    assert teacher_separation(values) == {"hard": 0, "hard_lowest": 4.6, "easy": 1, "easy_highest": 0.03,
                                          "ratio": pytest.approx(4.6 / 0.03)}
    with pytest.raises(ValueError, match="teacher 3, lr 0.001, seed 0: 0 runs, need exactly one"):
        runs_array(runs, [1, 3], [1e-3], [0])
    twice = pd.concat([runs, runs.iloc[[2]]], ignore_index=True)  # teacher 1, lr 1e-4, seed 0 twice
    with pytest.raises(ValueError, match="teacher 1, lr 0.0001, seed 0: 2 runs, need exactly one"):
        runs_array(twice, [1, 2], [1e-3, 1e-4], [0, 1])
    np.testing.assert_array_equal(runs_array(twice, [2], [1e-3], [0, 1]), [[[0.02, 0.03]]])  # rows not asked for
    off = runs.assign(seed=[0, 1.5] * 4)  # a seed 1.5 is not seed 1
    with pytest.raises(ValueError, match="seed 1: 0 runs"):
        runs_array(off, [1], [1e-3], [0, 1])
    for bad in (([1, 1], [1e-3], [0]), ([1], [1e-3, 1e-3 * (1 + 1e-12)], [0]), ([1], [1e-3], [0, 0])):
        with pytest.raises(ValueError, match="distinct"):
            runs_array(runs, *bad)
    with pytest.raises(ValueError, match="teachers >= 2"):
        teacher_separation(values[:1])


def test_separation_test_finds_a_teacher_effect_and_is_calibrated_without_one():
    rng = np.random.default_rng(0)
    # a strong teacher effect: teacher t's runs sit near 10^t whatever the seed or rate
    strong = 10.0 ** np.arange(6)[:, None, None] * rng.uniform(0.9, 1.1, size=(6, 4, 3))
    ratio, p = separation_test(strong, n_perm=999, seed=1)
    assert ratio > 1e4 and p < 0.01
    # no teacher effect (i.i.d. log-normal runs): P(p <= 0.1) must be at most about 0.1
    ps = np.array([separation_test(np.exp(2 * rng.standard_normal((6, 4, 3))), n_perm=199, seed=k)[1]
                   for k in range(300)])
    frac = np.mean(ps <= 0.1)
    assert frac <= 0.1 + 3 * np.sqrt(0.1 * 0.9 / 300), frac
    # same seed, same p
    assert separation_test(strong, n_perm=99, seed=5) == separation_test(strong, n_perm=99, seed=5)


def test_same_member_factors_pairs_members_by_key_rate_and_seed():
    import pandas as pd

    from floss_utils.curse_of_memory.zo_comparison import same_member_factors

    first = pd.DataFrame({"arch": ["rnn", "rnn", "rnn", "lru"], "lr": [1e-3, 1e-3, 1e-2, 1e-3], "seed": [0, 1, 0, 0],
                          "final_loss": [2e-3, 1e-3, float("inf"), 5.0]})
    second = pd.DataFrame({"arch": ["rnn", "rnn", "rnn", "lru", "lru"], "lr": [1e-3, 1e-3, 1e-2, 1e-3, 1e-3],
                           "seed": [1, 0, 0, 0, 1], "final_loss": [4e-3, 1e-3, 1.0, 5.0, 7.0]})
    out = same_member_factors(first, second, ["arch"])
    # rnn seed 0 (2e-3 vs 1e-3: 2x), rnn seed 1 (1e-3 vs 4e-3: 4x, order does not matter), lru seed 0 (equal);
    # the member infinite in one table and the one run only once are left out
    got = {(r.arch, r.seed): r.factor for r in out.itertuples()}
    assert got == {("rnn", 0): 2.0, ("rnn", 1): 4.0, ("lru", 0): 1.0}


def test_log_spread_test_exact_p_by_hand():
    """Two of five deviations are 2 (log 1 and log e^4 about their median 2), three are 0: only one
    of the C(5, 2) = 10 splits puts both 2s in the first group, so p = 1/10 and the factor e^2."""
    from floss_utils.curse_of_memory.zo_comparison import log_spread_test

    factor, p = log_spread_test([1.0, math.exp(4.0)], [1.0, 1.0, 1.0])
    assert p == pytest.approx(0.1, abs=1e-12) and factor == pytest.approx(math.exp(2.0))
    # the other way round nothing is wider: every split reaches the observed difference
    assert log_spread_test([1.0, 1.0, 1.0], [1.0, math.exp(4.0)])[1] == pytest.approx(1.0)
    # scale and location of the whole sample do not matter (logs, deviations from the median)
    a, b = [2.0, 5.0, 40.0, 0.3], [1.0, 1.5, 0.8, 1.2, 0.9]
    assert log_spread_test(a, b)[1] == pytest.approx(log_spread_test([7 * v for v in a], b)[1], abs=1e-12)


def test_log_spread_test_holds_its_level_under_the_null_and_finds_a_wider_sample():
    """Both samples log-normal with one sigma: p < 0.05 in at most about 5 % of 1000 draws (the
    test's level; the bound is the binomial 99.9 % quantile); three times the sigma: found in most draws."""
    from scipy.stats import binom

    from floss_utils.curse_of_memory.zo_comparison import log_spread_test

    rng = np.random.default_rng(3)
    rejections = sum(log_spread_test(np.exp(rng.normal(2, 1, 6)), np.exp(rng.normal(-1, 1, 7)))[1] < 0.05
                     for _ in range(1000))
    assert rejections <= binom.ppf(0.999, 1000, 0.05)  # 71 of 1000: a true level above about 7 % fails
    found = sum(log_spread_test(np.exp(rng.normal(0, 3, 8)), np.exp(rng.normal(0, 1, 10)))[1] < 0.05
                for _ in range(50))
    assert found >= 25  # power well above the level (about 0.8 by simulation of the same design)


def test_log_spread_test_monte_carlo_branch_and_refusals():
    from floss_utils.curse_of_memory.zo_comparison import log_spread_test

    rng = np.random.default_rng(0)
    a, b = np.exp(rng.normal(0, 2, 9)), np.exp(rng.normal(0, 1, 9))
    exact = log_spread_test(a, b)[1]  # C(18, 9) = 48620 splits
    sampled = log_spread_test(a, b, max_exact=10, n_perm=20_000)[1]
    assert sampled == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20_000) + 1e-4)
    for bad in ([1.0], [1.0, float("inf")], [1.0, -2.0]):
        with pytest.raises(ValueError):
            log_spread_test(bad, [1.0, 2.0])


def test_teachers_against_seeds_ranks_spreads_and_where_the_published_value_falls():
    from floss_utils.curse_of_memory.zo_comparison import teachers_against_seeds

    per_teacher = {0: 8.0, 1: 1.0, 2: 2.0, 3: 4.0}
    r = teachers_against_seeds(per_teacher, [7.0, 8.0, 9.0], published=3.0)
    assert r["published_rank"] == (3, 5) and r["published_where"] == "inside"
    assert r["own_rank"] == 4 and r["teacher_spread"] == 8.0 and r["seed_spread"] == pytest.approx(9 / 7)
    assert r["geometric_mean"] == pytest.approx(math.sqrt(8)) and r["within_factor_3"] == 4  # [1, 9] holds all four
    assert teachers_against_seeds(per_teacher, [7.0, 8.0], 0.5)["within_factor_3"] == 1  # [1/6, 1.5]: only 1
    assert teachers_against_seeds(per_teacher, [7.0, 8.0], 0.5)["published_where"] == "below"
    assert teachers_against_seeds(per_teacher, [7.0, 8.0], 9.0)["published_where"] == "above"
    assert teachers_against_seeds(per_teacher, [7.0, 8.0], 3.0, own_teacher=1)["own_rank"] == 1
    with pytest.raises(ValueError, match="own_teacher 5"):
        teachers_against_seeds(per_teacher, [7.0, 8.0], 3.0, own_teacher=5)
    with pytest.raises(ValueError, match="finite"):
        teachers_against_seeds({**per_teacher, 4: float("inf")}, [7.0, 8.0], 3.0)


def test_teachers_against_seeds_tests_the_other_teachers_against_the_seeds():
    """The own teacher's seeds are one sample, so the own teacher is left out of the other."""
    from floss_utils.curse_of_memory.zo_comparison import log_spread_test, teachers_against_seeds

    per_teacher, seeds = {0: 8.0, 1: 1.0, 2: 2.0, 3: 40.0, 4: 0.1}, [7.0, 8.0, 9.0, 7.5]
    r = teachers_against_seeds(per_teacher, seeds, 3.0)
    assert (r["spread_factor"], r["spread_p"]) == log_spread_test([1.0, 2.0, 40.0, 0.1], seeds)
    assert r["spread_p"] != log_spread_test(list(per_teacher.values()), seeds)[1]


def test_best_over_rates_takes_each_members_lowest_finite_loss_on_the_rates():
    from floss_utils.curse_of_memory.zo_comparison import best_over_rates

    runs = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1, 2], "lr": [1e-3, 3.2e-4, 1e-4, 1e-3, 3.2e-4, 1e-4, 1e-3],
                         "final_loss": [0.5, float("nan"), 0.2, float("inf"), float("inf"), 3.0, float("inf")]})
    got = best_over_rates(runs, [1e-3, 3.2e-4], "seed")  # 1e-4 is not among the rates asked for
    assert got.to_dict() == {0: 0.5, 1: float("inf"), 2: float("inf")}
    assert best_over_rates(runs, [1e-3, 3.2e-4, 1e-4], "seed").to_dict() == {0: 0.2, 1: 3.0, 2: float("inf")}
    with pytest.raises(ValueError, match="no runs"):
        best_over_rates(runs, [0.5], "seed")


def test_teacher_record_summary_by_hand():
    from floss_utils.curse_of_memory.zo_comparison import teacher_record_summary

    best = pd.DataFrame({"teacher_seed": [0, 1, 2], "mean": [1.0, 4.0, float("inf")], "on_grid_edge": [True, False, False]})
    got = teacher_record_summary(best, 2.0)
    assert got["per_teacher"] == {"0": 1.0, "1": 4.0, "2": float("inf")}
    assert (got["min"], got["max"], got["geometric_mean"]) == (1.0, 4.0, pytest.approx(2.0))
    assert got["published_rank"] == [2, 3] and got["teachers_within_factor_3"] == 2 and got["best_lr_on_grid_edge"] == 1
    with pytest.raises(ValueError, match="finite"):
        teacher_record_summary(best.iloc[2:], 2.0)
