"""floss_utils.curse_of_memory.adam_record: the rules that read chapter 6's record, on tables built by hand.

Ground truths: hand-made runs whose flags, best rates and contrasts are known by construction; the
exact one-sided Mann-Whitney p of a 3-vs-3 total order is 1/C(6, 3) = 1/20 (hand count).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from floss_utils.curse_of_memory.adam_record import (best_rate_table, best_rates, classify_runs, contrast_by_rate,
                                                     paired_setting_contrast, slowest_reported)


def _members() -> pd.DataFrame:
    rows = []
    # columns: student, lr, seed, final loss, loss before, relative loss, loss trend per tenth, diverged
    # dense RNN: at 1e-3 it learns little (0.8), at 1e-4 it learns (0.01); one run at 1e-3 blew up
    for seed, rel in zip(range(3), [0.8, 0.9, 5.0]):
        rows.append(("dense RNN", 1e-3, seed, rel, rel, rel, 1.0, False))
    for seed, rel in zip(range(3), [0.01, 0.02, 0.03]):
        rows.append(("dense RNN", 1e-4, seed, rel, rel * 1.1, rel, 0.9, False))
    # diagonal: converged at 1e-4 (tiny, flat loss; two windows 3x apart, as spikes make them, but a flat
    # trend), still falling 4x per tenth at 1e-3; one NaN run
    for seed in range(3):
        rows.append(("diag", 1e-4, seed, 3e-5, 1e-5, 3e-5, 0.8, False))
        rows.append(("diag", 1e-3, seed, 1e-4, 4e-4, 1e-4, 0.25, False))
    rows.append(("diag", 1e-2, 0, float("nan"), 1.0, float("nan"), float("nan"), True))
    return pd.DataFrame(rows, columns=["student", "lr", "seed", "final_loss", "loss_before", "relative_loss", "loss_trend",
                                       "diverged"])


def _effective(members: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in members.itertuples():
        if r.student == "dense RNN":
            rows.append((r.student, r.lr, r.seed, "A", 0.01 * (r.seed + 1)))  # 0.01, 0.02, 0.03
            rows.append((r.student, r.lr, r.seed, "D", 0.9))  # not reported: must not enter
        else:
            rows.append((r.student, r.lr, r.seed, "lam_re", 0.5 + 0.1 * r.seed))  # 0.5, 0.6, 0.7
            rows.append((r.student, r.lr, r.seed, "lam_im", 0.9))  # the slower one is lam_re
    return pd.DataFrame(rows, columns=["student", "lr", "seed", "parameter", "fraction_of_ceiling"])


def test_classify_runs_flags_blown_up_nan_and_plateau():
    m = classify_runs(_members())
    dense = m[m.student == "dense RNN"]
    assert dense.failed.tolist() == [False, False, True, False, False, False]  # relative loss 5 > 1 blew up
    assert np.isinf(dense.relative_loss.iloc[2])
    diag = m[m.student == "diag"]
    assert diag.failed.tolist() == [False] * 6 + [True]  # the diverged NaN run
    # converged: below 1e-3 and a trend within 2x per tenth; the 1e-3 runs fall 4x per tenth
    assert diag[np.isclose(diag.lr, 1e-4)].converged.all() and not diag[np.isclose(diag.lr, 1e-3)].converged.any()
    assert not dense.converged.any()  # 0.01 is not below 1e-3
    assert (m.drop(columns=["failed", "converged", "relative_loss"]).equals(_members().drop(columns=["relative_loss"])))


def test_best_rates_and_table():
    m = classify_runs(_members())
    best = best_rates(m)
    assert best.to_dict() == {"dense RNN": 1e-4, "diag": 1e-4}
    frac = slowest_reported(_effective(_members()), m, {"dense RNN": ["A"], "diag": ["lam_re", "lam_im"]})
    table = best_rate_table(m, frac, grid=[1e-2, 1e-3, 1e-4]).set_index("student")
    assert table.loc["dense RNN", "on grid edge"] and table.loc["diag", "on grid edge"]  # 1e-4 is the grid's lower edge
    assert table.loc["dense RNN", "final loss / zero output (median)"] == pytest.approx(0.02)
    assert table.loc["diag", "slowest recurrent eff. lr / ceiling (median)"] == pytest.approx(0.6)
    assert not best_rate_table(m, frac, grid=[1e-2, 1e-3, 1e-4, 1e-5]).set_index("student").loc["diag", "on grid edge"]


def test_slowest_reported_drops_failed_runs_and_unreported_parameters():
    m = classify_runs(_members())
    frac = slowest_reported(_effective(_members()), m, {"dense RNN": ["A"], "diag": ["lam_re", "lam_im"]})
    assert len(frac) == 5 + 6  # the blown-up dense run and the NaN diagonal run are gone
    assert set(frac[frac.student == "dense RNN"].fraction_of_ceiling.round(3)) == {0.01, 0.02, 0.03}  # D never enters
    assert set(frac[frac.student == "diag"].fraction_of_ceiling.round(3)) == {0.5, 0.6, 0.7}  # min over lam_re, lam_im
    with pytest.raises(KeyError, match="diag"):
        slowest_reported(_effective(_members()), m, {"dense RNN": ["A"]})


def test_contrast_by_rate_rules_and_hand_counted_p():
    m = classify_runs(_members())
    frac = slowest_reported(_effective(_members()), m, {"dense RNN": ["A"], "diag": ["lam_re", "lam_im"]})
    table, left_out = contrast_by_rate(frac, m)
    # 1e-3: the dense RNN did not learn (median 0.9 of the zero output; 2 runs left) -> left out;
    # 1e-2: the diagonal run failed and no dense run exists -> left out; 1e-4 compared after convergence
    assert len(table) == 1 and len(left_out) == 2
    row = table.iloc[0]
    assert row.lr == 1e-4 and bool(row["after convergence"]) and row["converged seeds"] == 3
    assert row["median ratio to dense A"] == pytest.approx(0.6 / 0.02)
    assert row["Mann-Whitney p"] == pytest.approx(1 / math.comb(6, 3))
    assert any("diag at 0.001" in s and "above 0.5" in s for s in left_out)
    assert "diag at 0.01 (0 vs 0 runs)" in left_out  # every run failed, and no dense run at that rate
    # without the learning rule the 1e-3 pair has only 2 dense runs: still left out, as too few
    _, left = contrast_by_rate(frac, m, learned_below=10.0)
    assert any("diag at 0.001 (3 vs 2 runs)" == s for s in left)
    with pytest.raises(ValueError):
        contrast_by_rate(frac, m, min_runs=0)


def test_missing_columns_are_named():
    with pytest.raises(KeyError, match="loss_trend"):
        classify_runs(_members().drop(columns=["loss_trend"]))


def test_classify_runs_reads_the_trend_both_ways():
    # rising 2.5x per tenth is moving as much as falling 2.5x; exactly 2x is not "within" 2x
    m = _members().assign(loss_trend=lambda f: f.loss_trend.where(~np.isclose(f.lr, 1e-3), 2.5))
    assert not classify_runs(m)[np.isclose(m.lr, 1e-3)].converged.any()
    assert not classify_runs(m.assign(loss_trend=2.0)).converged.any()
    assert classify_runs(m.assign(loss_trend=1.99))[lambda f: f.relative_loss < 1e-3].converged.all()
    with pytest.raises(ValueError, match="plateau_factor"):
        classify_runs(m, plateau_factor=1.0)


def test_classify_runs_needs_both_last_tenths_below_the_level():
    # a run at 9e-4 of the zero output whose tenth before sat 139x higher (a late excursion): Adam's second moment
    # still remembers it, so it has not converged, whatever its trend
    m = _members()
    late = m.assign(loss_before=lambda f: f.final_loss.where(~np.isclose(f.lr, 1e-4) | (f.student != "diag"),
                                                             f.final_loss * 139))
    assert not classify_runs(late)[(late.student == "diag") & np.isclose(late.lr, 1e-4)].converged.any()
    # the same read from relative losses
    rel = late.drop(columns=["final_loss", "loss_before"]).assign(relative_loss_before=late.loss_before / late.final_loss
                                                                  * late.relative_loss)
    assert classify_runs(rel).converged.tolist() == classify_runs(late).converged.tolist()
    with pytest.raises(KeyError, match="relative_loss_before"):
        classify_runs(m.drop(columns=["loss_before"]))


def _settings() -> pd.DataFrame:
    # 5 seeds; "wide" is 10x "narrow" on seeds 0-3 and 0.5x on seed 4; one wide run still falls 4x per tenth
    rows = []
    for seed in range(5):
        base = 1e-4 * (seed + 1)
        rows.append(("narrow", seed, base, 1e-5, 2e-5, 1.0, False))
        rows.append(("wide", seed, base * (10 if seed < 4 else 0.5), 1e-5, 2e-5, 0.25 if seed == 0 else 1.0, False))
    return pd.DataFrame(rows, columns=["range", "seed", "eff", "relative_loss", "relative_loss_before", "loss_trend", "diverged"])


def test_paired_setting_contrast_counts_and_exact_p():
    c = paired_setting_contrast(_settings(), "eff", setting="range", treated="wide", control="narrow")
    assert c.n == 5 and c.n_greater == 4
    # exact sign-flip p over the 2^5 patterns of |log ratios| = (ln10 x4, ln2): patterns whose mean is
    # >= the observed one (4 ln10 - ln2): all signs +, or only the ln2 term + or - with the rest +:
    # the observed itself and all-plus -> 2 of 32 (hand count)
    assert c.p_greater == pytest.approx(2 / 32)
    assert c.median["narrow"] == pytest.approx(3e-4) and c.median["wide"] == pytest.approx(2e-3)
    assert c.median_ratio == pytest.approx(2e-3 / 3e-4)
    assert 0.5 <= c.ratio_lo <= c.ratio_hi <= 10 * (1 + 1e-12)  # the bootstrap mean of the pairs lies in their range
    assert c.converged == {"wide": 4, "narrow": 5}


def test_paired_setting_contrast_refuses_unpaired_or_unknown():
    m = _settings()
    with pytest.raises(ValueError, match="not run under both"):
        paired_setting_contrast(m.drop(index=0), "eff", setting="range", treated="wide", control="narrow")
    with pytest.raises(ValueError, match="no run with range == 'broad'"):
        paired_setting_contrast(m, "eff", setting="range", treated="broad", control="narrow")
    with pytest.raises(ValueError, match="positive"):
        paired_setting_contrast(m.assign(eff=-m.eff), "eff", setting="range", treated="wide", control="narrow")


def test_converged_on_arrays_is_classify_runs_definition():
    from floss_utils.curse_of_memory.adam_record import converged
    got = converged([5e-4, 5e-4, 5e-4, 2e-3, float("nan")], [5e-4, 2e-3, 5e-4, 5e-4, 5e-4], [1.9, 1.0, 0.49, 1.0, 1.0])
    assert got.tolist() == [True, False, False, False, False]
