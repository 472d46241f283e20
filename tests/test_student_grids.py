"""Grids of teacher-student runs (floss_utils/curse_of_memory/student_grids.py): the figure
configurations and the lookups on a best-learning-rate table, against tables written by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from floss_utils.curse_of_memory.student_grids import (RunConfig, at_learning_rates, off_grid, beyond_edge, best_at_grid_edge, best_run, rows_of,
                                                       bracket, figure_configs, runs_at_best)
from floss_utils.curse_of_memory.student_training import best_learning_rates


def test_figure_configs_follow_zo_figures():
    fc = figure_configs([0.36, 0.99], [math.pi, 0.314], [1, 2, 8], 16)
    assert fc.fig3a == [RunConfig("rnn", 0.36, math.pi, hidden=16), RunConfig("lru", 0.36, math.pi, hidden=16),
                        RunConfig("rnn", 0.99, math.pi, hidden=16), RunConfig("lru", 0.99, math.pi, hidden=16)]
    # Fig. 3B: 2x2 blocks are hidden / 2 heads; "more neurons" doubles the units, still 2x2 blocks
    assert fc.ablation["block-diag. 2x2"] == RunConfig("rnn", 0.99, math.pi, heads=8, hidden=16)
    assert fc.ablation["more neurons (32, 2x2)"] == RunConfig("rnn", 0.99, math.pi, heads=16, hidden=32)
    assert {c.nu0 for c in fc.ablation.values()} == {0.99}
    assert len(fc.fig10) == 2 * 3 and {c.max_phase for c in fc.fig10} == {math.pi, 0.314}
    assert [c.heads for c in fc.fig11] == [1, 2, 8]
    every = fc.all()
    assert len(every) == len(set(every))  # the dense RNN at 0.99 appears in four figures, once here
    assert RunConfig("rnn", 0.99, math.pi, hidden=16) in every


@pytest.mark.parametrize("heads, hidden", [([3], 16), ([1], 15)])
def test_figure_configs_refuse_heads_that_do_not_divide_hidden(heads, hidden):
    with pytest.raises(ValueError, match="divisible"):
        figure_configs([0.99], [math.pi], heads, hidden)


def _best_table():
    return pd.DataFrame([
        {"arch": "rnn", "nu0": 0.99, "max_phase": math.pi, "heads": 1, "hidden": 16, "lr": 1e-3, "mean": 0.4},
        {"arch": "rnn", "nu0": 0.99, "max_phase": math.pi, "heads": 2, "hidden": 16, "lr": 1e-2, "mean": 0.1},
        {"arch": "lru", "nu0": 0.99, "max_phase": math.pi, "heads": 1, "hidden": 16, "lr": 0.032, "mean": 1e-5},
    ])


def test_best_run_matches_every_key_and_compares_reals_loosely():
    best = _best_table()
    row = best_run(best, RunConfig("rnn", 0.99 + 1e-12, math.pi, heads=2, hidden=16))
    assert row["mean"] == 0.1
    with pytest.raises(KeyError):
        best_run(best, RunConfig("rnn", 0.99, math.pi, heads=4, hidden=16))


def test_rows_of_selects_every_seed_of_one_configuration_and_nothing_else():
    base = {"arch": "rnn", "nu0": 0.99, "max_phase": math.pi, "hidden": 16}
    runs = pd.DataFrame([dict(base, heads=h, seed=s, final_loss=10 * h + s) for h in (1, 2) for s in range(3)]
                        + [dict(base, arch="lru", heads=1, seed=0, final_loss=-1.0)])
    sel = rows_of(runs, RunConfig("rnn", 0.99 + 1e-12, math.pi, heads=2, hidden=16))
    assert sel.final_loss.tolist() == [20, 21, 22]
    assert rows_of(runs, RunConfig("rnn", 0.9, math.pi, heads=2, hidden=16)).empty
    assert rows_of(runs, RunConfig("lru", 0.99, math.pi, hidden=16)).final_loss.tolist() == [-1.0]


def test_best_at_grid_edge_flags_the_ends_of_each_grid():
    lrs = {"rnn": [1e-2, 3.2e-3, 1e-3], "lru": [0.1, 0.032, 0.01]}
    assert best_at_grid_edge(_best_table(), lrs).tolist() == [True, True, False]


def test_bracket_reads_the_neighbouring_rates_by_hand():
    # the dense RNN (heads 1): best 1e-3 inside [1e-2, 3.2e-3, 1e-3, 3.2e-4]; above it 3.2e-3 with one diverged seed of
    # two (only the divergence bounds it), below it 3.2e-4 with a worse finite mean; the LRU's best 0.1 sits on its
    # grid's top edge (nothing above)
    base = {"nu0": 0.99, "max_phase": math.pi, "hidden": 16}
    runs = pd.DataFrame([dict(base, arch="rnn", heads=1, lr=lr, seed=s, final_loss=v) for lr, s, v in [
        (1e-2, 0, math.inf), (1e-2, 1, math.inf), (3.2e-3, 0, 0.2), (3.2e-3, 1, math.inf), (1e-3, 0, 0.1), (1e-3, 1, 0.3),
        (3.2e-4, 0, 0.5), (3.2e-4, 1, 0.7)]] + [dict(base, arch="lru", heads=1, lr=lr, seed=0, final_loss=v)
                                               for lr, v in [(0.1, 1e-5), (0.032, 2e-5)]])
    best = best_learning_rates(runs, ["arch", "nu0", "max_phase", "heads", "hidden"])
    lrs = {"rnn": [1e-2, 3.2e-3, 1e-3, 3.2e-4], "lru": [0.1, 0.032]}
    b = bracket(best, runs, lrs).set_index("arch")
    assert b.loc["rnn", "lr"] == 1e-3 and (b.loc["rnn", "above"], b.loc["rnn", "below"]) == (3.2e-3, 3.2e-4)
    assert b.loc["rnn", "above_diverged"] == 1 and b.loc["rnn", "above_mean"] == math.inf
    assert b.loc["rnn", "below_diverged"] == 0 and b.loc["rnn", "below_mean"] == pytest.approx(0.6)
    assert math.isnan(b.loc["lru", "above"]) and b.loc["lru", "below"] == 0.032 and b.loc["lru", "below_mean"] == 2e-5


def test_merge_runs_counts_each_seed_once_from_its_latest_run():
    # a record grown from 2 to 3 seeds: the rate short of a seed ran all three again; the new rows replace the old
    from floss_utils.curse_of_memory.student_grids import merge_runs

    cfg = dict(arch="rnn", nu0=0.92, max_phase=3.14, heads=1, hidden=64)
    done = pd.DataFrame([{**cfg, "lr": 1e-3, "seed": s, "final_loss": 1.0 + s} for s in (0, 1)]
                        + [{**cfg, "lr": 3.2e-4, "seed": 0, "final_loss": 9.0}])
    new = pd.DataFrame([{**cfg, "lr": 1e-3, "seed": s, "final_loss": 10.0 + s} for s in (0, 1, 2)])
    merged = merge_runs(done, new)
    at = merged[merged.lr == 1e-3].sort_values("seed")
    assert at.seed.tolist() == [0, 1, 2] and at.final_loss.tolist() == [10.0, 11.0, 12.0]
    assert merged[merged.lr == 3.2e-4].final_loss.tolist() == [9.0]  # untouched
    assert len(merge_runs(pd.DataFrame(), new)) == 3
    # another teacher is another run, when the table says so
    other = new.assign(teacher_seed=1)
    both = merge_runs(new.assign(teacher_seed=0), other, extra_keys=["teacher_seed"])
    assert len(both) == 6
    with pytest.raises(KeyError, match="teacher_seed"):
        merge_runs(done, new, extra_keys=["teacher_seed"])


def test_missing_learning_rates_resumes_by_rate_seed_and_condition():
    # A hand-made table of finished runs: at nu0 0.92 the dense rate 1e-3 ran with seeds 0 and 1,
    # 3.2e-4 only with seed 0; the LRU's 0.1 ran at nu0 0.96 only (another condition).
    from floss_utils.curse_of_memory.student_grids import missing_learning_rates

    done = pd.DataFrame({"arch": ["rnn", "rnn", "rnn", "lru"], "nu0": [0.92, 0.92, 0.92, 0.96],
                         "lr": [1e-3, 1e-3, 3.2e-4, 0.1], "seed": [0, 1, 0, 0]})
    grids = {"rnn": [1e-3, 3.2e-4, 1e-4], "lru": [0.1, 0.032]}
    assert missing_learning_rates(done, grids, where={"nu0": 0.92}, seeds=2) == {"rnn": [3.2e-4, 1e-4], "lru": [0.1, 0.032]}
    assert missing_learning_rates(done, grids, where={"nu0": 0.92}, seeds=1) == {"rnn": [1e-4], "lru": [0.1, 0.032]}
    assert missing_learning_rates(done, grids, where={"nu0": 0.96}) == {"rnn": [1e-3, 3.2e-4, 1e-4], "lru": [0.032]}
    # a rate written with round-off (1.0000000000000002e-3) counts as the grid's 1e-3
    done.loc[0, "lr"] = 1e-3 * (1 + 2e-16)
    assert missing_learning_rates(done, {"rnn": [1e-3]}, where={"nu0": 0.92}, seeds=2) == {}
    assert missing_learning_rates(pd.DataFrame(), grids) == grids
    with pytest.raises(ValueError, match="lacks columns"):
        missing_learning_rates(done.drop(columns="seed"), grids)
    with pytest.raises(ValueError, match="seeds"):
        missing_learning_rates(done, grids, seeds=0)


def _runs():
    # two numbers of heads, three rates, two seeds; by hand: 1 head is best at 1e-3 (mean 0.15),
    # 2 heads at 3.2e-4 (mean 2e-3); without 3.2e-4, 2 heads are best at 1e-3 (mean 0.5)
    loss = {(1, 1e-2): (float("inf"), 1.0), (1, 1e-3): (0.1, 0.2), (1, 3.2e-4): (0.3, 0.5),
            (2, 1e-2): (0.9, 0.9), (2, 1e-3): (0.4, 0.6), (2, 3.2e-4): (1e-3, 3e-3)}
    return pd.DataFrame([{"arch": "rnn", "nu0": 0.99, "max_phase": 3.14, "heads": h, "hidden": 8, "lr": lr,
                          "seed": s, "final_loss": v} for (h, lr), vals in loss.items() for s, v in enumerate(vals)])


def test_at_learning_rates_and_runs_at_best_by_hand():
    keys = ["arch", "nu0", "max_phase", "heads", "hidden"]
    runs = _runs()
    at = runs_at_best(runs, best_learning_rates(runs, keys))
    assert sorted(zip(at.heads, at.lr, at.seed)) == [(1, 1e-3, 0), (1, 1e-3, 1), (2, 3.2e-4, 0), (2, 3.2e-4, 1)]
    assert at[at.heads == 2].best_mean.iloc[0] == pytest.approx(2e-3)
    shared = at_learning_rates(runs, [1e-2, 1.0000000001e-3])  # 3.2e-4 left out; rates compared to 1e-9
    assert sorted(set(shared.lr)) == [1e-3, 1e-2]
    at_shared = runs_at_best(shared, best_learning_rates(shared, keys))
    assert at_shared[at_shared.heads == 2].best_mean.iloc[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"no runs at the learning rates \[0.032\]"):
        at_learning_rates(runs, [0.032, 1e-3])


def test_off_grid_by_hand():
    grid = [1e-3, 3.2e-3, 1e-2]
    assert off_grid([3.2e-4, 1.0000000001e-3, 1e-2, 0.032], grid) == [3.2e-4, 0.032]  # 1e-3 within 1e-9
    assert off_grid({"1": 1e-2, "2": 3.2e-4, "4": 3.2e-4, "8": 1e-3}, grid) == ["2", "4"]
    assert off_grid([], grid) == []
    with pytest.raises(ValueError, match="empty"):
        off_grid([1e-3], [])


def test_beyond_edge_walks_the_grid_by_hand():
    grid = [3.2e-2, 1e-2, 3.2e-3, 1e-3, 3.2e-4]
    run = [1e-2, 3.2e-3, 1e-3]
    assert beyond_edge(3.2e-3, run, grid) is None  # inside: nothing to add
    assert beyond_edge(1e-2, run, grid) == 3.2e-2  # largest run is best: the next larger rate
    assert beyond_edge(1e-3, run, grid) == 3.2e-4  # smallest run is best: the next smaller rate
    assert beyond_edge(3.2e-2, [3.2e-2, 1e-2], grid) is None  # the grid ends there
    assert beyond_edge(float("inf"), run, grid) == 3.2e-4  # every rate diverged: go lower
    assert beyond_edge(float("inf"), [3.2e-4], grid) is None
    assert beyond_edge(1e-3, [1e-3], grid) == 3.2e-3  # one rate run: up first
    with pytest.raises(ValueError, match="not one of"):
        beyond_edge(5e-3, run, grid)
    with pytest.raises(ValueError, match="no learning rate"):
        beyond_edge(1e-3, [], grid)


def test_run_grid_passes_the_real_eigenvalue_rule_to_teachers_and_dense_students():
    # One Adam step at a tiny learning rate: the final loss is the initial student's loss.
    # Teacher seed 1 has no negative real eigenvalue (the rules give the same teacher: the
    # complex student's rows must agree), student seed 0's 8x8 draw has one (the dense
    # student's rows must differ); teacher seed 0 has two (its teachers differ).
    import torch
    from floss_utils.curse_of_memory.student_grids import run_grid
    from floss_utils.curse_of_memory.teacher import make_teacher
    cfg = [RunConfig("rnn", 0.99, 0.3 * math.pi, hidden=8), RunConfig("complex", 0.99, 0.3 * math.pi, hidden=8)]
    kw = dict(steps=1, batch_size=4, seq_len=20, final_window=1, teacher_seed=1)
    lrs = {"rnn": [1e-12], "complex": [1e-12]}
    a = run_grid(cfg, lrs, [0], **kw).set_index("arch").final_loss
    b = run_grid(cfg, lrs, [0], real_eigenvalues="zo_code", **kw).set_index("arch").final_loss
    assert a["complex"] == b["complex"] and a["rnn"] != b["rnn"]
    assert torch.equal(make_teacher(1, 0.99, max_phase=0.3 * math.pi).A,
                       make_teacher(1, 0.99, max_phase=0.3 * math.pi, real_eigenvalues="zo_code").A)
    assert not torch.allclose(make_teacher(0, 0.99, max_phase=0.3 * math.pi).A,
                              make_teacher(0, 0.99, max_phase=0.3 * math.pi, real_eigenvalues="zo_code").A)
    with pytest.raises(ValueError, match="real_eigenvalues"):
        run_grid(cfg, lrs, [0], real_eigenvalues="nope", **kw)


def test_run_grid_passes_the_blowup_flag():
    # lr 1 on the dense RNN blows up within 30 steps: the default flag (1e4 x the initial loss) marks it,
    # a flag of 1e300 leaves only a non-finite loss to mark it; the same run otherwise (same seeds, streams)
    from floss_utils.curse_of_memory.student_grids import run_grid
    cfg = [RunConfig("rnn", 0.9, hidden=8)]
    kw = dict(steps=30, batch_size=4, seq_len=50, final_window=5)
    flagged = run_grid(cfg, {"rnn": [1.0]}, [0], **kw).iloc[0]
    late = run_grid(cfg, {"rnn": [1.0]}, [0], blowup=1e300, **kw).iloc[0]
    assert flagged.diverged and (not late.diverged or late.diverged_step > flagged.diverged_step)
    with pytest.raises(ValueError, match="blowup"):
        run_grid(cfg, {"rnn": [1e-3]}, [0], blowup=0.5, **kw)


def test_run_grid_per_teacher_resumes_and_matches_run_grid(tmp_path):
    from floss_utils.curse_of_memory.student_grids import run_grid, run_grid_per_teacher

    configs = [RunConfig("lru", 0.9, 0.1 * math.pi, hidden=4), RunConfig("rnn", 0.9, math.pi, hidden=4)]
    lrs = {"lru": [1e-2], "rnn": [1e-3, 1e-4]}
    kw = dict(steps=6, batch_size=2, seq_len=8, final_window=2)
    partial = tmp_path / "partial.csv"
    first = run_grid_per_teacher(configs, lrs, [0, 1], [3, 4], partial=partial, **kw)
    assert list(first.columns[:1]) == ["teacher_seed"] and first.columns[-1] == "theta0_over_pi"
    assert sorted(first.teacher_seed.unique()) == [3, 4] and len(first) == 2 * 2 * 3
    assert sorted(first.theta0_over_pi.unique()) == [0.1, 1.0]
    # teacher 4 alone, straight from run_grid: the same runs
    alone = run_grid(configs, lrs, [0, 1], teacher_seed=4, **kw)
    pd.testing.assert_series_equal(first[first.teacher_seed == 4].final_loss.reset_index(drop=True),
                                   alone.final_loss.reset_index(drop=True))
    # resumed: teachers in the partial file are read back, not run again; teacher 5 is added
    stale = pd.read_csv(partial).assign(final_loss=-1.0)  # a marker that would be overwritten by a rerun
    stale.to_csv(partial, index=False)
    told = []  # on_teacher hears of the teachers run now, not of those read back
    resumed = run_grid_per_teacher(configs, lrs, [0, 1], [3, 4, 5], partial=partial,
                                   on_teacher=lambda ts, frame: told.append((ts, len(frame))), **kw)
    assert told == [(5, 2 * 3)]
    assert (resumed[resumed.teacher_seed < 5].final_loss == -1.0).all()
    assert (resumed[resumed.teacher_seed == 5].final_loss > 0).all()
    pd.testing.assert_frame_equal(pd.read_csv(partial), resumed, check_dtype=False)
