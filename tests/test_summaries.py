"""Summaries of flossing-schedule experiments against hand counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from floss_utils.flossing.summaries import horizon_contrast, paired_speedup, schedule_contrasts


def _table():
    # 6 seeds on one task; "pre" succeeds for seeds 0-4, "none" for seeds 0 and 5:
    # discordant pairs: pre only {1, 2, 3, 4} (n10 = 4), none only {5} (n01 = 1)
    rows = [{"seed": s, "family": "xor", "delay": 5, "schedule": sch, "success": ok}
            for s in range(6) for sch, ok in (("pre", s <= 4), ("none", s in (0, 5)))]
    rows.append({"seed": 9, "family": "xor", "delay": 5, "schedule": "pre", "success": True})  # no "none" partner
    return pd.DataFrame(rows)


def test_schedule_contrasts_by_hand():
    out = schedule_contrasts(_table(), [("pre", "none"), ("none", "pre")]).set_index("a")
    r = out.loc["pre"]
    assert r.n_pairs == 6 and r.n10 == 4 and r.n01 == 1  # the unmatched seed 9 is left out
    assert r.rate_a == pytest.approx(5 / 6) and r.rate_b == pytest.approx(2 / 6)
    # pairs: P(Bin(5, 1/2) >= 4) = (5 + 1) / 32
    assert r.p_pairs == pytest.approx(6 / 32, rel=1e-12)
    assert out.loc["none"].p_pairs == pytest.approx(31 / 32, rel=1e-12)  # P(Bin(5, 1/2) >= 1)
    # one task per seed here, so the seed-level sign test sees the same 4 against 1
    assert (r.seeds_for, r.seeds_against) == (4, 1) and r.p == pytest.approx(6 / 32, rel=1e-12)
    # Wilson 95 % interval of 5/6 (closed form written out)
    z, n, k = 1.959963984540054, 6, 5
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert r.rate_a_lo == pytest.approx(centre - half, rel=1e-9) and r.rate_a_hi == pytest.approx(centre + half, rel=1e-9)


def test_schedule_contrasts_without_discordant_pairs_and_errors():
    t = _table()
    same = pd.concat([t[t.schedule == "pre"], t[t.schedule == "pre"].assign(schedule="both")])
    assert schedule_contrasts(same, [("both", "pre")]).p.item() == 1.0
    with pytest.raises(ValueError, match="must both be in the table"):
        schedule_contrasts(t, [("inter", "none")])
    with pytest.raises(ValueError, match="lacks columns"):
        schedule_contrasts(t.drop(columns="seed"), [("pre", "none")])
    with pytest.raises(ValueError, match="one member per schedule"):
        schedule_contrasts(pd.concat([t, t]), [("pre", "none")])


def test_paired_speedup_by_hand():
    epochs = {"pre": [10, 20, 30, 40, None], "none": [20, 20, 60, 20, 50]}
    rows = [{"seed": s, "family": "copy", "delay": 3, "schedule": sch, "success": e[s] is not None,
             "success_epoch": float("nan") if e[s] is None else float(e[s])}
            for sch, e in epochs.items() for s in range(5)]
    r = paired_speedup(pd.DataFrame(rows), "pre", "none")
    # both succeed for seeds 0-3; pre sooner for 0 and 2, tied for 1, later for 3
    assert (r["n"], r["n_sooner"], r["n_later"]) == (4, 2, 1)
    assert r["median_ratio"] == pytest.approx(1.5)  # ratios none / pre: 2, 1, 2, 0.5
    assert r["p_pairs"] == pytest.approx(4 / 8)  # P(Bin(3, 1/2) >= 2)
    assert (r["seeds_sooner"], r["seeds_later"]) == (2, 1) and r["p"] == pytest.approx(4 / 8)  # one task per seed
    empty = paired_speedup(pd.DataFrame(rows).assign(success=False), "pre", "none")
    assert empty["n"] == 0 and empty["p"] == 1.0 and math.isnan(empty["median_ratio"])


def test_schedule_contrasts_decide_by_seed_when_tasks_share_a_seed():
    # 3 seeds x 4 tasks: seed 0 favours "a" on all 4 tasks, seeds 1 and 2 favour "b" on one task each.
    # Pairs: 4 against 2 (p_pairs = P(Bin(6, 1/2) >= 4) = 22/64); seeds: 1 against 2 (p = P(Bin(3, 1/2) >= 1) = 7/8)
    rows = []
    for s in range(3):
        for d in range(4):
            a_ok = s == 0
            b_ok = (s > 0 and d == 0)
            rows += [{"seed": s, "family": "copy", "delay": d, "schedule": "a", "success": a_ok},
                     {"seed": s, "family": "copy", "delay": d, "schedule": "b", "success": b_ok}]
    r = schedule_contrasts(pd.DataFrame(rows), [("a", "b")]).iloc[0]
    assert (r.n10, r.n01) == (4, 2) and r.p_pairs == pytest.approx(22 / 64)
    assert (r.seeds_for, r.seeds_against) == (1, 2) and r.p == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="cluster"):
        schedule_contrasts(pd.DataFrame(rows), [("a", "b")], cluster="run")


def test_horizon_contrast_by_hand():
    # per (seed, family): longest delay succeeded. seed 0: a 20, b 10 (longer); seed 1: a 10, b 10 (tie);
    # seed 2: a 0 (none), b 10 (shorter); seed 3: a 20, b 0 (longer)
    ok = {("a", 0): {10, 20}, ("b", 0): {10}, ("a", 1): {10}, ("b", 1): {10}, ("a", 2): set(), ("b", 2): {10},
          ("a", 3): {10, 20}, ("b", 3): set()}
    rows = [{"seed": s, "family": "xor", "delay": d, "schedule": sch, "success": d in ok[sch, s]}
            for sch in "ab" for s in range(4) for d in (10, 20)]
    r = horizon_contrast(pd.DataFrame(rows), "a", "b")
    assert (r["n"], r["n_longer"], r["n_shorter"]) == (4, 2, 1)
    assert r["p_pairs"] == pytest.approx(4 / 8)  # P(Bin(3, 1/2) >= 2)
    assert (r["seeds_longer"], r["seeds_shorter"]) == (2, 1) and r["p"] == pytest.approx(4 / 8)  # one family per seed
    # the size: per-seed differences +10, 0, -10, +20 steps, mean 5; the bootstrap interval of a mean lies within the
    # sample's range and around its mean
    assert r["mean_diff"] == pytest.approx(5.0) and -10 <= r["diff_lo"] <= 5.0 <= r["diff_hi"] <= 20
    # two families of one seed count once: seed 0 longer on both families, seed 1 shorter on one
    two = [{"seed": s, "family": f, "delay": d, "schedule": sch,
            "success": (sch == "a" and s == 0) or (sch == "b" and s == 1 and f == "copy")}
           for sch in "ab" for s in range(2) for f in ("copy", "xor") for d in (10,)]
    r2 = horizon_contrast(pd.DataFrame(two), "a", "b")
    assert (r2["n_longer"], r2["n_shorter"]) == (2, 1) and r2["p_pairs"] == pytest.approx(4 / 8)
    assert (r2["seeds_longer"], r2["seeds_shorter"]) == (1, 1) and r2["p"] == pytest.approx(3 / 4)
    # seed 0: (+10 + 10) / 2 = +10, seed 1: (-10 + 0) / 2 = -5: the per-seed means, then their mean 2.5
    assert r2["mean_diff"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="cluster"):
        horizon_contrast(pd.DataFrame(rows), "a", "b", cluster="run")
    with pytest.raises(ValueError, match="not in the table"):
        horizon_contrast(pd.DataFrame(rows), "a", "c")


def test_success_summary_has_wilson_intervals():
    from floss_utils.common import wilson_interval
    from floss_utils.flossing.summaries import success_summary

    rows = [{"family": "copy", "delay": 5, "schedule": "pre", "success": s < 3, "success_epoch": 10.0 if s < 3 else float("nan"),
             "final_accuracy": 1.0} for s in range(10)]
    assert "rate_lo" not in success_summary(pd.DataFrame(rows)).columns  # intervals only when asked for
    out = success_summary(pd.DataFrame(rows), level=0.95).iloc[0]
    lo, hi = wilson_interval(3, 10)
    assert out.n == 10 and out.success_rate == pytest.approx(0.3)
    assert out.rate_lo == pytest.approx(float(lo)) and out.rate_hi == pytest.approx(float(hi))


def _pairs(n10: int, n01: int, n11: int, n00: int, tasks_per_seed: int = 1) -> pd.DataFrame:
    """Matched pairs of schedules a and b with the given counts of outcomes (a, b); pairs are
    grouped ``tasks_per_seed`` at a time into seeds, in the order listed (so a seed's pairs agree)."""
    outcomes = [(1, 0)] * n10 + [(0, 1)] * n01 + [(1, 1)] * n11 + [(0, 0)] * n00
    rows = []
    for i, (ya, yb) in enumerate(outcomes):
        seed, delay = divmod(i, tasks_per_seed)
        rows += [{"seed": seed, "family": "copy", "delay": delay, "schedule": "a", "success": bool(ya)},
                 {"seed": seed, "family": "copy", "delay": delay, "schedule": "b", "success": bool(yb)}]
    return pd.DataFrame(rows)


def test_rate_difference_interval_is_the_t_interval_of_cluster_means_for_equal_clusters():
    from scipy.stats import t as student_t

    # 5 seeds x 4 tasks: per seed, a succeeds on the first m_s tasks and b on none
    m = [4, 3, 1, 0, 2]
    rows = [{"seed": s, "family": "copy", "delay": d, "schedule": sch, "success": sch == "a" and d < m[s]}
            for s in range(5) for d in range(4) for sch in "ab"]
    r = schedule_contrasts(pd.DataFrame(rows), [("a", "b")]).iloc[0]
    means = [v / 4 for v in m]  # per-seed differences of rates
    mean, sd = sum(means) / 5, (sum((v - sum(means) / 5) ** 2 for v in means) / 4) ** 0.5
    half = student_t.ppf(0.975, 4) * sd / 5 ** 0.5
    assert r["diff"] == pytest.approx(mean) and r.diff_lo == pytest.approx(mean - half) and r.diff_hi == pytest.approx(mean + half)


def test_rate_difference_interval_matches_the_paired_normal_limit():
    # independent pairs (one task per seed): the interval of the paired difference tends
    # to diff -+ z * sqrt(n10 + n01 - (n10 - n01)^2 / n) / n (the paired proportions' variance)
    n10, n01, n11, n00 = 60, 20, 200, 120
    n = n10 + n01 + n11 + n00
    r = schedule_contrasts(_pairs(n10, n01, n11, n00), [("a", "b")]).iloc[0]
    assert r["diff"] == pytest.approx((n10 - n01) / n)
    half = 1.959963984540054 * math.sqrt(n10 + n01 - (n10 - n01) ** 2 / n) / n
    assert r.diff_lo == pytest.approx(r["diff"] - half, abs=0.1 * half)
    assert r.diff_hi == pytest.approx(r["diff"] + half, abs=0.1 * half)
    # no discordant pair: the difference is exactly 0 in every resample
    same = schedule_contrasts(_pairs(0, 0, 30, 30), [("a", "b")]).iloc[0]
    assert (same["diff"], same.diff_lo, same.diff_hi) == (0.0, 0.0, 0.0)


def test_rate_difference_interval_widens_with_clustered_pairs():
    # the same pairs, 4 identical tasks per seed: 4x fewer independent units, so the interval is
    # sqrt(4) = 2x wider than when each pair is its own seed
    counts = (80, 20, 160, 140)
    w1 = schedule_contrasts(_pairs(*counts), [("a", "b")]).iloc[0]
    w4 = schedule_contrasts(_pairs(*counts, tasks_per_seed=4), [("a", "b")]).iloc[0]
    assert w4["diff"] == pytest.approx(w1["diff"])
    ratio = (w4.diff_hi - w4.diff_lo) / (w1.diff_hi - w1.diff_lo)
    assert ratio == pytest.approx(2.0, rel=0.15)


def test_schedule_claims_by_hand():
    from floss_utils.flossing.summaries import schedule_claims

    # 4 seeds x one copy task (delay 5) x 4 schedules; success epochs (None: never)
    epochs = {"none": [40, None, None, None], "pre": [20, 30, None, 50], "inter": [40, 60, 70, None],
              "both": [20, 30, 40, 60]}
    rows = [{"seed": s, "family": "copy", "delay": 5, "schedule": sch, "success": e[s] is not None,
             "success_epoch": float("nan") if e[s] is None else float(e[s])}
            for sch, e in epochs.items() for s in range(4)]
    t = pd.DataFrame(rows)
    c = schedule_claims(t)
    byname = c.contrasts.set_index("a")
    assert list(byname.index) == ["pre", "inter", "both"] and (byname.b == "none").all()
    assert (byname.loc["pre"].n10, byname.loc["pre"].n01) == (2, 0)
    assert byname.loc["both"].p == pytest.approx(1 / 8) and not byname.loc["both"].supported  # 3 of 3 seeds
    assert c.speed_tasks == [("copy", 5)] and c.epochs_saved == 20.0  # only seed 0 succeeds under both
    assert c.speed["n"] == 1 and c.speed["n_sooner"] == 1
    assert (c.further["n_longer"], c.further["n_shorter"]) == (1, 0)  # seed 2: both 5, pre 0
    assert set(c.supported) == {"pre_none", "inter_none", "both_none", "further", "speed"}
    # 3 untied seeds cannot give p below 2^-3 > 0.05, Holm's loosest threshold: not decidable, not "not supported"
    assert c.verdict("both_none") == (
            "not decidable (3 untied seeds: p cannot go below 2^-3 = 0.125, above Holm's threshold 0.01 at its rank)")
    assert schedule_claims(t, alpha=0.7).verdict("both_none") == "supported"
    # seed-level p-values: both 1/8 (3 seeds), pre 1/4 and inter 1/4 (2 seeds each), further 1/2, speed 1/2.
    # Holm at alpha 0.7 rejects while p_(i) <= 0.7 / (6 - i): 1/8 <= 0.14, then 1/4 > 0.175 stops
    lenient = schedule_claims(t, alpha=0.7)
    assert lenient.supported["both_none"] and not lenient.supported["pre_none"] and not lenient.supported["inter_none"]
    assert not any(schedule_claims(t, alpha=0.5).supported.values())  # 1/8 > 0.5 / 5
    with pytest.raises(ValueError, match="no test"):
        c.verdict("nothing")
    never = t.assign(success=t.schedule.isin(["both"]))
    assert math.isnan(schedule_claims(never).epochs_saved) and schedule_claims(never).speed_tasks == []
    with pytest.raises(ValueError, match="alpha"):
        schedule_claims(t, alpha=1.5)


def test_exponents_needed_and_needed_contrast_by_hand():
    from floss_utils.flossing.summaries import exponents_needed, needed_contrast

    # seeds 0-3, copy at lags 4 and 16, k in (0, 4, 16); success iff k >= need[seed, lag] (None: never)
    need = {(0, 4): 0, (1, 4): 4, (2, 4): 0, (3, 4): 16, (0, 16): 16, (1, 16): None, (2, 16): 4, (3, 16): 16}
    rows = [{"seed": s, "order": 0, "max_lag": L, "n_floss": k,
             "success": need[s, L] is not None and k >= need[s, L]}
            for s in range(4) for L in (4, 16) for k in (0, 4, 16)]
    rows.append({"seed": 1, "order": 0, "max_lag": 4, "n_floss": 30, "success": False})  # a failure above: still 4
    t = pd.DataFrame(rows)
    n = exponents_needed(t).set_index(["seed", "max_lag"])["needed"]
    assert n[0, 4] == 0 and n[1, 4] == 4 and n[3, 16] == 16 and math.isinf(n[1, 16])
    r = needed_contrast(exponents_needed(t), {"max_lag": 16}, {"max_lag": 4})
    # seed 0: 16 > 0 more; seed 1: inf > 4 more; seed 2: 4 > 0 more; seed 3: 16 = 16 tie
    assert (r["n"], r["n_more"], r["n_fewer"]) == (4, 3, 0)
    assert r["p"] == pytest.approx(1 / 8)  # P(Bin(3, 1/2) >= 3)
    assert r["median_a"] == 16.0 and r["median_b"] == 2.0
    assert needed_contrast(exponents_needed(t), {"max_lag": 4}, {"max_lag": 4})["p"] == 1.0  # all tied
    with pytest.raises(ValueError, match="no task matches"):
        needed_contrast(exponents_needed(t), {"max_lag": 8}, {"max_lag": 4})
    with pytest.raises(ValueError, match="more than one task"):
        needed_contrast(exponents_needed(t), {"order": 0}, {"max_lag": 4})
    with pytest.raises(ValueError, match="lacks columns"):
        exponents_needed(t.drop(columns="n_floss"))


def _complexity_table(n_seeds):
    # copy at lags 8, 16, 24 needs k = 0, 4, 16; the XOR at lag 16 needs 16; every seed alike
    need = {(0, 8): 0, (0, 16): 4, (0, 24): 16, (1, 16): 16}
    rows = [{"seed": s, "order": h, "max_lag": L, "n_floss": k, "success": k >= n, "final_accuracy": 1.0 if k >= n else 0.5}
            for s in range(n_seeds) for (h, L), n in need.items() for k in (0, 4, 16)]
    return pd.DataFrame(rows)


def test_complexity_claims_by_hand():
    # 7 seeds all in favour: every sign test p = 2^-7 = 0.0078 < 0.05 / 5, so Holm supports all five
    from floss_utils.flossing.summaries import complexity_claims

    c = complexity_claims(_complexity_table(7), orders=[0, 1], lag=16, lags=[8, 16, 24], threshold=0.95)
    assert set(c.tests) == {"gain_h0", "gain_h1", "lag_16_8", "lag_24_16", "order_1_0"}
    assert all(p == pytest.approx(2 ** -7) for p, _, _ in c.tests.values())
    assert all(c.supported.values()) and c.same_verdicts
    assert c.needed.set_index(["seed", "order", "max_lag"]).loc[(0, 0, 24), "needed"] == 16
    # 6 seeds: p = 1/64 = 0.0156 > 0.05 / 5: Holm supports none (its first step fails)
    assert not any(complexity_claims(_complexity_table(6), [0, 1], 16, [8, 16, 24], 0.95).supported.values())
    # the XOR at k = 16 touched 0.95 but ended at 0.5: read by the final accuracy it never succeeds,
    # so flossing no longer raises its rate (gain_h1 flips) and it needs more than any k tried
    t = _complexity_table(7)
    t.loc[(t.order == 1) & (t.n_floss == 16), "final_accuracy"] = 0.5
    c = complexity_claims(t, [0, 1], 16, [8, 16, 24], 0.95)
    assert c.supported["gain_h1"] and not c.supported_final["gain_h1"] and not c.same_verdicts
    assert c.supported_final["order_1_0"] and c.supported_final["lag_24_16"]
    with pytest.raises(ValueError, match="lacks columns"):
        complexity_claims(t.drop(columns="final_accuracy"), [0, 1], 16, [8, 16, 24], 0.95)


def test_exponent_contrast_by_hand():
    # ground truth: the per-seed log mean squares and their paired differences worked out by hand
    from floss_utils.common import paired_comparison
    from floss_utils.flossing import exponent_contrast

    # 2 records, members: seed 0 none x2 tasks, seed 0 pre x2, seed 1 none x2, seed 1 pre x2; k = 2
    sched = ["none", "none", "pre", "pre"] * 2
    seed = [0, 0, 0, 0, 1, 1, 1, 1]
    lam = torch.zeros(2, 8, 2, dtype=torch.float64)
    lam[1] = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.1, 0.1], [0.2, 0.0],
                           [3.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.1, 0.1]])
    pc = exponent_contrast(lam, sched, seed, "none", "pre", 1)
    # mean squares: seed 0 none 1, 2 -> mean log (0 + ln 2)/2; pre 0.01, 0.02 -> (ln .01 + ln .02)/2
    none = np.array([(0 + np.log(2)) / 2, (np.log(5) + 0) / 2])
    pre = np.array([(np.log(0.01) + np.log(0.02)) / 2, (np.log(0.25) + np.log(0.01)) / 2])
    ref = paired_comparison(none, pre)
    assert pc.n == 2 and pc.mean == pytest.approx(ref.mean) and pc.p_greater == ref.p_greater and pc.n_greater == 2
    assert exponent_contrast(lam, sched, seed, "none", "pre", -1).mean == pytest.approx(ref.mean)  # record -1 is 1
    with pytest.raises(ValueError, match="no seed"):
        exponent_contrast(lam, sched, seed, "none", "both", 1)
    with pytest.raises(ValueError, match="one schedule and seed per member"):
        exponent_contrast(lam, sched[:-1], seed, "none", "pre", 1)
    with pytest.raises(ValueError, match=r"members \[0, 1, 2, 3, 4, 5, 6, 7\] are not"):
        exponent_contrast(lam, sched, seed, "none", "pre", 0)  # record 0 is all zeros: no log


def test_arrival_by_hand():
    # ground truth: distances and the far/arrived sets read off by hand
    from floss_utils.flossing import arrival

    before = torch.tensor([0.05, 0.05, 0.05, -0.2])
    after = torch.tensor([-0.45, -0.2, 0.0, -0.95])
    target = torch.tensor([-0.5, -0.5, 0.0, -1.0])
    a = arrival(before, after, target, 0.1)
    assert a.far_start.tolist() == [True, True, False, True]  # 0.55, 0.55, 0.05, 0.8
    assert a.arrived.tolist() == [True, False, False, True]  # ends 0.05, 0.3, (began near), 0.05
    tab = a.by_target()
    assert tab.to_dict("list") == {"target": [-1.0, -0.5, 0.0], "members": [1, 2, 1], "started far": [1, 2, 0],
                                   "arrived": [1, 1, 0]}
    with pytest.raises(ValueError, match="tol"):
        arrival(before, after, target, 0.0)
    with pytest.raises(ValueError, match="one value per member"):
        arrival(before[:2], after, target, 0.1)
    with pytest.raises(ValueError, match="finite"):
        arrival(before, after * float("nan"), target, 0.1)


def test_claims_table_from_schedule_claims_and_from_a_record(tmp_path):
    # ground truth: the rows read off schedule_claims' own fields by hand, in the fixed order; a record's JSON
    # round trip (contrasts as a table, the rest as dicts) gives the same table
    import json

    from floss_utils.flossing import claims_table, schedule_claims

    rows = []
    for s in range(8):
        for sch in ("none", "pre", "inter", "both"):
            for d in (5, 10):
                ok = sch != "none" and not (sch == "pre" and d == 10)
                rows.append({"seed": s, "family": "xor", "delay": d, "schedule": sch, "success": ok,
                             "success_epoch": (20 if sch == "pre" else 30) if ok else -1})
    gf = schedule_claims(pd.DataFrame(rows), alpha=0.05)
    tab = claims_table(gf.contrasts, gf.further, gf.speed, gf.supported)
    assert list(tab.test) == ["pre_none", "inter_none", "both_none", "further", "speed"]
    pre = tab.set_index("test").loc["pre_none"]
    assert (pre.rate_a, pre.rate_b, pre.seeds_for, pre.seeds_against) == (0.5, 0.0, 8, 0)
    assert pre.p == pytest.approx(2.0 ** -8) and bool(pre.supported)
    far = tab.set_index("test").loc["further"]
    assert (far.seeds_for, far.seeds_against) == (8, 0)  # both bridges delay 10, pre only 5
    sp = tab.set_index("test").loc["speed"]
    assert (sp.seeds_for, sp.seeds_against, sp.p) == (0, 0, 1.0) and not sp.supported  # none never succeeds
    assert not sp.decidable and sp.verdict == "not tested (no untied seed)" and pre.verdict == "supported"
    assert bool(pre.decidable)  # 2^-8 <= 0.05 / 5
    few = claims_table(gf.contrasts.assign(seeds_for=3), gf.further, gf.speed, gf.supported | {"pre_none": False})
    # 0.125 would rank fourth beside inter, both and the further horizon (2^-8 each): Holm's threshold 0.05 / 2
    assert few.verdict[0] == "not decidable (3 untied seeds: p cannot go below 2^-3 = 0.125, above Holm's threshold 0.025 at its rank)"
    # decidability at the test's own Holm rank: pre, inter, both pass (2^-8), speed has p = 1, so the further
    # horizon at its best would rank fourth, threshold 0.05 / 2. 6 untied seeds (2^-6 = 0.016) reach it: a 5-1
    # outcome is "not supported" (Holm's first threshold 0.01 would have called it not decidable); 5 untied seeds
    # (2^-5 = 0.031) do not
    for n_for, n_against, verdict in ((5, 1, "not supported"), (4, 1, "not decidable (5 untied seeds: p cannot go below 2^-5 = 0.0312, above Holm's threshold 0.025 at its rank)")):
        far_t = claims_table(gf.contrasts, dict(gf.further, seeds_longer=n_for, seeds_shorter=n_against, p=0.2), gf.speed,
                             gf.supported | {"further": False}).set_index("test").loc["further"]
        assert far_t.verdict == verdict
    # the other way to be out of reach: 2^-6 = 0.0156 would meet its own rank's threshold (third: 0.05 / 3), but
    # Holm stops at the first-ranked p 0.011 > 0.05 / 5
    ps = {"pre": 0.011, "inter": 0.012, "both": 0.3}
    stuck = claims_table(gf.contrasts.assign(p=[ps[a] for a in gf.contrasts.a]),
                         dict(gf.further, seeds_longer=6, seeds_shorter=0, p=0.5), dict(gf.speed, p=1.0),
                         {k: False for k in gf.supported}).set_index("test")
    assert stuck.loc["further"].verdict == ("not decidable (6 untied seeds: p cannot go below 2^-6 = 0.0156, "
                                            "and Holm stops at a test ranked before it)")
    back = json.loads(json.dumps({"c": gf.contrasts.to_dict("list"), "f": gf.further, "s": gf.speed, "h": gf.supported}))
    again = claims_table(pd.DataFrame(back["c"]), back["f"], back["s"], back["h"])
    pd.testing.assert_frame_equal(tab, again)
    # and through a record's CSV (what chapter 10 reads back)
    from floss_utils.book.records import read_record, write_record

    write_record("claims_roundtrip", description="test", command="none", parameters={}, stopwatch=None,
                 results={"f": gf.further, "s": gf.speed, "h": gf.supported}, tables={"contrasts": gf.contrasts},
                 root=tmp_path)
    rec = read_record("claims_roundtrip", root=tmp_path)
    pd.testing.assert_frame_equal(tab, claims_table(rec.table("contrasts"), rec.results["f"], rec.results["s"],
                                                    rec.results["h"]))
    with pytest.raises(ValueError, match="missing"):
        claims_table(gf.contrasts, gf.further, gf.speed, {k: v for k, v in gf.supported.items() if k != "speed"})


def test_describe_claims_reads_each_row_in_words():
    from floss_utils.flossing import describe_claims

    tab = pd.DataFrame([
        {"test": "pre_none", "rate_a": 0.8, "rate_b": 0.5, "seeds_for": 4, "seeds_against": 0, "p": 0.0625,
         "verdict": "not supported"},
        {"test": "further", "rate_a": float("nan"), "rate_b": float("nan"), "seeds_for": 2, "seeds_against": 1,
         "p": 0.5, "verdict": "not supported"}])
    assert describe_claims(tab) == ("pre vs none (success): not supported (success rates 0.80 against 0.50, seeds 4 for, "
                                    "0 against, p = 0.062); both vs pre (further horizon): not supported (seeds 2 for, "
                                    "1 against, p = 0.5)")


def test_lowered_by_network_averages_members_per_network_and_flips_signs_over_networks():
    from floss_utils.flossing.summaries import lowered_by_network

    # 3 networks, 2 members each (two targets): per-network drops 0.3, 0.02 and -0.01 (a stall ending above)
    before = torch.tensor([0.1, 0.1, 0.06, 0.06, 0.08, 0.08])
    after = torch.tensor([-0.2, -0.2, 0.05, 0.03, 0.09, 0.09])
    pc = lowered_by_network(before, after, [0, 0, 1, 1, 2, 2])
    assert pc.n == 3 and pc.n_greater == 2 and pc.mean == pytest.approx((0.3 + 0.02 - 0.01) / 3)
    # sign-flip by hand: the 8 patterns of |d| = (0.3, 0.02, 0.01); means >= observed: (+,+,-) and (+,+,+)
    assert pc.p_greater == pytest.approx(2 / 8) and pc.p_min == pytest.approx(1 / 8)
    # the unit is the network: member order does not matter
    perm = [5, 0, 3, 1, 4, 2]
    again = lowered_by_network(before[perm], after[perm], np.array([0, 0, 1, 1, 2, 2])[perm])
    assert again.p_greater == pc.p_greater and again.mean == pytest.approx(pc.mean)
    with pytest.raises(ValueError, match="no members"):
        lowered_by_network(torch.tensor([]), torch.tensor([]), [])
