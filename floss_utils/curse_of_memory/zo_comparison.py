"""Setting the records of ZO's figures beside ZO's published values and ZO's code's procedures.

Chapter 5 traces the points of ZO's Fig. 10 that its paper-configuration record does not reproduce,
one difference from ZO's code at a time (seed averaging, teacher, learning-rate grid, ...). The
table manipulations behind that account live here; each works on the tidy tables of runs that
:func:`~floss_utils.curse_of_memory.student_grids.run_grid` returns (one row per run: the
configuration's fields, ``lr``, ``seed``, ``final_loss``, ...).

* :func:`within_factor` - the chapter's agreement criterion (a factor either way).
* :func:`on_learning_rates` - the runs whose learning rate lies on a given grid (e.g. ZO's).
* :func:`restrict_to_protocol` - the runs of one record that another record's protocol also ran.
* :func:`both_averagings` - the best learning rate and its mean under the book's rule and ZO's.
* :func:`teacher_spread` - one architecture's final loss per teacher at two angle ranges.
* :func:`seed_rank_test` - one teacher's seeds against the other teachers' seeds (Mann-Whitney).
* :func:`rank_among` - where a published value would fall among the teachers' values.
* :func:`teacher_separation` - whether the hardest teacher's best run ends above the easiest
  teacher's worst seed (a teacher effect that seed-to-seed variation cannot make).
* :func:`ordinal` - 1st, 2nd, 3rd, ... for the prose.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["within_factor", "on_learning_rates", "restrict_to_protocol", "both_averagings", "teacher_spread",
           "seed_rank_test", "rank_among", "teacher_separation", "ordinal"]


def within_factor(value: float, reference: float, factor: float = 3.0) -> bool:
    """Whether ``value`` lies within ``factor`` of ``reference`` either way:
    ``reference / factor <= value <= reference * factor`` (both positive)."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if not reference > 0:
        raise ValueError(f"reference must be positive, got {reference}")
    return bool(1 / factor <= value / reference <= factor)


def _on_grid(lr: float, grid: Sequence[float]) -> bool:
    return bool(np.isclose(lr, np.asarray(grid, dtype=float), rtol=1e-9, atol=0).any())


def on_learning_rates(runs, grids: Mapping[str, Sequence[float]]):
    """The rows of ``runs`` whose learning rate lies on its architecture's grid ``grids[arch]``
    (relative tolerance 1e-9); architectures without a grid are dropped."""
    keep = [a in grids and _on_grid(lr, grids[a]) for a, lr in zip(runs["arch"], runs["lr"])]
    return runs[np.array(keep, dtype=bool)]


def restrict_to_protocol(runs, lrs: Mapping[str, Sequence[float]], seeds: Sequence[int],
                         theta0_over_pi: Sequence[float]):
    """The rows of ``runs`` that another record's protocol also ran: architecture in ``lrs``,
    learning rate on ``lrs[arch]``, seed in ``seeds`` and angle range ``max_phase / pi`` close
    to one of ``theta0_over_pi`` (used to set one teacher's runs beside a record of other teachers)."""
    fracs = np.asarray(theta0_over_pi, dtype=float)
    keep = [a in lrs and int(s) in set(seeds) and _on_grid(lr, lrs[a])
            and bool(np.isclose(ph / math.pi, fracs, rtol=1e-6, atol=0).any())
            for a, s, lr, ph in zip(runs["arch"], runs["seed"], runs["lr"], runs["max_phase"])]
    return runs[np.array(keep, dtype=bool)]


def both_averagings(runs, keys: Sequence[str]):
    """Each configuration's best learning rate under the book's rule (a rate at which a seed
    diverged is not eligible) and under ZO's figure code's (diverged seeds dropped from the mean),
    :func:`~floss_utils.curse_of_memory.student_training.best_learning_rates` with
    ``diverged="ineligible"`` and ``"dropped"``, merged on ``keys``: the columns of the second
    carry the suffix ``_zo``."""
    from .student_training import best_learning_rates

    keys = list(keys)
    return best_learning_rates(runs, keys).merge(best_learning_rates(runs, keys, diverged="dropped"), on=keys,
                                                 suffixes=("", "_zo"))


def teacher_spread(best, zero_output_loss: Mapping[tuple[int, float], float], small: float, full: float):
    """One architecture's final loss per teacher at two angle ranges (pandas DataFrame).

    Args:
        best: the best-rate table of one architecture (columns ``teacher_seed``,
            ``theta0_over_pi``, ``mean``), e.g. from ``best_learning_rates`` grouped by teacher.
        zero_output_loss: maps ``(teacher_seed, theta0_over_pi)`` to the loss of a student that
            outputs zero (the scale of that teacher's outputs).
        small, full: the two angle ranges (``theta0 / pi``).
    Returns:
        Indexed by ``teacher_seed``: the losses at ``small`` and ``full`` (columns named by the
        two floats), ``"ratio"`` (full over small) and ``"ratio, relative"`` (the same with each
        loss divided by its teacher's zero-output loss).
    """
    table = best.pivot(index="teacher_seed", columns="theta0_over_pi", values="mean")
    missing = [f for f in (small, full) if f not in table.columns]
    if missing:
        raise ValueError(f"no runs at theta0/pi = {missing}; the table has {list(table.columns)}")
    table = table[[small, full]].copy()
    table.columns.name = None
    table["ratio"] = table[full] / table[small]
    table["ratio, relative"] = [(table.loc[ts, full] / zero_output_loss[ts, full])
                                / (table.loc[ts, small] / zero_output_loss[ts, small]) for ts in table.index]
    return table


def seed_rank_test(at_best, teacher: int):
    """One teacher's seeds against every other teacher's seeds, each teacher at its best rate.

    ``at_best``: one row per seed (columns ``teacher_seed`` and ``final_loss``) of one
    architecture at one angle range. Returns ``(own, rest, p)``: the two samples of final losses
    and the one-sided exact Mann-Whitney p-value that ``teacher``'s seeds are lower. Each seed
    counts as a sample, although the teachers share their student seeds and input streams.
    """
    from scipy.stats import mannwhitneyu

    own = at_best.final_loss[at_best.teacher_seed == teacher]
    rest = at_best.final_loss[at_best.teacher_seed != teacher]
    if len(own) == 0 or len(rest) == 0:
        raise ValueError(f"teacher {teacher} needs seeds of its own and of other teachers, got {len(own)} and {len(rest)}")
    return own, rest, float(mannwhitneyu(own, rest, alternative="less", method="exact").pvalue)


def rank_among(value: float, values: Sequence[float]) -> tuple[int, int]:
    """``(k, n + 1)``: ``value`` would be the ``k``-th lowest among ``values`` and itself (ties
    counted below it). If ``value`` were one more exchangeable draw, each rank would have
    probability ``1 / (n + 1)``, and a rank strictly inside (not first or last) ``(n - 1) / (n + 1)``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("values must not be empty")
    return int((v < value).sum()) + 1, int(v.size) + 1


def teacher_separation(runs, best) -> dict:
    """The teacher effect that seed-to-seed variation cannot produce, from one architecture at one
    angle range.

    Args:
        runs: one row per run (columns ``teacher_seed``, ``lr``, ``seed``, ``final_loss``).
        best: each teacher's best learning rate (columns ``teacher_seed``, ``lr``).
    Returns:
        ``hard``: the teacher whose lowest finite run (over every rate and seed) is highest, and
        that run's loss ``hard_lowest``; ``easy``: the teacher whose highest seed at its best rate
        is lowest, and that loss ``easy_highest``; ``separated``: whether ``hard_lowest >
        easy_highest`` (then every run of ``hard`` ends above every seed of ``easy`` at its best
        rate).
    """
    finite = runs[np.isfinite(runs.final_loss.astype(float))]
    lowest = finite.groupby("teacher_seed").final_loss.min()
    best_lr = best.set_index("teacher_seed").lr
    at_best = runs[[bool(np.isclose(lr, best_lr[t], rtol=1e-9, atol=0)) for t, lr in zip(runs.teacher_seed, runs.lr)]]
    highest = at_best.groupby("teacher_seed").final_loss.max()
    hard, easy = int(lowest.idxmax()), int(highest.idxmin())
    return {"hard": hard, "hard_lowest": float(lowest[hard]), "easy": easy, "easy_highest": float(highest[easy]),
            "separated": bool(lowest[hard] > highest[easy])}


def ordinal(k: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``11 -> "11th"``, ``23 -> "23rd"``."""
    if k % 100 in (11, 12, 13):
        return f"{k}th"
    return f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"
