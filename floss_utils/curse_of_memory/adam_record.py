"""Reading a record of Adam's effective learning rates over students, learning rates and seeds (ZO Figs. 4, 9).

The record (chapter 6's ``zo_fig4_adam_paper``) holds two tidy tables:

* ``members``: one row per run — ``student, lr, seed, final_loss, loss_before, relative_loss,
  loss_trend, diverged`` (``final_loss``: mean batch loss over the last tenth of the steps;
  ``loss_before``: over the tenth before; ``relative_loss``: ``final_loss`` over the loss of the
  zero output; ``loss_trend``: the factor by which the loss moves per tenth of training, fitted
  over the last half);
* ``effective``: one row per run and parameter tensor — ``student, lr, seed, parameter,
  median_effective_lr, ceiling, fraction_of_ceiling``.

The functions here turn them into the chapter's tables, with every rule stated once:

* :func:`classify_runs` - which runs **failed** (blew up) and which **converged**;
* :func:`best_rates` - each student's best learning rate;
* :func:`slowest_reported` - per run, the smallest fraction of Adam's ceiling over the parameters
  a figure reports;
* :func:`best_rate_table` - each student at its best rate;
* :func:`contrast_by_rate` - every diagonal student against the dense reference at every rate,
  with the rules for leaving a pair out;
* :func:`paired_setting_contrast` - one student under two settings run on the same seeds (the
  LRU's two ranges of initial angles, record ``zo_fig9_lru_angles``): medians, a paired test and
  the converged counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..common import paired_comparison
from .landscape import effective_lr_contrast

__all__ = ["classify_runs", "converged", "best_rates", "slowest_reported", "best_rate_table", "contrast_by_rate",
           "PairedSettingContrast", "paired_setting_contrast"]

_MEMBER_COLUMNS = ("student", "lr", "seed", "final_loss", "loss_before", "relative_loss", "loss_trend", "diverged")


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks the columns {missing} (has {list(frame.columns)})")


def classify_runs(members: pd.DataFrame, *, converged_below: float = 1e-3, plateau_factor: float = 2.0) -> pd.DataFrame:
    """Flag failed and converged runs; a copy of ``members`` with two boolean columns added.

    A run **failed** when it diverged, when its relative loss is not finite, or when it ends above
    the zero output's loss (relative loss > 1: it blew up); its relative loss becomes ``inf``, so
    that it ranks last. A run **converged** (its Adam state reflects gradients at the optimum, the
    sense chapter 6 needs) when

    * its mean loss over each of the last two tenths of training is below ``converged_below`` times
      the zero output's (with 10 000 steps a tenth is Adam's second-moment memory ``1/(1 - b2)``,
      so ``v`` is built from gradients at that level), and
    * the fitted trend of its log batch loss over the last half of training moves the loss by less
      than ``plateau_factor`` per tenth, up or down (``loss_trend``, from
      :meth:`~floss_utils.curse_of_memory.landscape.AdamRun.loss_trend`).

    ``members`` needs ``relative_loss``, ``diverged``, ``loss_trend``, and the tenth before the last
    either as ``relative_loss_before`` or as ``loss_before`` with ``final_loss`` (absolute losses:
    the zero-output loss cancels in their ratio).
    """
    _require(members, ("relative_loss", "diverged", "loss_trend"), "members")
    if not (converged_below > 0 and plateau_factor > 1):
        raise ValueError(f"need converged_below > 0 and plateau_factor > 1, got {converged_below}, {plateau_factor}")
    out = members.copy()
    rel = out["relative_loss"].astype(float)
    if "relative_loss_before" in out.columns:
        rel_before = out["relative_loss_before"].astype(float)
    elif {"loss_before", "final_loss"} <= set(out.columns):
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_before = rel * out["loss_before"].astype(float) / out["final_loss"].astype(float)
    else:
        raise KeyError("members needs relative_loss_before, or loss_before and final_loss, for the tenth before the last "
                       f"(has {list(out.columns)})")
    out["failed"] = out["diverged"].astype(bool) | ~np.isfinite(rel) | (rel > 1)
    out["relative_loss"] = rel.where(~out["failed"], np.inf)
    out["converged"] = converged(out["relative_loss"].to_numpy(), rel_before.to_numpy(), out["loss_trend"].to_numpy(),
                                 converged_below=converged_below, plateau_factor=plateau_factor)
    return out


def converged(relative_loss, relative_loss_before, loss_trend, *, converged_below: float = 1e-3,
              plateau_factor: float = 2.0) -> np.ndarray:
    """:func:`classify_runs`' definition of a converged run on arrays of equal shape (one entry per
    run): both last tenths' mean losses below ``converged_below`` of the zero output's, and a fitted
    trend within ``plateau_factor`` per tenth, up or down. NaN anywhere gives False."""
    rel, before, trend = (np.asarray(x, dtype=float) for x in (relative_loss, relative_loss_before, loss_trend))
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.abs(np.log(trend))
    return (rel < converged_below) & (before < converged_below) & (moved < math.log(plateau_factor))


def best_rates(members: pd.DataFrame) -> pd.Series:
    """Each student's learning rate with the lowest median relative loss over seeds (failed runs
    count as ``inf``; run :func:`classify_runs` first). Returns a Series ``student -> lr`` in
    the order the students first appear."""
    _require(members, ("student", "lr", "relative_loss", "failed"), "members (classified)")
    med = members.groupby(["student", "lr"], sort=False)["relative_loss"].median().reset_index()
    return med.loc[med.groupby("student", sort=False)["relative_loss"].idxmin()].set_index("student")["lr"]


def slowest_reported(effective: pd.DataFrame, members: pd.DataFrame, reported: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per run that did not fail, the smallest ``fraction_of_ceiling`` over the parameters
    ``reported[student]`` (those the published figure shows).

    Failed runs are left out: their Adam state holds the moments of exploding gradients. Returns
    ``student, lr, seed, converged, fraction_of_ceiling``; students missing from ``reported``
    raise a ``KeyError``.
    """
    _require(effective, ("student", "lr", "seed", "parameter", "fraction_of_ceiling"), "effective")
    _require(members, ("student", "lr", "seed", "failed", "converged"), "members (classified)")
    unknown = sorted(set(effective["student"]) - set(reported))
    if unknown:
        raise KeyError(f"no reported parameters given for the students {unknown}")
    eff = effective.merge(members[["student", "lr", "seed", "failed", "converged"]], on=["student", "lr", "seed"])
    eff = eff[~eff["failed"]]
    eff = eff[[p in reported[s] for s, p in zip(eff["student"], eff["parameter"])]]
    return (eff.groupby(["student", "lr", "seed", "converged"], sort=False)["fraction_of_ceiling"].min()
            .reset_index())


def best_rate_table(members: pd.DataFrame, frac: pd.DataFrame, grid: Sequence[float]) -> pd.DataFrame:
    """Each student at its best rate (:func:`best_rates`): whether that rate is on an edge of
    ``grid``, the median and largest relative loss over seeds, and the median and smallest
    fraction of the ceiling of the slowest reported parameter (``frac`` from
    :func:`slowest_reported`)."""
    lo, hi = min(grid), max(grid)
    rows = []
    for student, lr in best_rates(members).items():
        m = members[(members["student"] == student) & np.isclose(members["lr"], lr)]
        f = frac[(frac["student"] == student) & np.isclose(frac["lr"], lr)]["fraction_of_ceiling"]
        rows.append({"student": student, "best lr": lr, "on grid edge": bool(np.isclose(lr, lo) or np.isclose(lr, hi)),
                     "final loss / zero output (median)": m["relative_loss"].median(),
                     "max over seeds": m["relative_loss"].max(),
                     "slowest recurrent eff. lr / ceiling (median)": f.median(), "min over seeds": f.min()})
    return pd.DataFrame(rows)


def contrast_by_rate(frac: pd.DataFrame, members: pd.DataFrame, *, reference: str = "dense RNN", min_runs: int = 3,
                     learned_below: float = 0.5, min_converged: int = 3) -> tuple[pd.DataFrame, list[str]]:
    """Every other student against ``reference`` at every learning rate, over seeds.

    Every student-rate pair of ``members`` (failed runs included) is considered. A pair is compared when both have at least ``min_runs`` runs that did not fail
    and the reference learned at that rate (median relative loss below ``learned_below``).
    Where the student converged in at least ``min_converged`` seeds only its converged runs
    enter ("after convergence"). Each comparison is :func:`~floss_utils.curse_of_memory.landscape.effective_lr_contrast`
    (median ratio and exact one-sided Mann-Whitney p that the student's fractions are larger).

    Returns ``(table, left_out)``: the table has ``lr, student, converged seeds, after
    convergence, median ratio to dense A, Mann-Whitney p, runs``; ``left_out`` names every pair
    not compared and why.
    """
    _require(frac, ("student", "lr", "seed", "converged", "fraction_of_ceiling"), "frac")
    if min_runs < 1 or min_converged < 1:
        raise ValueError(f"min_runs and min_converged must be >= 1, got {min_runs}, {min_converged}")
    _require(members, ("student", "lr", "relative_loss"), "members")
    rows, left_out = [], []
    pairs = members[members["student"] != reference][["lr", "student"]].drop_duplicates()  # every pair run, failed or not
    for lr, student in pairs.itertuples(index=False):
        g = frac[(frac["student"] == student) & np.isclose(frac["lr"], lr)]
        ref = frac[(frac["student"] == reference) & np.isclose(frac["lr"], lr)]["fraction_of_ceiling"]
        ref_loss = members[(members["student"] == reference) & np.isclose(members["lr"], lr)]["relative_loss"]
        learned = len(ref_loss) > 0 and bool(ref_loss.median() < learned_below)
        if min(len(g), len(ref)) < min_runs or not learned:
            why = "" if learned or len(ref_loss) == 0 else f", {reference} above {learned_below:g} of the zero-output loss"
            left_out.append(f"{student} at {lr:g} ({len(g)} vs {len(ref)} runs{why})")
            continue
        settled = int(g["converged"].sum()) >= min_converged
        sample = g[g["converged"]]["fraction_of_ceiling"] if settled else g["fraction_of_ceiling"]
        ratio, p = effective_lr_contrast(sample, ref)
        rows.append({"lr": lr, "student": student, "converged seeds": int(g["converged"].sum()),
                     "after convergence": settled, "median ratio to dense A": ratio, "Mann-Whitney p": p,
                     "runs": f"{len(sample)} vs {len(ref)}"})
    columns = ["lr", "student", "converged seeds", "after convergence", "median ratio to dense A", "Mann-Whitney p", "runs"]
    return pd.DataFrame(rows, columns=columns), left_out


@dataclass(frozen=True)
class PairedSettingContrast:
    """One positive quantity under two settings on the same seeds (see :func:`paired_setting_contrast`).

    ``median``: setting -> median over seeds; ``median_ratio``: treated median / control median;
    ``n``: seeds paired; ``n_greater``: seeds where treated > control; ``p_greater``: exact one-sided
    sign-flip p of the mean log ratio; ``ratio_lo, ratio_hi``: percentile-bootstrap interval
    (``level``) of the geometric-mean ratio treated / control; ``converged``: setting -> number of
    converged runs (:func:`classify_runs`).
    """

    median: dict[str, float]
    median_ratio: float
    n: int
    n_greater: int
    p_greater: float
    ratio_lo: float
    ratio_hi: float
    level: float
    converged: dict[str, int]


def paired_setting_contrast(members: pd.DataFrame, column: str, *, setting: str, treated: str, control: str,
                            level: float = 0.95) -> PairedSettingContrast:
    """Compare ``column`` (> 0) between two settings run on the same seeds.

    Args:
        members: one row per run with ``seed``, the column ``setting``, ``column``, and what
            :func:`classify_runs` needs (``relative_loss``, ``diverged``, ``loss_trend``).
        column: the positive quantity compared (e.g. ``"eff_lam_ang"``); compared as log ratios.
        setting: the column naming the setting of each run.
        treated, control: the two values of ``setting``; the ratio is treated / control.

    Runs are paired by ``seed``; a seed missing from either setting is an error (the pairing is the
    point), and so is a value that is not finite and positive. No run is dropped: the comparison is
    over every seed, and the converged counts (:func:`classify_runs`) say how many runs settled.
    """
    _require(members, ("seed", setting, column), "members")
    for name in (treated, control):
        if not (members[setting] == name).any():
            raise ValueError(f"no run with {setting} == {name!r} (settings: {sorted(members[setting].unique())})")
    by_seed = members.pivot(index="seed", columns=setting, values=column)[[treated, control]]
    if by_seed.isna().any().any():
        raise ValueError(f"seeds not run under both settings: {sorted(by_seed.index[by_seed.isna().any(axis=1)])}")
    values = by_seed.to_numpy(dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"{column} must be finite and positive to compare ratios")
    pair = paired_comparison(np.log(values[:, 0]), np.log(values[:, 1]), level=level)
    median = {name: float(np.median(by_seed[name])) for name in (treated, control)}
    conv = classify_runs(members).groupby(setting).converged.sum()
    return PairedSettingContrast(median=median, median_ratio=median[treated] / median[control], n=pair.n,
                                 n_greater=pair.n_greater, p_greater=pair.p_greater, ratio_lo=float(np.exp(pair.lo)),
                                 ratio_hi=float(np.exp(pair.hi)), level=level,
                                 converged={name: int(conv[name]) for name in (treated, control)})
