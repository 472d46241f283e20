"""Grids of teacher–student runs (ZO Figs. 3, 10, 11): many configurations, one program each.

A configuration is an architecture plus the task it learns (:class:`RunConfig`). :func:`run_grid`
expands configurations x learning rates x seeds into ensemble members and groups all members
that share a student class and shape into **one** call of
:func:`floss_utils.curse_of_memory.student_training.train_ensemble` — e.g. every dense RNN of the chapter (all ``nu0``,
all head counts, all angle ranges, all learning rates and seeds) trains as one tensor program,
with per-member teachers, heads, initialization ranges and learning rates.

Seeds: member seed ``s`` initializes the student (``seed_offset + s``) and draws its input
stream (``data_offset + s``), so all configurations and learning rates of one seed see the same
input batches (common random numbers); the teachers all come from one ``teacher_seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import torch

from ..progress import report_progress
from .students import LRU, ComplexDiagonalRNN, DenseRNN
from .teacher import make_teacher
from .student_training import train_ensemble

__all__ = ["ARCHITECTURES", "ZO_FIG10_GRIDS", "CONFIG_KEYS", "RunConfig", "FigureConfigs", "figure_configs", "run_grid", "run_grid_per_teacher", "rows_of", "best_run", "off_grid", "beyond_edge",
           "at_learning_rates", "runs_at_best", "best_at_grid_edge", "bracket", "missing_learning_rates", "merge_runs"]

#: ZO's learning-rate grids for Fig. 10 (their ``scans/shrink_eigvals_p1``/``p2``/``p3.yaml``: LRU, complex diagonal
#: RNN, dense RNN), by architecture name; Fig. 3B's scans use other grids
ZO_FIG10_GRIDS = {"lru": [1.0, 0.32, 0.1, 0.032, 0.01, 3.2e-3, 1e-3, 3.2e-4], "complex": [1e-2, 3.2e-3, 1e-3, 3.2e-4],
                  "rnn": [1e-3, 3.2e-4, 1e-4, 3.2e-5]}

#: architecture name -> what it is
ARCHITECTURES = {
    "rnn": "dense linear RNN (heads > 1: block-diagonal multi-head RNN)",
    "complex": "complex diagonal RNN, lambda learned as real and imaginary parts, no normalization",
    "complex_gamma": "complex diagonal RNN with learned normalization gamma",
    "lru": "LRU: exponential parametrization of magnitude and angle, learned log-gamma",
}


@dataclass(frozen=True)
class RunConfig:
    """One student architecture on one teacher.

    Attributes:
        arch: a key of :data:`ARCHITECTURES`.
        nu0: the teacher's smallest eigenvalue modulus; diagonal students are ring-initialized
            on ``[nu0, 1)`` (ZO's ``force_lsi_min_nu_model``), dense students with ``r_min = 0``.
        max_phase: angle range of teacher and student (``pi``: full).
        heads: number of diagonal blocks (``arch="rnn"`` only).
        hidden: student size.
    """

    arch: str
    nu0: float
    max_phase: float = math.pi
    heads: int = 1
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {list(ARCHITECTURES)}, got {self.arch!r}")
        if self.arch != "rnn" and self.heads != 1:
            raise ValueError(f"heads applies to arch='rnn' only, got heads={self.heads} for {self.arch!r}")


#: the columns of :func:`run_grid`'s table that identify a configuration
CONFIG_KEYS = ("arch", "nu0", "max_phase", "heads", "hidden")


@dataclass
class FigureConfigs:
    """The configurations of ZO's teacher-student figures, by figure.

    Attributes:
        fig3a: ``(dense RNN, LRU)`` at every teacher memory ``nu0``, in that order.
        ablation: Fig. 3B at ``nu0 = 0.99``, label -> configuration (dense RNN, block-diagonal
            2x2, "more neurons" (twice the units, still 2x2 blocks), complex diagonal without
            and with ``gamma``, LRU).
        fig10: dense RNN, complex diagonal and LRU at every angle range, at ``nu0 = 0.99``.
        fig11: the dense RNN split into each number of heads, at ``nu0 = 0.99``.
    """

    fig3a: list[RunConfig] = field(default_factory=list)
    ablation: dict[str, RunConfig] = field(default_factory=dict)
    fig10: list[RunConfig] = field(default_factory=list)
    fig11: list[RunConfig] = field(default_factory=list)

    def all(self) -> list[RunConfig]:
        """Every configuration once, in figure order (the order :func:`run_grid` trains them)."""
        return list(dict.fromkeys([*self.fig3a, *self.ablation.values(), *self.fig10, *self.fig11]))


def figure_configs(nu0s: Sequence[float], max_phases: Sequence[float], heads: Sequence[int], hidden: int,
                   *, angle_archs: Sequence[str] = ("rnn", "complex", "lru")) -> FigureConfigs:
    """The configurations of ZO's Figs. 3A, 3B, 10 and 11 for students of ``hidden`` units.

    ``max_phases[0]`` is the angle range of Figs. 3 and 11; ``heads`` must divide ``hidden``
    and ``hidden`` must be even (the 2x2 blocks of the ablation).
    """
    bad = [h for h in heads if hidden % h]
    if bad or hidden % 2:
        raise ValueError(f"hidden = {hidden} must be even and divisible by every number of heads (not {bad})")
    th0, n = max_phases[0], hidden
    out = FigureConfigs()
    for nu0 in nu0s:
        out.fig3a += [RunConfig("rnn", nu0, th0, hidden=n), RunConfig("lru", nu0, th0, hidden=n)]
    out.ablation = {
        "dense RNN": RunConfig("rnn", 0.99, th0, hidden=n),
        "block-diag. 2x2": RunConfig("rnn", 0.99, th0, heads=n // 2, hidden=n),
        f"more neurons ({2 * n}, 2x2)": RunConfig("rnn", 0.99, th0, heads=n, hidden=2 * n),
        "complex diag.": RunConfig("complex", 0.99, th0, hidden=n),
        "complex diag. + $\\gamma$": RunConfig("complex_gamma", 0.99, th0, hidden=n),
        "LRU": RunConfig("lru", 0.99, th0, hidden=n),
    }
    out.fig10 = [RunConfig(a, 0.99, ph, hidden=n) for ph in max_phases for a in angle_archs]
    out.fig11 = [RunConfig("rnn", 0.99, th0, heads=h, hidden=n) for h in heads]
    return out


def run_grid_per_teacher(configs: Sequence[RunConfig], lrs: dict[str, Sequence[float]], seeds: Sequence[int],
                         teacher_seeds: Sequence[int], partial=None, on_teacher=None, **grid_kw):
    """:func:`run_grid` on each teacher of ``teacher_seeds`` in turn, resumable.

    Returns the runs of every teacher in one table with a first column ``teacher_seed`` and a
    last column ``theta0_over_pi`` (``max_phase / pi``, rounded to 6 digits). With ``partial`` (a
    CSV path) the table so far is written there after each teacher, and teachers already in it
    are not run again (a stopped record resumes). ``on_teacher(teacher_seed, frame)`` is called
    with each teacher's runs as soon as they are done (e.g. to print a summary; not for teachers
    read back from ``partial``). ``grid_kw`` goes to :func:`run_grid`.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    done = pd.read_csv(partial) if partial is not None and Path(partial).exists() else pd.DataFrame()
    for ts in teacher_seeds:
        if len(done) and (done.teacher_seed == ts).any():
            continue
        frame = run_grid(configs, lrs, seeds, teacher_seed=ts, **grid_kw)
        frame.insert(0, "teacher_seed", ts)
        frame["theta0_over_pi"] = np.round(frame.max_phase / math.pi, 6)
        done = pd.concat([done, frame], ignore_index=True)
        if partial is not None:
            done.to_csv(partial, index=False)
        if on_teacher is not None:
            on_teacher(ts, frame)
    return done


def rows_of(table, config: RunConfig):
    """The rows of ``table`` (any table with the columns :data:`CONFIG_KEYS`: runs, best learning
    rates, :func:`runs_at_best`) that belong to ``config``; real-valued keys are compared with
    ``numpy.isclose``, the others exactly. Zero rows is a valid answer."""
    import numpy as np

    sel = table
    for k in CONFIG_KEYS:
        v = getattr(config, k)
        sel = sel[np.isclose(sel[k], v)] if k in ("nu0", "max_phase") else sel[sel[k] == v]
    return sel


def best_run(best, config: RunConfig):
    """The row of a :func:`~floss_utils.curse_of_memory.student_training.best_learning_rates`
    table (keyed by :data:`CONFIG_KEYS`) for ``config`` (matched by :func:`rows_of`). Raises
    ``KeyError`` unless exactly one row matches."""
    sel = rows_of(best, config)
    if len(sel) != 1:
        raise KeyError(f"{len(sel)} rows of the table match {config}")
    return sel.iloc[0]


def best_at_grid_edge(best, lrs: Mapping[str, Sequence[float]]):
    """Per row of a best-learning-rate table: whether its best learning rate is the smallest
    or the largest of its architecture's grid (the grid may not contain the true optimum).
    Returns a boolean ``pandas.Series`` aligned with ``best``."""
    return best.apply(lambda r: float(r["lr"]) in (min(lrs[r["arch"]]), max(lrs[r["arch"]])), axis=1)


def bracket(best, runs, lrs: Mapping[str, Sequence[float]], keys: Sequence[str] = CONFIG_KEYS):
    """What brackets each configuration's best learning rate on its grid: per row of a
    :func:`~floss_utils.curse_of_memory.student_training.best_learning_rates` table ``best``, the
    grid's next smaller (``below``) and next larger (``above``) rate of its architecture (``lrs``;
    NaN past the grid's edge) and, from ``runs``, how many seeds diverged at each
    (``below_diverged``, ``above_diverged``) and the mean final loss there (``below_mean``,
    ``above_mean``; inf when a seed diverged). A best rate is bracketed by a *worse mean* on a side
    where that side's mean is finite; where a seed diverged there, only the divergence bounds it.
    Returns a ``pandas.DataFrame`` aligned with ``best``, with ``keys`` and ``lr`` first.
    """
    import numpy as np
    import pandas as pd

    keys = list(keys)
    rows = []
    for r in best.itertuples(index=False):
        r = r._asdict()
        grid = sorted(float(v) for v in lrs[r["arch"]])
        i = int(np.argmin([abs(np.log(g / float(r["lr"]))) for g in grid]))
        row = {k: r[k] for k in keys} | {"lr": float(r["lr"])}
        sel = np.logical_and.reduce([np.isclose(runs[k].astype(float), float(r[k])) if isinstance(r[k], float)
                                     else (runs[k] == r[k]).to_numpy() for k in keys])
        for side, j in (("below", i - 1), ("above", i + 1)):
            if 0 <= j < len(grid):
                at = runs[sel & np.isclose(runs["lr"].astype(float), grid[j], rtol=1e-9, atol=0)]
                vals = at["final_loss"].astype(float).to_numpy()
                n_div = int((~np.isfinite(vals)).sum())
                row |= {side: grid[j], f"{side}_diverged": n_div,
                        f"{side}_mean": float(vals.mean()) if len(vals) and n_div == 0 else float("inf")}
            else:
                row |= {side: float("nan"), f"{side}_diverged": 0, f"{side}_mean": float("nan")}
        rows.append(row)
    return pd.DataFrame(rows)


def at_learning_rates(frame, lrs: Sequence[float]):
    """The rows of a table of runs whose ``lr`` is one of ``lrs`` (relative tolerance 1e-9), e.g. to
    read a record over another grid's rates. Raises ``ValueError`` when a rate of ``lrs`` has no run."""
    import numpy as np

    rates = frame["lr"].astype(float).to_numpy()
    hit = [np.isclose(rates, lr, rtol=1e-9, atol=0) for lr in lrs]
    absent = [lr for lr, h in zip(lrs, hit) if not h.any()]
    if absent:
        raise ValueError(f"no runs at the learning rates {absent} (the table has {sorted(set(rates.tolist()))})")
    return frame[np.logical_or.reduce(hit)]


def off_grid(rates: Mapping[object, float] | Sequence[float], grid: Sequence[float]) -> list:
    """Which learning rates are not on ``grid`` (relative tolerance 1e-9), e.g. the rates a record
    added to a paper's grid. ``rates``: a sequence of rates (returns those off the grid, in order)
    or a mapping ``{key: rate}`` such as a record's best rate per configuration (returns the keys
    whose rate is off the grid)."""
    import numpy as np

    grid = np.asarray([float(g) for g in grid])
    if grid.size == 0:
        raise ValueError("grid is empty")

    def off(lr: float) -> bool:
        return not np.isclose(grid, float(lr), rtol=1e-9, atol=0).any()

    if isinstance(rates, Mapping):
        return [k for k, lr in rates.items() if off(lr)]
    return [lr for lr in rates if off(lr)]


def runs_at_best(runs, best, keys: Sequence[str] = CONFIG_KEYS):
    """The runs (one row per seed) at each configuration's best learning rate.

    Args:
        runs: a table of runs with the columns ``keys``, ``lr`` and ``seed``.
        best: a :func:`~floss_utils.curse_of_memory.student_training.best_learning_rates` table of
            the same runs, keyed by ``keys``.
    Returns the rows of ``runs`` whose configuration and learning rate match a row of ``best``
    (learning rates compared with a relative tolerance of 1e-9), with ``best``'s ``mean`` and
    ``sem`` added as ``best_mean`` and ``best_sem``.
    """
    import numpy as np

    keys = list(keys)
    merged = runs.merge(best[keys + ["lr", "mean", "sem"]].rename(columns={"lr": "best_lr", "mean": "best_mean",
                                                                            "sem": "best_sem"}), on=keys)
    at = merged[np.isclose(merged["lr"].astype(float), merged["best_lr"].astype(float), rtol=1e-9, atol=0)]
    return at.drop(columns="best_lr").reset_index(drop=True)


def beyond_edge(best_lr: float, run: Sequence[float], grid: Sequence[float]) -> float | None:
    """The next learning rate to try when a configuration's best rate sits on an edge of the rates
    ``run`` so far: the neighbour on ``grid`` beyond that edge (the next larger rate when the best is
    the largest run, the next smaller when it is the smallest), or None when the best is inside the
    run rates or ``grid`` has nothing beyond it. A best rate that is not finite (every rate had a
    diverged seed, see :func:`~floss_utils.curse_of_memory.student_training.best_learning_rates`
    with ``mean = inf``) counts as the largest edge's failure: the next smaller rate is returned.
    Rates are compared with a relative tolerance of 1e-9."""
    import numpy as np

    run, grid = sorted(float(r) for r in run), sorted(float(g) for g in grid)
    if not run:
        raise ValueError("no learning rate has been run")
    if not math.isfinite(best_lr):
        lower = [g for g in grid if g < run[0] and not np.isclose(g, run[0], rtol=1e-9, atol=0)]
        return lower[-1] if lower else None
    if not any(np.isclose(best_lr, r, rtol=1e-9, atol=0) for r in run):
        raise ValueError(f"best_lr {best_lr:g} is not one of the rates run {run}")
    if np.isclose(best_lr, run[-1], rtol=1e-9, atol=0):
        higher = [g for g in grid if g > run[-1] and not np.isclose(g, run[-1], rtol=1e-9, atol=0)]
        if higher:
            return higher[0]
    if np.isclose(best_lr, run[0], rtol=1e-9, atol=0):
        lower = [g for g in grid if g < run[0] and not np.isclose(g, run[0], rtol=1e-9, atol=0)]
        if lower:
            return lower[-1]
    return None


def merge_runs(done, new, *, extra_keys: Sequence[str] = ()):
    """``done`` with the rows of ``new`` (both tables of finished runs, as :func:`run_grid` returns),
    a run of ``new`` replacing any earlier one of the same configuration (:data:`CONFIG_KEYS`, plus
    ``extra_keys`` for a table that tells runs apart by more columns, e.g. a teacher seed), learning
    rate and seed — so that a record grown to more seeds (where a learning rate short of seeds runs
    all of them again) counts each seed once, from its latest run."""
    import pandas as pd

    keys = [*CONFIG_KEYS, *extra_keys, "lr", "seed"]
    missing = [k for k in keys if k not in new.columns or (len(done) and k not in done.columns)]
    if missing:
        raise KeyError(f"merge_runs: the tables lack the key columns {missing}")
    merged = pd.concat([done, new], ignore_index=True)
    return merged.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def missing_learning_rates(done, grids: Mapping[str, Sequence[float]], *, where: Mapping[str, float] | None = None,
                           seeds: int = 1) -> dict[str, list[float]]:
    """The learning rates of ``grids`` not yet run with ``seeds`` distinct seeds (to resume a record).

    Args:
        done: a table of finished runs (pandas DataFrame with columns ``arch``, ``lr``, ``seed`` and
            those named in ``where``; may be empty).
        grids: architecture -> the learning rates that should be run.
        where: column -> value the runs must have (e.g. ``{"nu0": 0.92}``; floats compared with
            ``math.isclose``).
        seeds: distinct seeds a learning rate needs to count as done.
    Returns:
        architecture -> its missing learning rates in the order of ``grids`` (architectures with
        nothing missing are left out).
    """
    import numpy as np

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    where = dict(where or {})
    if len(done):
        lacking = [c for c in ("arch", "lr", "seed", *where) if c not in done.columns]
        if lacking:
            raise ValueError(f"the table of finished runs lacks columns {lacking}")
    todo = {}
    for arch, lrs in grids.items():
        rows = done
        if len(rows):
            mask = rows["arch"] == arch
            for col, val in where.items():
                mask &= np.isclose(rows[col].astype(float), float(val), rtol=1e-9, atol=0)
            rows = rows[mask]
        missing = [lr for lr in lrs if not len(rows) or
                   rows[np.isclose(rows["lr"].astype(float), lr, rtol=1e-9, atol=0)]["seed"].nunique() < seeds]
        if missing:
            todo[arch] = list(missing)
    return todo


def _build(arch: str, hidden: int, seeds: list[int], members: list[tuple], dtype, device,
           real_eigenvalues: str = "stay_real"):
    r_min = [c.nu0 for c, _, _ in members]
    phase = [c.max_phase for c, _, _ in members]
    if arch == "rnn":
        return DenseRNN(seeds, hidden, heads=[c.heads for c, _, _ in members], max_phase=phase,
                        real_eigenvalues=real_eigenvalues, dtype=dtype, device=device)
    if arch in ("complex", "complex_gamma"):
        return ComplexDiagonalRNN(seeds, hidden, gamma=arch == "complex_gamma", r_min=r_min, max_phase=phase,
                                  dtype=dtype, device=device)
    return LRU(seeds, hidden, r_min=r_min, max_phase=phase, dtype=dtype, device=device)


def run_grid(configs: Sequence[RunConfig], lrs: dict[str, Sequence[float]], seeds: Sequence[int], *,
             steps: int, batch_size: int, seq_len: int, teacher_seed: int = 0, seed_offset: int = 0,
             data_offset: int = 10_000, final_window: int = 100, dtype: torch.dtype = torch.float64,
             device="cpu", keep_curves: bool = False, real_eigenvalues: str = "stay_real", blowup: float = 1e4):
    """Train every configuration at every learning rate of its architecture and every seed.

    Args:
        configs: the configurations (duplicates are removed).
        lrs: learning-rate grid per architecture name.
        seeds: seeds (one member per configuration, learning rate and seed).
        steps, batch_size, seq_len, final_window: as in :func:`~floss_utils.curse_of_memory.student_training.train_ensemble`.
        teacher_seed: seed of every teacher (teachers differ by ``nu0`` and ``max_phase`` only).
        keep_curves: also return the loss curves.
        real_eigenvalues: the rule for real eigenvalues when angles are scaled, in the teachers
            and the dense students' initialization: ``"stay_real"`` (the book's) or ``"zo_code"``
            (ZO's public code), see :func:`~floss_utils.curse_of_memory.students.shape_eigenvalues`.
        blowup: a member whose batch loss exceeds ``blowup`` times its initial loss is marked
            diverged (:func:`~floss_utils.curse_of_memory.student_training.train_ensemble`);
            ``math.inf``: only a non-finite loss is, as in ZO's code, which stops a run when its loss is NaN.
    Returns:
        A tidy ``pandas.DataFrame`` with one row per run: the configuration's fields, ``lr``,
        ``seed``, ``final_loss`` (inf if diverged), ``expected_loss``, ``diverged``,
        ``diverged_step``; with ``keep_curves`` a tuple ``(frame, curves)`` where ``curves[i]``
        is row ``i``'s loss curve (numpy array of ``steps`` values).
    """
    import pandas as pd

    configs = list(dict.fromkeys(configs))
    if not configs:
        raise ValueError("configs must not be empty")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise TypeError(f"configs must be RunConfig instances, got {type(c).__name__}")
        if c.arch not in lrs or len(lrs[c.arch]) == 0:
            raise ValueError(f"no learning rates given for arch {c.arch!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    tasks = list(dict.fromkeys((c.nu0, c.max_phase) for c in configs))
    teachers = [make_teacher(teacher_seed, nu0, max_phase=ph, dtype=dtype, device=device,
                           real_eigenvalues=real_eigenvalues) for nu0, ph in tasks]

    groups: dict[tuple, list[tuple]] = {}
    for c in configs:
        for lr in lrs[c.arch]:
            for s in seeds:
                groups.setdefault((c.arch, c.hidden), []).append((c, float(lr), int(s)))
    rows, curves = [], []
    total = steps * sum(len(m) for m in groups.values())  # progress in member-steps (every one counted alike)
    done = 0
    for g, ((arch, hidden), members) in enumerate(groups.items()):
        where = f"stopped in group {g + 1} of {len(groups)}: {arch}, {hidden} units, {len(members)} members"
        model = _build(arch, hidden, [seed_offset + s for _, _, s in members], members, dtype, device, real_eigenvalues)
        res = train_ensemble(
            model, teachers, lr=[lr for _, lr, _ in members], steps=steps,
            data_seeds=[data_offset + s for _, _, s in members],
            teacher_index=[tasks.index((c.nu0, c.max_phase)) for c, _, _ in members],
            batch_size=batch_size, seq_len=seq_len, final_window=final_window, blowup=blowup,
            on_step=lambda k, before=done, m=len(members), where=where: report_progress(
                "run_grid", before + m * k, total, unit="member-steps", detail=where),
        )
        done += len(members) * steps
        for i, (c, lr, s) in enumerate(members):
            rows.append({**asdict(c), "lr": lr, "seed": s, "final_loss": float(res.final_loss[i]),
                         "expected_loss": float(res.expected_loss[i]), "diverged": bool(res.diverged[i]),
                         "diverged_step": int(res.diverged_step[i])})
            if keep_curves:
                curves.append(res.losses[i].numpy())
    frame = pd.DataFrame(rows)
    return (frame, curves) if keep_curves else frame
