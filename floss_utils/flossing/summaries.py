"""Tidy summaries of flossing-schedule experiments (chapters 10 and 11).

From a :class:`~floss_utils.flossing.trainer.TrainResult` of an ensemble (members = seeds x
schedules x tasks):

* :func:`member_table`: one row per member (task family, order, delay, schedule, seed, whether
  and when it succeeded, its final held-out accuracy);
* :func:`success_summary`: success rate, median epochs-to-success and mean final accuracy per
  condition;
* :func:`longest_bridged`: for every schedule, the longest delay whose success rate reaches a
  given level (the horizon the schedule lets BPTT bridge within the training budget).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .trainer import TrainResult

__all__ = ["member_table", "success_summary", "longest_bridged", "fewest_exponents", "accuracy_curves"]


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


def success_summary(table: pd.DataFrame, by: Sequence[str] = ("family", "delay", "schedule")) -> pd.DataFrame:
    """Per condition: n (members), success_rate, median_epochs (among successes; NaN if none),
    mean_final_accuracy."""
    g = table.groupby(list(by), sort=True)
    out = g.agg(n=("success", "size"), success_rate=("success", "mean"),
                median_epochs=("success_epoch", "median"), mean_final_accuracy=("final_accuracy", "mean"))
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


def fewest_exponents(summary: pd.DataFrame, min_rate: float = 0.5, by: Sequence[str] = ("order",),
                     count: str = "n_floss") -> pd.DataFrame:
    """The smallest number of flossed exponents (column ``count``; 0 = no flossing) at which at
    least ``min_rate`` of the seeds succeed, per group of ``by``, from :func:`success_summary`
    output grouped by ``(*by, count)``; ``-1`` where no tried count reaches it."""
    if not 0 < min_rate <= 1:
        raise ValueError(f"min_rate must lie in (0, 1], got {min_rate}")
    rows = []
    for key, grp in summary.groupby(list(by), sort=True):
        ok = grp.loc[grp["success_rate"] >= min_rate, count]
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "fewest": int(ok.min()) if len(ok) else -1,
                     "most_tried": int(grp[count].max())})
    return pd.DataFrame(rows)


def accuracy_curves(result: TrainResult) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated epochs (E',) and the held-out accuracy there (E', M) (rows without any
    evaluation dropped)."""
    acc = result.accuracy
    keep = torch.isfinite(acc).any(1)
    return result.epochs[keep].numpy(), acc[keep].numpy()
