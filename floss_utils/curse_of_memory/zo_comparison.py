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
* :func:`runs_array` - one architecture's runs as an array (teachers, rates, seeds).
* :func:`teacher_separation`, :func:`separation_test` - how far the hardest teacher's best run
  ends above the easiest teacher's worst seed, and how often shuffling the teachers within each
  student seed gives as large a gap (a permutation test of a teacher effect).
* :func:`same_member_factors` - how far one member (configuration, learning rate, seed) ends
  from itself when it is trained again in another ensemble.
* :func:`log_spread_test` - whether one sample of losses spreads wider (in log) than another
  (a one-sided permutation version of the Brown-Forsythe test).
* :func:`best_over_rates` - each member's lowest final loss over a set of learning rates.
* :func:`teacher_record_summary` - what a teachers record keeps of one point.
* :func:`teachers_against_seeds` - one memory's losses over teachers set beside one teacher's
  seeds and the published value: ranks, spreads and the spread test.
* :func:`ordinal` - 1st, 2nd, 3rd, ... for the prose.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["within_factor", "on_learning_rates", "restrict_to_protocol", "both_averagings", "teacher_spread",
           "seed_rank_test", "rank_among", "runs_array", "teacher_separation", "separation_test", "same_member_factors",
           "log_spread_test", "best_over_rates", "teacher_record_summary",
           "teachers_against_seeds", "ordinal"]


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


def runs_array(runs, teachers: Sequence[int], lrs: Sequence[float], seeds: Sequence[int]) -> np.ndarray:
    """The final losses of one architecture at one angle range as an array ``(teachers, rates,
    seeds)``; a non-finite loss (a diverged run) becomes ``+inf``. Every (teacher, rate, seed) must
    have exactly one run (columns ``teacher_seed``, ``lr``, ``seed``, ``final_loss``)."""
    lr_grid = np.asarray(lrs, dtype=float)
    close = np.isclose(lr_grid[:, None], lr_grid[None, :], rtol=1e-9, atol=0)
    if len(set(teachers)) < len(teachers) or len(set(seeds)) < len(seeds) or close.sum() > len(lrs):
        raise ValueError(f"teachers, rates and seeds must each be distinct, got {teachers}, {lrs}, {seeds}")
    t_pos = {t: i for i, t in enumerate(teachers)}  # exact keys: a seed 1.5 is not seed 1
    s_pos = {s: k for k, s in enumerate(seeds)}
    i = np.array([t_pos.get(t, -1) for t in runs.teacher_seed.tolist()], dtype=int)
    k = np.array([s_pos.get(s, -1) for s in runs.seed.tolist()], dtype=int)
    match = np.isclose(runs.lr.to_numpy(dtype=float)[:, None], lr_grid[None, :], rtol=1e-9, atol=0)
    j = np.where(match.any(axis=1), match.argmax(axis=1) if len(lrs) else -1, -1)
    keep = (i >= 0) & (j >= 0) & (k >= 0)  # runs of other teachers, rates or seeds are not asked for
    shape = (len(teachers), len(lrs), len(seeds))
    count = np.zeros(shape, dtype=int)
    np.add.at(count, (i[keep], j[keep], k[keep]), 1)
    if (count != 1).any():
        a, b, c = np.argwhere(count != 1)[0]
        raise ValueError(f"teacher {teachers[a]}, lr {lrs[b]:g}, seed {seeds[c]}: {count[a, b, c]} runs, need exactly one")
    out = np.full(shape, np.nan)
    out[i[keep], j[keep], k[keep]] = runs.final_loss.to_numpy(dtype=float)[keep]
    out[~np.isfinite(out)] = np.inf
    return out


def _separation_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For values ``(..., teachers, rates, seeds)``: each teacher's lowest run over every rate and
    seed, its best rate (the book's rule: smallest seed mean, a rate with a diverged seed not
    eligible) and its highest seed at that rate."""
    means = values.mean(axis=-1)  # inf where a seed diverged
    best = np.argmin(means, axis=-1)  # (..., teachers)
    at_best = np.take_along_axis(values, best[..., None, None], axis=-2)[..., 0, :]
    return values.min(axis=(-2, -1)), best, at_best.max(axis=-1)


def teacher_separation(values: np.ndarray) -> dict:
    """How far the hardest teacher's best run ends above the easiest teacher's worst seed.

    ``values``: final losses ``(teachers, rates, seeds)`` (:func:`runs_array`; ``inf`` for a
    diverged run). ``hard`` is the teacher whose lowest run over every rate and seed is highest,
    ``easy`` the teacher whose highest seed at its best rate is lowest; ``ratio`` is the first over
    the second (> 1: every run of ``hard`` ends above every seed of ``easy`` at its best rate).
    Indices are positions along the teacher axis. Picking the extreme pair among several teachers
    makes a ratio above 1 common by chance: :func:`separation_test` says how common.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 3 or values.shape[0] < 2:
        raise ValueError(f"values must be (teachers >= 2, rates, seeds), got shape {values.shape}")
    lowest, best, highest = _separation_stats(values)
    hard, easy = int(np.argmax(lowest)), int(np.argmin(highest))
    return {"hard": hard, "hard_lowest": float(lowest[hard]), "easy": easy, "easy_highest": float(highest[easy]),
            "ratio": float(lowest[hard] / highest[easy])}


def separation_test(values: np.ndarray, n_perm: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Permutation test of :func:`teacher_separation`'s ratio against "the teacher does not
    matter": the teachers' labels are shuffled independently within each student seed (every
    teacher shares a seed's initialization and inputs, so a seed's runs stay together across
    rates), the best rates are chosen again, and the ratio recomputed. Returns ``(ratio, p)`` with
    ``p = (1 + #{shuffled ratio >= ratio}) / (1 + n_perm)``."""
    values = np.asarray(values, dtype=float)
    ratio = teacher_separation(values)["ratio"]
    rng = np.random.default_rng(seed)
    n_t, _, n_s = values.shape
    perms = np.argsort(rng.random((n_perm, n_s, n_t)), axis=-1)  # one shuffle of the teachers per permutation and seed
    seed_idx = np.arange(n_s)
    shuffled = values[perms.transpose(0, 2, 1)[:, :, None, :], np.arange(values.shape[1])[None, None, :, None],
                      seed_idx[None, None, None, :]]  # (n_perm, teachers, rates, seeds)
    lowest, _, highest = _separation_stats(shuffled)
    null = lowest.max(axis=-1) / highest.min(axis=-1)
    return ratio, float((1 + np.count_nonzero(null >= ratio)) / (1 + n_perm))


def same_member_factors(first, second, keys: Sequence[str]):
    """The runs that two tables of runs share (same ``keys``, ``lr`` and ``seed``: one member trained
    twice, e.g. in two records' ensembles of different composition), each with the factor between
    its two final losses (``max / min``, >= 1; members that are not finite in both are left out).

    Each member of :func:`~floss_utils.curse_of_memory.student_grids.run_grid` has its own
    student and data seeds, so where nothing else changed between the two runs (the code's
    arithmetic) only round-off tells them apart — batched products of another size, or another
    machine, sum in another order — and a factor far above 1 is round-off that training amplified;
    whether nothing else changed is for the caller to show (e.g. runs that agree where training is gentle).
    Returns a ``pandas.DataFrame``: ``keys``, ``lr``, ``seed``, ``first``, ``second``, ``factor``.
    """
    on = [*keys, "lr", "seed"]
    both = first[on + ["final_loss"]].merge(second[on + ["final_loss"]], on=on, suffixes=("_first", "_second"))
    both = both.rename(columns={"final_loss_first": "first", "final_loss_second": "second"})
    both = both[np.isfinite(both["first"]) & np.isfinite(both["second"])].reset_index(drop=True)
    both["factor"] = np.maximum(both["first"], both["second"]) / np.minimum(both["first"], both["second"])
    return both


def log_spread_test(values: Sequence[float], reference: Sequence[float], *, max_exact: int = 200_000,
                    n_perm: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """Whether the positive numbers ``values`` spread wider on a log scale than ``reference``.

    The statistic is the difference of the two samples' mean absolute deviations of ``log(x)``
    from their own median (the Brown-Forsythe measure of spread, which does not care where each
    sample sits). Under "both are draws of one distribution up to location" the deviations are
    nearly exchangeable between the samples, so the one-sided p-value is the fraction of the splits
    of the pooled deviations into groups of the two sizes whose difference is at least the observed
    one: every split when there are at most ``max_exact`` of them, else ``n_perm`` random splits
    (``p = (1 + hits) / (1 + n_perm)``, generator ``seed``). The enumeration is exact, the level
    approximate: deviations from each sample's own median are not exactly exchangeable, which
    makes the test slightly conservative at small sizes (about 4 % rejections at the 5 % level for
    8 against 10 log-normal values).

    Returns ``(factor, p)``: ``factor`` is ``exp`` of the difference (how many times wider the
    typical log deviation of ``values`` is, as a multiplicative factor) and ``p`` the p-value.
    """
    from math import comb
    from itertools import combinations

    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"each sample needs at least 2 values, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and (a > 0).all() and (b > 0).all()):
        raise ValueError("values and reference must be finite and positive (losses; a diverged run has no spread)")
    la, lb = np.log(a), np.log(b)
    dev = np.concatenate([np.abs(la - np.median(la)), np.abs(lb - np.median(lb))])
    n, total = a.size, dev.size
    observed = dev[:n].mean() - dev[n:].mean()
    if comb(total, n) <= max_exact:
        mask = np.zeros((comb(total, n), total), dtype=bool)
        for row, idx in enumerate(combinations(range(total), n)):
            mask[row, list(idx)] = True
        hits = np.count_nonzero(_split_difference(dev, mask, n) >= observed - 1e-12)
        p = hits / mask.shape[0]
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((n_perm, total)), axis=1) < n  # a random n-subset per row
        hits = np.count_nonzero(_split_difference(dev, order, n) >= observed - 1e-12)
        p = (1 + hits) / (1 + n_perm)
    return float(np.exp(observed)), float(p)


def _split_difference(dev: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``dev`` where ``mask`` is True (``n`` entries per row) minus its mean elsewhere."""
    inside = mask @ dev
    return inside / n - (dev.sum() - inside) / (dev.size - n)


def best_over_rates(runs, lrs: Sequence[float], by: str):
    """Per value of column ``by`` (e.g. ``"seed"`` or ``"teacher_seed"``), the lowest final loss
    over the runs whose learning rate lies on ``lrs`` (relative tolerance 1e-9) — each member's
    best rate chosen on its own run, as a one-seed record chooses it. A diverged run (non-finite
    loss) is never the best; a member that diverged at every rate gets ``inf``. Returns a
    ``pandas.Series`` indexed by ``by``; a value of ``by`` without a run on ``lrs`` is absent."""
    on = runs[[_on_grid(lr, lrs) for lr in runs["lr"]]]
    if len(on) == 0:
        raise ValueError(f"no runs at the learning rates {list(lrs)}")
    loss = on["final_loss"].where(np.isfinite(on["final_loss"]), np.inf)
    return loss.groupby(on[by]).min()


def teachers_against_seeds(per_teacher: Mapping[int, float], seeds: Sequence[float], published: float,
                           own_teacher: int = 0) -> dict:
    """One architecture at one memory: the best final loss per teacher (``per_teacher``, one
    student seed each) set beside one teacher's seeds (``seeds``: the final losses of
    ``own_teacher``'s seeds, each chosen as the teachers' values are) and beside the published value
    (from one other teacher).

    Returns a dict:

    * ``n_teachers``, ``min``, ``max``, ``geometric_mean`` of the teachers' losses;
    * ``published_rank``: ``(k, n + 1)`` from :func:`rank_among`, and ``published_where``:
      ``"below"`` (lower than every teacher's), ``"above"`` or ``"inside"`` their range;
    * ``within_factor_3``: how many teachers lie within :func:`within_factor` of the published value;
    * ``teacher_spread`` and ``seed_spread``: largest over smallest of each sample;
    * ``own_rank``: where ``own_teacher`` ranks among the teachers, 1 = the lowest loss (easiest);
    * ``spread_factor``, ``spread_p``: :func:`log_spread_test` of the other teachers (not
      ``own_teacher``, whose seeds are the other sample) against the seeds. With one seed per
      teacher the teachers' spread holds a seed's too, so a small ``p`` says the teacher adds spread
      of its own. The two samples should be chosen alike (e.g. each value the best over the same
      learning rates, :func:`best_over_rates`): a best over several rates is lower and less spread
      than a value at one rate.
    """
    values = {int(k): float(v) for k, v in dict(per_teacher).items()}
    if own_teacher not in values:
        raise ValueError(f"own_teacher {own_teacher} is not among the teachers {sorted(values)}")
    t = np.array(list(values.values()))
    if not np.all(np.isfinite(t)):
        raise ValueError(f"every teacher needs a finite loss (a run that did not diverge), got {values}")
    s = np.asarray(seeds, dtype=float)
    rank, n = rank_among(published, t)
    others = np.array([v for k, v in values.items() if k != own_teacher])
    factor, p = log_spread_test(others, s)
    return {"n_teachers": int(t.size), "min": float(t.min()), "max": float(t.max()),
            "geometric_mean": float(np.exp(np.log(t).mean())),
            "published_rank": (rank, n), "published_where": "below" if rank == 1 else "above" if rank == n else "inside",
            "within_factor_3": int(sum(within_factor(v, published) for v in t)),
            "teacher_spread": float(t.max() / t.min()), "seed_spread": float(s.max() / s.min()),
            "own_rank": int((t < values[own_teacher]).sum()) + 1,
            "spread_factor": factor, "spread_p": p}


def teacher_record_summary(best_per_teacher, published: float) -> dict:
    """What a teachers record keeps of one point: ``best_per_teacher`` holds one row per teacher
    (columns ``teacher_seed``, ``mean`` — its best final loss — and ``on_grid_edge``), e.g. one
    architecture's rows of ``best_learning_rates(runs, ["teacher_seed", ...])``. Returns the
    per-teacher losses (``{str(teacher): loss}``), ``min``, ``max`` and ``geometric_mean`` over
    the finite ones, where ``published`` ranks among them (:func:`rank_among`), how many are within
    :func:`within_factor` of it, and how many best rates sit on an edge of the rates run."""
    v = best_per_teacher.set_index("teacher_seed")["mean"]
    finite = v[np.isfinite(v)]
    if finite.empty:
        raise ValueError("no teacher has a finite best loss")
    rank, n = rank_among(published, finite.to_numpy())
    return {"per_teacher": {str(k): float(x) for k, x in v.items()},
            "min": float(finite.min()), "max": float(finite.max()),
            "geometric_mean": float(np.exp(np.log(finite).mean())),
            "published_rank": [rank, n],
            "teachers_within_factor_3": int(sum(within_factor(x, published) for x in finite)),
            "best_lr_on_grid_edge": int(best_per_teacher["on_grid_edge"].sum())}


def ordinal(k: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``11 -> "11th"``, ``23 -> "23rd"``."""
    if k % 100 in (11, 12, 13):
        return f"{k}th"
    return f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"
