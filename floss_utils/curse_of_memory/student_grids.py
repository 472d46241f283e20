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
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from .students import LRU, ComplexDiagonalRNN, DenseRNN
from .teacher import make_teacher
from .student_training import train_ensemble

__all__ = ["ARCHITECTURES", "RunConfig", "run_grid"]

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


def _build(arch: str, hidden: int, seeds: list[int], members: list[tuple], dtype, device):
    r_min = [c.nu0 for c, _, _ in members]
    phase = [c.max_phase for c, _, _ in members]
    if arch == "rnn":
        return DenseRNN(seeds, hidden, heads=[c.heads for c, _, _ in members], max_phase=phase,
                        dtype=dtype, device=device)
    if arch in ("complex", "complex_gamma"):
        return ComplexDiagonalRNN(seeds, hidden, gamma=arch == "complex_gamma", r_min=r_min, max_phase=phase,
                                  dtype=dtype, device=device)
    return LRU(seeds, hidden, r_min=r_min, max_phase=phase, dtype=dtype, device=device)


def run_grid(configs: Sequence[RunConfig], lrs: dict[str, Sequence[float]], seeds: Sequence[int], *,
             steps: int, batch_size: int, seq_len: int, teacher_seed: int = 0, seed_offset: int = 0,
             data_offset: int = 10_000, final_window: int = 100, dtype: torch.dtype = torch.float64,
             device="cpu", keep_curves: bool = False):
    """Train every configuration at every learning rate of its architecture and every seed.

    Args:
        configs: the configurations (duplicates are removed).
        lrs: learning-rate grid per architecture name.
        seeds: seeds (one member per configuration, learning rate and seed).
        steps, batch_size, seq_len, final_window: as in :func:`~floss_utils.curse_of_memory.student_training.train_ensemble`.
        teacher_seed: seed of every teacher (teachers differ by ``nu0`` and ``max_phase`` only).
        keep_curves: also return the loss curves.
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
    teachers = [make_teacher(teacher_seed, nu0, max_phase=ph, dtype=dtype, device=device) for nu0, ph in tasks]

    groups: dict[tuple, list[tuple]] = {}
    for c in configs:
        for lr in lrs[c.arch]:
            for s in seeds:
                groups.setdefault((c.arch, c.hidden), []).append((c, float(lr), int(s)))
    rows, curves = [], []
    for (arch, hidden), members in groups.items():
        model = _build(arch, hidden, [seed_offset + s for _, _, s in members], members, dtype, device)
        res = train_ensemble(
            model, teachers, lr=[lr for _, lr, _ in members], steps=steps,
            data_seeds=[data_offset + s for _, _, s in members],
            teacher_index=[tasks.index((c.nu0, c.max_phase)) for c, _, _ in members],
            batch_size=batch_size, seq_len=seq_len, final_window=final_window,
        )
        for i, (c, lr, s) in enumerate(members):
            rows.append({**asdict(c), "lr": lr, "seed": s, "final_loss": float(res.final_loss[i]),
                         "expected_loss": float(res.expected_loss[i]), "diverged": bool(res.diverged[i]),
                         "diverged_step": int(res.diverged_step[i])})
            if keep_curves:
                curves.append(res.losses[i].numpy())
    frame = pd.DataFrame(rows)
    return (frame, curves) if keep_curves else frame
