"""The registry's chapter costs (floss_utils/book/registry/costs.py) are the recorded runs
(benchmarks/results/book_timings.csv), never typed by hand: regenerate them with
``benchmarks/bench_book.py --write-registry`` after a new measurement."""

from __future__ import annotations

import sys
from dataclasses import asdict

from floss_utils.book.registry import CHAPTERS, SCALES
from floss_utils.book.registry.costs import COSTS, MEMORY_HINTS

from conftest import REPO_ROOT


def test_costs_are_the_recorded_runs():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_book import CSV_NAME, registry_entries

    recorded = registry_entries(REPO_ROOT / "benchmarks" / "results" / CSV_NAME)
    assert {cid: {s: asdict(c) for s, c in scales.items()} for cid, scales in COSTS.items()} == recorded


def test_costs_and_hints_name_real_chapters_and_scales():
    assert set(COSTS) <= set(CHAPTERS) and set(MEMORY_HINTS) <= set(CHAPTERS)
    assert all(set(scales) <= set(SCALES) for scales in COSTS.values())
    for cid, hint in MEMORY_HINTS.items():  # the hint names parameters the chapter has
        names = [w.strip(",") for w in hint.replace(" or ", " ").split()]
        assert all(n in CHAPTERS[cid].params for n in names), (cid, hint)


def test_floss_list_marks_an_extrapolated_cost(monkeypatch):
    # a stopped run's cost is an estimate: shown with "~" and "extrapolated", a measured one plainly
    from floss_utils.book import cli
    from floss_utils.book.registry import costs

    cid = next(iter(CHAPTERS))
    fake = {cid: {"smoke": costs.Cost(0.5, 0.4, "ok", "measured 2026-12-04, M"),
                  "paper": costs.Cost(25.0, 1.5, "timed out after 600 s",
                                      "extrapolated from a run stopped after 10 min with 40 % of the chapter done, M")}}
    monkeypatch.setattr(costs, "COSTS", fake)
    line = cli._cost_line(CHAPTERS[cid])
    assert "smoke 30 s, 0.4 GiB" in line
    assert "paper ~25 min, 1.5 GiB (extrapolated: timed out after 600 s, from the part it had done)" in line


def test_floss_list_marks_a_lower_bound_cost(monkeypatch):
    # a run stopped inside a long cell: its time spent is a lower bound, shown with ">"
    from floss_utils.book import cli
    from floss_utils.book.registry import costs

    cid = next(iter(CHAPTERS))
    fake = {cid: {"paper": costs.Cost(40.0, None, "timed out after 2400 s",
                                      "at least: a run stopped after 40 min inside a cell, with 10 % of the chapter done, M")}}
    monkeypatch.setattr(costs, "COSTS", fake)
    assert "paper >40 min (timed out after 2400 s: a lower bound)" in cli._cost_line(CHAPTERS[cid])


def test_a_chapter_whose_paper_run_fits_a_chapters_budget_is_committed_at_it():
    # issue 19: where the paper configuration finished within the book's budget for one chapter
    # (bench_book.BUDGET["book"], 4 minutes) on the reference machine, the committed book scale is it
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_book import BUDGET

    fits = [cid for cid, scales in COSTS.items()
            if "paper" in scales and scales["paper"].status == "ok" and scales["paper"].minutes * 60 <= BUDGET["book"]]
    assert fits, "no chapter's paper run fits: the rule below would hold vacuously"
    for cid in fits:
        differ = {n for n, p in CHAPTERS[cid].params.items() if p.presets and p.presets["book"] != p.presets["paper"]}
        assert not differ, f"{cid}: its paper run fits the book's budget, but book differs from paper in {sorted(differ)}"
