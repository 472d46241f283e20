"""Tidy summaries of flossing-schedule experiments (chapters 10 and 11).

From a :class:`~floss_utils.flossing.trainer.TrainResult` of an ensemble (members = seeds x
schedules x tasks):

* :func:`member_table`: one row per member (task family, order, delay, schedule, seed, whether
  and when it succeeded, its final held-out accuracy);
* :func:`success_summary`: success rate, median epochs-to-success and mean final accuracy per
  condition;
* :func:`longest_bridged`: for every schedule, the longest delay whose success rate reaches a
  given level (the horizon the schedule lets BPTT bridge within the training budget);
* :func:`schedule_contrasts`: one schedule against another over the same (seed, task) pairs:
  both success rates with Wilson intervals and an exact one-sided paired test (McNemar's, on the
  pairs where the outcomes differ);
* :func:`paired_speedup`: where both schedules succeed, how much sooner one does, with an exact
  one-sided sign test;
* :func:`horizon_contrast`: whether one schedule bridges longer delays than another, seed by seed;
* :func:`schedule_claims`: GF's three schedule claims, each decided once (chapter 10, records);
* :func:`exponents_needed` and :func:`needed_contrast`: per seed, the fewest flossed exponents
  with which a task is learned, and whether one task needs more than another (chapter 11);
* :func:`exponent_contrast`: whether one schedule's exponents are closer to 0 than another's at a
  record of training, paired by seed (chapter 10);
* :func:`arrival`: which flossed networks started far from their target exponent and arrived
  near it (chapter 8);
* :func:`claims_table`: GF's five schedule tests in one row each (to set a run beside a record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..common import PairedComparison, bootstrap_interval, cluster_signs, holm_reachable, holm_threshold, paired_comparison, sign_test_greater
from .trainer import TrainResult

__all__ = ["member_table", "success_summary", "longest_bridged", "schedule_contrasts", "ScheduleClaims", "schedule_claims", "paired_speedup", "horizon_contrast", "exponents_needed", "needed_contrast", "ComplexityClaims", "complexity_claims", "accuracy_curves", "exponent_contrast", "Arrival", "arrival", "lowered_by_network", "claims_table", "CLAIM_LABELS", "describe_claims"]


def member_table(result: TrainResult, window: int = 3, **extra: Sequence) -> pd.DataFrame:
    """One row per member.

    Args:
        result: an ensemble run.
        window: the final accuracy is the mean of the last ``window`` held-out evaluations.
        extra: additional per-member columns (e.g. ``arch=[...]``), each of length M.
    Columns: family ("copy"/"xor"), order, delay, max_lag, schedule, seed, success (bool),
    success_epoch (NaN if never), final_accuracy, diverged (bool), plus ``extra``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    M = len(result.members)
    acc = result.accuracy
    final = []
    for m in range(M):
        a = acc[:, m]
        a = a[torch.isfinite(a)]
        final.append(float(a[-window:].mean()) if a.numel() else float("nan"))
    se = result.success_epoch.to(torch.float64)
    rows = {
        "family": ["copy" if mb.task.order == 0 else "xor" for mb in result.members],
        "order": [mb.task.order for mb in result.members],
        "delay": [mb.task.delay for mb in result.members],
        "max_lag": [mb.task.first_scored for mb in result.members],
        "schedule": [mb.schedule.name for mb in result.members],
        "seed": [mb.net_seed for mb in result.members],
        "success": (result.success_epoch >= 0).tolist(),
        "success_epoch": torch.where(se >= 0, se, torch.full_like(se, float("nan"))).tolist(),
        "final_accuracy": final,
        "diverged": (result.diverged_epoch >= 0).tolist(),
    }
    for name, values in extra.items():
        if len(values) != M:
            raise ValueError(f"extra column {name!r} has {len(values)} entries for {M} members")
        rows[name] = list(values)
    return pd.DataFrame(rows)


def success_summary(table: pd.DataFrame, by: Sequence[str] = ("family", "delay", "schedule"),
                    level: float | None = None) -> pd.DataFrame:
    """Per condition: n (members), success_rate (with its Wilson interval at ``level``, columns
    rate_lo and rate_hi, when ``level`` is given), median_epochs (among successes; NaN if none),
    mean_final_accuracy."""
    from ..common import wilson_interval

    g = table.groupby(list(by), sort=True)
    out = g.agg(n=("success", "size"), success_rate=("success", "mean"),
                median_epochs=("success_epoch", "median"), mean_final_accuracy=("final_accuracy", "mean"))
    if level is not None:
        lo, hi = wilson_interval(np.round(out["success_rate"] * out["n"]).astype(int), out["n"], level)
        out.insert(2, "rate_lo", lo)
        out.insert(3, "rate_hi", hi)
    return out.reset_index()


def longest_bridged(summary: pd.DataFrame, min_rate: float = 0.5,
                    by: Sequence[str] = ("family", "schedule")) -> pd.DataFrame:
    """The longest delay with ``success_rate >= min_rate`` per group (0 if none), from
    :func:`success_summary` output."""
    if not 0 < min_rate <= 1:
        raise ValueError(f"min_rate must lie in (0, 1], got {min_rate}")
    rows = []
    for key, grp in summary.groupby(list(by), sort=True):
        ok = grp.loc[grp["success_rate"] >= min_rate, "delay"]
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "longest_delay": int(ok.max()) if len(ok) else 0})
    return pd.DataFrame(rows)


def schedule_contrasts(table: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                       keys: Sequence[str] = ("seed", "family", "delay"), level: float = 0.95,
                       cluster: str = "seed") -> pd.DataFrame:
    """Does schedule ``a`` succeed more often than schedule ``b``? One row per pair ``(a, b)``.

    The members of the two schedules are matched on ``keys`` (the same network seed on the same
    task: the design of chapter 10's ensembles), so the test is paired: of the matched pairs,
    ``n10`` succeed under ``a`` only and ``n01`` under ``b`` only; under the null hypothesis of
    equal rates each of these discordant pairs goes either way with probability 1/2, and the
    one-sided exact p-value is ``P(Binomial(n10 + n01, 1/2) >= n10)`` (McNemar's exact test,
    one-sided; 1 when no pair is discordant): ``p_pairs``. The pairs of one ``cluster`` (a network
    seed: its tasks share the initial network and the input bits) are not independent, so the
    deciding ``p`` is the exact one-sided sign test over clusters: ``seeds_for`` clusters with more
    pairs favouring ``a`` than ``b``, ``seeds_against`` the reverse (ties count for neither),
    ``p = P(Binomial(seeds_for + seeds_against, 1/2) >= seeds_for)``.

    Args:
        table: :func:`member_table` output (columns ``schedule``, ``success`` and ``keys``).
        pairs: ``(a, b)`` schedule names, ``a`` the one claimed better.
        keys: the columns that identify a matched pair.
        level: confidence of the Wilson intervals of both rates and of the difference's interval.
        cluster: the independent unit (a column of ``keys``).
    Returns:
        Columns ``a, b, n_pairs, rate_a, rate_a_lo, rate_a_hi, rate_b, rate_b_lo, rate_b_hi, diff,
        diff_lo, diff_hi, n10, n01, p_pairs, seeds_for, seeds_against, p`` (rates over the matched
        pairs; ``diff = rate_a - rate_b`` with its interval over clusters, the paired design's
        interval: unlike two Wilson intervals side by side it uses that both schedules ran on the
        same networks: the ratio estimator's variance over clusters with Student's t at G - 1
        degrees of freedom for G clusters, the t interval of the cluster means when clusters are
        of equal size; approximate, and (diff, diff) when no pair is discordant).
    """
    from ..common import wilson_interval

    missing = [c for c in ("schedule", "success", *keys) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    if cluster not in keys:
        raise ValueError(f"cluster {cluster!r} must be one of the keys {list(keys)}")
    known = set(table["schedule"])
    rows = []
    for a, b in pairs:
        if a not in known or b not in known:
            raise ValueError(f"schedules {a!r} and {b!r} must both be in the table (it has {sorted(known)})")
        ta = table[table.schedule == a].set_index(list(keys))["success"]
        tb = table[table.schedule == b].set_index(list(keys))["success"]
        if ta.index.has_duplicates or tb.index.has_duplicates:
            raise ValueError(f"keys {list(keys)} do not identify one member per schedule")
        common = ta.index.intersection(tb.index)
        if len(common) == 0:
            raise ValueError(f"no (seed, task) pair is run under both {a!r} and {b!r}")
        x, y = ta.loc[common].to_numpy(bool), tb.loc[common].to_numpy(bool)
        n10, n01 = int((x & ~y).sum()), int((~x & y).sum())
        p = sign_test_greater(n10, n01)
        # the tasks of one seed share its network and inputs: the seed is the independent unit
        s_for, s_against = cluster_signs(pd.Series(x.astype(int) - y.astype(int), index=common), cluster)
        p_seed = sign_test_greater(s_for, s_against)
        (alo, ahi), (blo, bhi) = (wilson_interval(int(v.sum()), len(v), level) for v in (x, y))
        dlo, dhi = _cluster_difference_interval(pd.Series(x.astype(int) - y.astype(int), index=common), cluster, level)
        rows.append({"a": a, "b": b, "n_pairs": len(common), "rate_a": x.mean(), "rate_a_lo": float(alo),
                     "rate_a_hi": float(ahi), "rate_b": y.mean(), "rate_b_lo": float(blo), "rate_b_hi": float(bhi),
                     "diff": x.mean() - y.mean(), "diff_lo": dlo, "diff_hi": dhi,
                     "n10": n10, "n01": n01, "p_pairs": p, "seeds_for": s_for, "seeds_against": s_against,
                     "p": p_seed})
    return pd.DataFrame(rows)


def _cluster_difference_interval(d: pd.Series, cluster: str, level: float) -> tuple[float, float]:
    """Interval of the difference of rates ``sum(d) / len(d)`` (d: per-pair differences in
    {-1, 0, 1}, indexed by keys that include ``cluster``) with clusters as the independent units:
    the ratio estimator's linearized variance ``G / (G - 1) * sum_g (s_g - r n_g)^2 / n^2`` (s_g,
    n_g: a cluster's sum and size, r the estimate, n the pairs, G the clusters) and Student's t
    with G - 1 degrees of freedom. With equal cluster sizes this is the t interval of the cluster
    means. Approximate (a normal-theory interval for a bounded quantity); (r, r) with fewer than
    two clusters or when every cluster has the same rate."""
    from scipy.stats import t as student_t

    from ..common import _z

    _z(level)  # validates level
    g = d.groupby(level=cluster)
    sums, sizes = g.sum().to_numpy(float), g.size().to_numpy(float)
    G, n = len(sums), sizes.sum()
    r = sums.sum() / n
    if G < 2:
        return float(r), float(r)
    se = np.sqrt(G / (G - 1) * ((sums - r * sizes) ** 2).sum()) / n
    half = float(student_t.ppf((1 + level) / 2, G - 1) * se)
    return float(r - half), float(r + half)


@dataclass(frozen=True)
class ScheduleClaims:
    """GF's claims about flossing schedules, each tested once on one ensemble (chapter 10 and the
    paper-configuration record): see :func:`schedule_claims`.

    Attributes:
        contrasts: :func:`schedule_contrasts` of pre, inter and both against none, with a column
            ``supported`` (Holm's decision, below).
        further: :func:`horizon_contrast` of both against pre (the further horizon).
        speed: :func:`paired_speedup` of pre against none.
        speed_tasks: the (family, delay) tasks of the pairs ``speed`` counts (both succeed).
        epochs_saved: median over those pairs of none's minus pre's epochs to success (NaN: none).
        supported: test name (``pre_none``, ``inter_none``, ``both_none``, ``further``, ``speed``)
            -> supported at family-wise ``alpha`` (Holm's step-down over the five seed-level p-values).
        alpha: the family-wise level.
    """

    contrasts: pd.DataFrame
    further: dict
    speed: dict
    speed_tasks: list
    epochs_saved: float
    supported: dict
    alpha: float

    def verdict(self, name: str) -> str:
        """The verdict of the test ``name`` (a key of ``supported``) as :func:`claims_table` gives it:
        "supported", "not supported", "not decidable (...)" when its untied seeds could not have reached
        the threshold Holm applies at its rank (:func:`~floss_utils.common.holm_reachable`), or
        "not tested (...)"."""
        if name not in self.supported:
            raise ValueError(f"no test {name!r}; known: {sorted(self.supported)}")
        table = claims_table(self.contrasts, self.further, self.speed, self.supported, self.alpha)
        return str(table.set_index("test").loc[name, "verdict"])


def schedule_claims(table: pd.DataFrame, alpha: float = 0.05) -> ScheduleClaims:
    """GF's three schedule claims on a :func:`member_table` of schedules none, pre, inter and both
    run on the same (seed, task) pairs: flossing before training raises the success rate (pre vs
    none) and speeds convergence (pre vs none where both succeed), flossing during training raises
    it (inter, both vs none) and bridges a further horizon than flossing before training alone
    (both vs pre). Each is an exact one-sided sign test over seeds; the five are decided together
    at family-wise ``alpha`` by Holm's step-down procedure (:func:`floss_utils.common.holm`)."""
    from ..common import holm

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    contrasts = schedule_contrasts(table, [("pre", "none"), ("inter", "none"), ("both", "none")])
    further, speed = horizon_contrast(table, "both", "pre"), paired_speedup(table, "pre", "none")
    pvals = {f"{r.a}_{r.b}": float(r.p) for r in contrasts.itertuples()} | {"further": further["p"], "speed": speed["p"]}
    supported = holm(pvals, alpha)
    contrasts["supported"] = [supported[f"{a}_{b}"] for a, b in zip(contrasts.a, contrasts.b)]
    keys = ["seed", "family", "delay"]
    ok = table[table.success & table.schedule.isin(["pre", "none"])]
    ep = ok.pivot_table(index=keys, columns="schedule", values="success_epoch")
    both = ep.dropna() if {"pre", "none"} <= set(ep.columns) else ep.iloc[:0]
    saved = (both["none"] - both["pre"]) if len(both) else pd.Series(dtype=float)
    tasks = sorted({(f, int(d)) for _, f, d in both.index})
    return ScheduleClaims(contrasts=contrasts, further=further, speed=speed, speed_tasks=tasks,
                          epochs_saved=float(saved.median()) if len(saved) else float("nan"),
                          supported=supported, alpha=alpha)


def horizon_contrast(table: pd.DataFrame, a: str, b: str, by: Sequence[str] = ("seed", "family"),
                     cluster: str = "seed") -> dict[str, float]:
    """Does schedule ``a`` bridge a longer delay than ``b``? For every group of ``by`` (a network seed
    on one task family), the longest delay at which the member succeeded (0: none) under each
    schedule; ``n_longer`` groups where ``a``'s is longer, ``n_shorter`` the reverse (ties count for
    neither), with the pair-level sign test ``p_pairs``. The groups of one ``cluster`` (seed) share
    a network, so the deciding ``p`` is the exact one-sided sign test over clusters:
    ``seeds_longer`` clusters with more groups longer under ``a`` than shorter, ``seeds_shorter``
    the reverse, ``p = P(Binomial(seeds_longer + seeds_shorter, 1/2) >= seeds_longer)`` (1 without
    an untied cluster). The size: ``mean_diff``, the mean over clusters of each cluster's mean
    difference of longest delays (``a`` minus ``b``, in steps), with its 95 % percentile bootstrap
    interval over clusters ``diff_lo``, ``diff_hi`` (with few clusters, say fewer than ten, a
    percentile bootstrap interval is too narrow: read it as descriptive). Uses every delay run, no
    subset chosen from the outcomes."""
    missing = [c for c in ("schedule", "success", "delay", *by) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    if cluster not in by:
        raise ValueError(f"cluster {cluster!r} must be one of {list(by)}")

    def longest(name: str) -> pd.Series:
        t = table[table.schedule == name]
        if not len(t):
            raise ValueError(f"schedule {name!r} is not in the table")
        return t.assign(bridged=np.where(t.success, t.delay, 0)).groupby(list(by))["bridged"].max()

    la, lb = longest(a), longest(b)
    common = la.index.intersection(lb.index)
    da, db = la.loc[common].to_numpy(), lb.loc[common].to_numpy()
    longer, shorter = int((da > db).sum()), int((da < db).sum())
    p_pairs = sign_test_greater(longer, shorter)
    s_longer, s_shorter = cluster_signs(pd.Series(np.sign(da - db), index=common), cluster)
    p = sign_test_greater(s_longer, s_shorter)
    # the size: per cluster, the mean over its groups of (a's longest delay - b's), then the mean over clusters with a
    # 95 % percentile bootstrap interval over clusters
    per_cluster = pd.Series((da - db).astype(float), index=common).groupby(level=cluster).mean()
    lo, hi = bootstrap_interval(per_cluster.to_numpy(), level=0.95) if len(per_cluster) else (float("nan"),) * 2
    return {"n": len(common), "n_longer": longer, "n_shorter": shorter, "p_pairs": p_pairs,
            "seeds_longer": s_longer, "seeds_shorter": s_shorter, "p": p,
            "mean_diff": float(per_cluster.mean()) if len(per_cluster) else float("nan"), "diff_lo": lo, "diff_hi": hi}


def paired_speedup(table: pd.DataFrame, a: str, b: str,
                   keys: Sequence[str] = ("seed", "family", "delay"), cluster: str = "seed") -> dict[str, float]:
    """Does schedule ``a`` succeed sooner than ``b``? Over the (seed, task) pairs where both succeed:
    ``n`` pairs, ``n_sooner`` where ``a`` needs fewer epochs (ties count for neither), the median of
    ``epochs_b / epochs_a``, and the exact one-sided sign test ``p_pairs = P(Binomial(n_untied, 1/2)
    >= n_sooner)`` (1 when every pair is tied or there is none; ``median_ratio`` NaN when ``n = 0``).
    The pairs of one ``cluster`` (seed) share a network, so the deciding ``p`` is the same sign test
    over seeds (``seeds_sooner``: seeds with more pairs sooner under ``a`` than later).
    """
    missing = [c for c in ("schedule", "success", "success_epoch", *keys) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    ea = table[(table.schedule == a) & table.success].set_index(list(keys))["success_epoch"]
    eb = table[(table.schedule == b) & table.success].set_index(list(keys))["success_epoch"]
    if ea.index.has_duplicates or eb.index.has_duplicates:
        raise ValueError(f"keys {list(keys)} do not identify one member per schedule")
    common = ea.index.intersection(eb.index)
    xa, xb = ea.loc[common].to_numpy(float), eb.loc[common].to_numpy(float)
    sooner, later = int((xa < xb).sum()), int((xa > xb).sum())
    p_pairs = sign_test_greater(sooner, later)
    # the seed is the independent unit (its tasks share the network and inputs): sign test over seeds
    s_sooner, s_later = cluster_signs(pd.Series(np.sign(xb - xa), index=common), cluster)
    p = sign_test_greater(s_sooner, s_later)
    return {"n": len(common), "n_sooner": sooner, "n_later": later,
            "median_ratio": float(np.median(xb / xa)) if len(common) else float("nan"), "p_pairs": p_pairs,
            "seeds_sooner": s_sooner, "seeds_later": s_later, "p": p}


def exponents_needed(table: pd.DataFrame, by: Sequence[str] = ("order", "max_lag"),
                     count: str = "n_floss", cluster: str = "seed") -> pd.DataFrame:
    """Per network seed and task (``by``): the fewest flossed exponents (column ``count``, 0 = no
    flossing) with which that seed's network succeeded, ``inf`` where it succeeded at no count
    tried. Members of one seed share their initial network and data across counts and tasks, so
    these numbers can be compared seed by seed (:func:`needed_contrast`).

    Returns:
        Columns ``cluster, *by, needed, most_tried``.
    """
    missing = [c for c in (cluster, count, "success", *by) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    rows = []
    for key, grp in table.groupby([cluster, *by], sort=True):
        ok = grp.loc[grp["success"].astype(bool), count]
        rows.append({**dict(zip([cluster, *by], key)), "needed": float(ok.min()) if len(ok) else float("inf"),
                     "most_tried": int(grp[count].max())})
    return pd.DataFrame(rows)


def needed_contrast(needed: pd.DataFrame, a: dict, b: dict, cluster: str = "seed") -> dict[str, float]:
    """Does task ``a`` need more flossed exponents than task ``b``? ``a`` and ``b`` select one task
    each from :func:`exponents_needed` output (e.g. ``{"order": 0, "max_lag": 24}``); per seed run
    on both, ``n_more`` seeds need more under ``a`` (a seed that succeeds at no count tried needs
    more than any that does; two such seeds tie), ``n_fewer`` fewer, ties count for neither, and the
    exact one-sided sign test ``p = P(Binomial(n_more + n_fewer, 1/2) >= n_more)`` (1 without an
    untied seed); ``median_a``, ``median_b``: the medians over those seeds (``inf`` possible)."""
    def pick(sel: dict) -> pd.Series:
        missing = [c for c in sel if c not in needed.columns]
        if missing:
            raise ValueError(f"needed lacks columns {missing}")
        m = np.logical_and.reduce([needed[c] == v for c, v in sel.items()]) if sel else np.ones(len(needed), bool)
        out = needed[m].set_index(cluster)["needed"]
        if not len(out):
            raise ValueError(f"no task matches {sel}")
        if out.index.has_duplicates:
            raise ValueError(f"{sel} selects more than one task per {cluster}")
        return out

    xa, xb = pick(a), pick(b)
    common = xa.index.intersection(xb.index)
    va, vb = xa.loc[common].to_numpy(float), xb.loc[common].to_numpy(float)
    more, fewer = int((va > vb).sum()), int((va < vb).sum())
    p = sign_test_greater(more, fewer)
    med = lambda v: float(np.median(v)) if len(v) else float("nan")
    return {"n": len(common), "n_more": more, "n_fewer": fewer, "p": p, "median_a": med(va), "median_b": med(vb)}


@dataclass(frozen=True)
class ComplexityClaims:
    """The temporal-complexity claims of chapter 11, each an exact one-sided sign test over seeds,
    decided together by Holm's step-down: see :func:`complexity_claims`.

    Attributes:
        tests: name -> ``(p, claim, detail)``; names ``gain_h{h}`` (flossing the most exponents
            raises order ``h``'s success rate at the largest lag), ``lag_{a}_{b}`` (the copy at lag
            ``a`` needs more flossed exponents than at the next shorter lag ``b``), ``order_1_0``
            (at the largest lag the XOR needs more than the copy).
        supported: name -> supported at family-wise ``alpha``.
        supported_final: the same decisions with success read as the final held-out accuracy
            reaching the threshold (a member that touched it once and fell back does not count).
        needed: :func:`exponents_needed` of the table (success as recorded).
        alpha: the family-wise level.
    """

    tests: dict
    supported: dict
    supported_final: dict
    needed: pd.DataFrame
    alpha: float

    @property
    def same_verdicts(self) -> bool:
        """Every test decided alike under both readings of success."""
        return all(self.supported_final[n] == self.supported[n] for n in self.tests)


def _complexity_tests(table: pd.DataFrame, needed: pd.DataFrame, orders: Sequence[int], lag: int,
                      lags: Sequence[int]) -> dict:
    tests = {}
    ks = set(int(k) for k in table["n_floss"])
    kmax = max(ks)
    # GF's claim at the longest lag (orders h <= 1): flossing kmax exponents before training raises
    # the success rate, the same network and data with k = kmax and k = 0
    for h in [h for h in orders if h <= 1] if 0 in ks else []:
        sub = table[(table.order == h) & (table.max_lag == lag) & table.n_floss.isin([0, kmax])]
        r = schedule_contrasts(sub.assign(schedule=np.where(sub.n_floss == 0, "none", "floss")), [("floss", "none")],
                               keys=("seed",)).iloc[0]  # one task: a seed is one pair
        tests[f"gain_h{h}"] = (float(r.p), f"order {h} at largest lag {lag}: flossing {kmax} exponents before training "
                               "raises the success rate", f"{r.rate_a:.2f} vs {r.rate_b:.2f}, seeds {r.seeds_for} vs {r.seeds_against}")
    # a longer lag needs more flossed exponents, at every step of the lag grid (the copy)
    lags = sorted(lags)
    for a, b in zip(lags[1:], lags[:-1]):
        r = needed_contrast(needed, {"order": 0, "max_lag": a}, {"order": 0, "max_lag": b})
        tests[f"lag_{a}_{b}"] = (r["p"], f"the copy at lag {a} needs more flossed exponents than at lag {b}",
                                 f"{r['n_more']} seeds more, {r['n_fewer']} fewer")
    # the order at a fixed largest lag (the same bits to hold): the XOR needs more than the copy
    if 1 in orders and 0 in orders:
        r = needed_contrast(needed, {"order": 1, "max_lag": lag}, {"order": 0, "max_lag": lag})
        tests["order_1_0"] = (r["p"], f"at largest lag {lag}, the XOR needs more flossed exponents than the copy",
                              f"{r['n_more']} seeds more, {r['n_fewer']} fewer")
    return tests


def complexity_claims(table: pd.DataFrame, orders: Sequence[int], lag: int, lags: Sequence[int],
                      threshold: float, alpha: float = 0.05) -> ComplexityClaims:
    """Chapter 11's claims on a :func:`member_table` (columns ``seed, order, max_lag, n_floss,
    success, final_accuracy``) of the same seeds run at every (task, k): flossing the most
    exponents tried raises the success rate of the copy and the XOR at the largest lag ``lag``
    (GF's claim; needs k = 0 in the table), the copy needs more flossed exponents at each lag of
    ``lags`` than at the next shorter one, and the XOR more than the copy at ``lag``. Each is an
    exact one-sided sign test over seeds (:func:`schedule_contrasts`, :func:`needed_contrast`),
    the family decided at ``alpha`` by Holm's step-down (:func:`floss_utils.common.holm`); the
    same tests are redone with success read as ``final_accuracy >= threshold``."""
    from ..common import holm

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    missing = [c for c in ("seed", "order", "max_lag", "n_floss", "success", "final_accuracy") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    needed = exponents_needed(table)
    tests = _complexity_tests(table, needed, orders, lag, lags)
    final = table.assign(success=table.final_accuracy >= threshold)
    tests_final = _complexity_tests(final, exponents_needed(final), orders, lag, lags)
    return ComplexityClaims(tests=tests, supported=holm({n: p for n, (p, _, _) in tests.items()}, alpha),
                            supported_final=holm({n: p for n, (p, _, _) in tests_final.items()}, alpha),
                            needed=needed, alpha=alpha)


def accuracy_curves(result: TrainResult) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated epochs (E',) and the held-out accuracy there (E', M) (rows without any
    evaluation dropped)."""
    acc = result.accuracy
    keep = torch.isfinite(acc).any(1)
    return result.epochs[keep].numpy(), acc[keep].numpy()


def exponent_contrast(exponents: torch.Tensor, schedule_of: Sequence[str], seed_of: Sequence[int], a: str, b: str,
                      record: int) -> PairedComparison:
    """Are schedule ``b``'s exponents closer to 0 than schedule ``a``'s at one record of training?

    Per seed, the log of each member's mean squared exponent ``mean_i lambda_i^2`` at ``record``,
    averaged over the seed's members of the schedule (its tasks: they share the seed's network and
    input bits, so the seed is the independent unit); then ``a`` minus ``b`` paired by seed
    (:func:`~floss_utils.common.paired_comparison`: ``mean > 0`` means ``b``'s are the smaller,
    geometric mean over seeds; one-sided sign-flip test, exact up to 20 seeds, Monte Carlo beyond).

    Args:
        exponents: ``(records, M, k)`` the exponents recorded during training (``TrainResult.exponents``).
        schedule_of, seed_of: ``(M,)`` each member's schedule name and network seed.
        a, b: the schedules compared; record: the record's index (negative counts from the end).
    """
    sched, seed = np.asarray(schedule_of), np.asarray(seed_of)
    if exponents.ndim != 3 or sched.shape != (exponents.shape[1],) or seed.shape != sched.shape:
        raise ValueError(f"need exponents (records, M, k) and one schedule and seed per member, got "
                         f"{tuple(exponents.shape)}, {sched.shape}, {seed.shape}")
    msq = (exponents[record] ** 2).mean(-1).double().cpu().numpy()  # (M,)
    if not (np.isfinite(msq).all() and (msq > 0).all()):
        raise ValueError(f"record {record}: every member's mean squared exponent must be finite and > 0 (its log is "
                         f"compared); members {np.flatnonzero(~(np.isfinite(msq) & (msq > 0))).tolist()} are not")
    seeds = [s for s in dict.fromkeys(seed.tolist()) if ((sched == a) & (seed == s)).any() and ((sched == b) & (seed == s)).any()]
    if not seeds:
        raise ValueError(f"no seed has members of both schedules {a!r} and {b!r}")

    def per_seed(name: str) -> np.ndarray:
        return np.array([np.log(msq[(sched == name) & (seed == s)]).mean() for s in seeds])

    return paired_comparison(per_seed(a), per_seed(b))


@dataclass(frozen=True)
class Arrival:
    """Of networks flossed toward targets, which started far and which arrived (see :func:`arrival`).

    Attributes:
        before, after: ``(M,)`` distance ``|lambda - target|`` before and after flossing.
        far_start: ``(M,)`` started at least ``tol`` from the target.
        arrived: ``(M,)`` started far and ended within ``tol`` (one that began within ``tol`` does
            not count as arriving).
        tol: the arrival tolerance.
        targets: ``(M,)`` each member's target.
    """

    before: torch.Tensor
    after: torch.Tensor
    far_start: torch.Tensor
    arrived: torch.Tensor
    tol: float
    targets: torch.Tensor

    def by_target(self) -> pd.DataFrame:
        """Per target: members, how many started far, how many of those arrived."""
        t = self.targets
        rows = [{"target": float(v), "members": int((t == v).sum()), "started far": int(self.far_start[t == v].sum()),
                 "arrived": int(self.arrived[t == v].sum())} for v in torch.unique(t).tolist()]
        return pd.DataFrame(rows)


def arrival(lambda_before: torch.Tensor, lambda_after: torch.Tensor, targets: torch.Tensor, tol: float) -> Arrival:
    """Which networks flossed toward ``targets`` started at least ``tol`` away and ended within it.

    Args:
        lambda_before, lambda_after, targets: ``(M,)`` the exponent (e.g. ``lambda_1``) before and
            after flossing and each member's target.
        tol: > 0, the arrival tolerance.
    """
    b, a, t = (torch.as_tensor(x).reshape(-1).double().cpu() for x in (lambda_before, lambda_after, targets))
    if not (b.shape == a.shape == t.shape):
        raise ValueError(f"need one value per member in each, got {tuple(b.shape)}, {tuple(a.shape)}, {tuple(t.shape)}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if not bool(torch.isfinite(torch.stack([b, a, t])).all()):
        raise ValueError("lambda_before, lambda_after and targets must be finite (a diverged member has no distance)")
    before, after = (b - t).abs(), (a - t).abs()
    far = before >= tol
    return Arrival(before=before, after=after, far_start=far, arrived=far & (after < tol), tol=float(tol), targets=t)


def lowered_by_network(lambda_before, lambda_after, networks) -> PairedComparison:
    """Whether flossing lowered an exponent, network by network: each network's mean of
    ``lambda_before`` and of ``lambda_after`` over its members (e.g. the targets it was flossed
    to), compared by :func:`~floss_utils.common.paired_comparison` (``before - after`` per network:
    ``mean`` > 0 and ``n_greater`` count a drop; ``p_greater`` is the exact one-sided sign-flip p
    over the networks, the unit that is independent: members of one network share its weights).

    Args:
        lambda_before, lambda_after: ``(M,)`` the exponent of each member before and after.
        networks: ``(M,)`` the network (seed) each member was flossed from.
    """
    frame = pd.DataFrame({"net": np.asarray(networks).reshape(-1),
                          "before": torch.as_tensor(lambda_before).reshape(-1).double().cpu().numpy(),
                          "after": torch.as_tensor(lambda_after).reshape(-1).double().cpu().numpy()})
    if frame.empty:
        raise ValueError("no members to compare")
    per_net = frame.groupby("net")[["before", "after"]].mean()
    return paired_comparison(per_net["before"].to_numpy(), per_net["after"].to_numpy())


CLAIM_TESTS = ("pre_none", "inter_none", "both_none", "further", "speed")


def claims_table(contrasts: pd.DataFrame, further: dict, speed: dict, supported: dict,
                 alpha: float = 0.05) -> pd.DataFrame:
    """GF's five schedule tests (:func:`schedule_claims`) one row each: ``test``, the success rates
    of the two schedules (contrasts only), the seeds for and against (the sign test's counts:
    more successes, a longer horizon, sooner; ties left out), its one-sided ``p``, Holm's
    decision ``supported``, ``decidable`` (:func:`~floss_utils.common.holm_reachable`: had every
    untied seed gone the test's way, p = 2^-untied, Holm would have supported it beside the other
    tests as observed) and a ``verdict`` that tells "not supported" from "not decidable" (with the
    smallest p the untied seeds allow) and "not tested" (no untied seed).

    The inputs are a :class:`ScheduleClaims`'s fields, or the same read back from a record
    (``contrasts`` as a table, the others as dicts)."""
    rows = []
    for r in contrasts.itertuples():
        rows.append({"test": f"{r.a}_{r.b}", "rate_a": float(r.rate_a), "rate_b": float(r.rate_b),
                     "seeds_for": int(r.seeds_for), "seeds_against": int(r.seeds_against), "p": float(r.p)})
    rows.append({"test": "further", "rate_a": float("nan"), "rate_b": float("nan"), "seeds_for": int(further["seeds_longer"]),
                 "seeds_against": int(further["seeds_shorter"]), "p": float(further["p"])})
    rows.append({"test": "speed", "rate_a": float("nan"), "rate_b": float("nan"), "seeds_for": int(speed["seeds_sooner"]),
                 "seeds_against": int(speed["seeds_later"]), "p": float(speed["p"])})
    out = pd.DataFrame(rows)
    missing = set(CLAIM_TESTS) - set(out.test) | set(CLAIM_TESTS) - set(supported)
    if missing:
        raise ValueError(f"tests missing: {sorted(missing)}")
    out = out.set_index("test").loc[list(CLAIM_TESTS)].reset_index()
    out["supported"] = [bool(supported[t]) for t in out.test]
    # a sign test over m untied seeds cannot go below 2^-m: could that p have passed Holm beside the others?
    m = out.seeds_for + out.seeds_against
    reach = holm_reachable(dict(zip(out.test, out.p)), dict(zip(out.test, 2.0 ** -m)), alpha)
    out["decidable"] = [reach[t] for t in out.test]
    out["verdict"] = ["supported" if ok else "not tested (no untied seed)" if mm == 0 else "not supported" if dec
                      else _not_decidable(t, int(mm), dict(zip(out.test, out.p)), alpha)
                      for t, ok, mm, dec in zip(out.test, out.supported, m, out.decidable)]
    return out


def _not_decidable(test: str, untied: int, pvalues: dict[str, float], alpha: float) -> str:
    """Why ``test`` could not have been supported: its smallest p (2^-untied) against Holm's threshold at the rank
    that p would take beside the other tests as observed, or Holm stopping at a test ranked before it."""
    smallest = 2.0 ** -untied
    thr = holm_threshold({**pvalues, test: smallest}, test, alpha)
    why = (f"above Holm's threshold {thr:.3g} at its rank" if smallest > thr
           else "and Holm stops at a test ranked before it")
    return f"not decidable ({untied} untied seeds: p cannot go below 2^-{untied} = {smallest:.3g}, {why})"


#: a reader's label of each test of ``CLAIM_TESTS``
CLAIM_LABELS = {"pre_none": "pre vs none (success)", "inter_none": "inter vs none (success)",
                "both_none": "both vs none (success)", "further": "both vs pre (further horizon)",
                "speed": "pre vs none (speed)"}


def describe_claims(table: pd.DataFrame) -> str:
    """A :func:`claims_table` in words, one clause per test joined by "; ": its label
    (:data:`CLAIM_LABELS`), verdict, the two success rates (success tests only), the seeds for and
    against and the sign test's p."""
    return "; ".join(
        f"{CLAIM_LABELS[r.test]}: {r.verdict} ("
        + (f"success rates {r.rate_a:.2f} against {r.rate_b:.2f}, " if not np.isnan(r.rate_a) else "")
        + f"seeds {r.seeds_for} for, {r.seeds_against} against, p = {r.p:.2g})"
        for r in table.itertuples())
