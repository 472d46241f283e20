"""What every part of the package shares: devices and precisions, seeded random streams, and the
base class of member-batched networks.

* :func:`resolve_device`, :func:`resolve_dtype` - ``"auto"`` -> CUDA when present; the two
  floating-point precisions the book uses.
* :func:`seeded_generator` - an independent random stream per tuple of integer keys
  (member seed, purpose, epoch, step), whatever order they are drawn in.
* :class:`MemberBatched` - an ensemble of M networks whose parameters ``J, W_s, b, w_r, c, x0``
  (:data:`PARAM_NAMES`) carry the member axis first: shapes, copies, casts, member selection.
* :func:`wilson_interval`, :func:`fisher_greater`, :func:`bootstrap_interval` - the statistics
  every chapter uses to compare rates and means across conditions: Wilson score intervals of a
  success rate, the one-sided Fisher exact test of two rates, percentile bootstrap intervals.
* :func:`median_interval` - the distribution-free interval of a median from two order statistics
  (what "the median teacher" claims rest on when there are only a handful of teachers).
* :func:`paired_comparison` - a paired difference across seeds: its mean with a bootstrap
  interval and the exact one-sided sign-flip test (what "on average over seeds" claims rest on).

Nothing here imports another module of the package.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["resolve_device", "resolve_dtype", "seeded_generator", "MemberBatched", "PARAM_NAMES",
           "wilson_interval", "fisher_greater", "bootstrap_interval", "median_interval", "mcnemar_exact", "PairedComparison", "paired_comparison", "loglog_slope", "holm",
           "holm_threshold", "holm_reachable", "sign_test_greater", "cluster_signs"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when available, otherwise CPU; pass other values through."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available here")
    try:
        return torch.device(device)
    except RuntimeError as exc:  # pragma: no cover - message comes from torch
        raise ValueError(f"unknown device {device!r}: {exc}") from None


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Accept ``"float32"``/``"float64"`` (or the torch dtypes) and nothing else."""
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype):
        if dtype not in table.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


#: the parameters of a member-batched network, each with the member axis first.
PARAM_NAMES = ("J", "W_s", "b", "w_r", "c", "x0")


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator whose seed is a hash (NumPy ``SeedSequence``) of the integer ``keys``:
    independent streams for (member seed, purpose, epoch, step), whatever order they are used in."""
    for k in keys:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"generator keys must be non-negative ints, got {keys!r}")
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class MemberBatched:
    """What every member-batched Part III network shares (:class:`~floss_utils.flossing.tanh_network.GFNetwork`,
    :class:`floss_utils.flossing.gated_cells.CellNetwork`): the parameters ``J, W_s, b, w_r, c, x0`` (names in
    :data:`PARAM_NAMES`, member axis first), their shapes, and copies, casts and member selections
    that keep the ensemble's type."""

    J: Tensor
    x0: Tensor

    # ---- shapes
    @property
    def n_members(self) -> int:
        return self.J.shape[0]

    @property
    def batch_size(self) -> int:
        return self.x0.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.J.dtype

    @property
    def device(self) -> torch.device:
        return self.J.device

    # ---- parameters
    def tensors(self, names: Sequence[str] = PARAM_NAMES) -> list[Tensor]:
        """The named parameter tensors, in the order given."""
        bad = [n for n in names if n not in PARAM_NAMES]
        if bad:
            raise ValueError(f"unknown {type(self).__name__} parameter(s) {bad}; known: {list(PARAM_NAMES)}")
        return [getattr(self, n) for n in names]

    def requires_grad_(self, flag: bool = True):
        for t in self.tensors():
            t.requires_grad_(flag)
        return self

    def _new(self, fn: Callable[[Tensor], Tensor]):
        """The same kind of ensemble with ``fn`` applied to every parameter."""
        return type(self)(**{n: fn(getattr(self, n)) for n in PARAM_NAMES})

    def clone(self):
        """A detached copy (same values, no gradient tracking)."""
        return self._new(lambda t: t.detach().clone())

    def to(self, dtype: torch.dtype):
        """The ensemble in another precision (differentiable cast; ``self`` if already there)."""
        return self if dtype == self.dtype else self._new(lambda t: t.to(dtype))

    def select(self, index: Tensor | Sequence[int]):
        """Members ``index`` (differentiable gather: gradients flow back to this ensemble)."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return self._new(lambda t: t[idx])

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.tensors())

    # ---- inputs
    def _check_inputs(self, s: Tensor, x0: Optional[Tensor]) -> Tensor:
        """Inputs s (T, M, B) against the ensemble; returns the initial state (x0 or the learned one)."""
        M = self.n_members
        if s.ndim != 3 or s.shape[1] != M:
            raise ValueError(f"inputs must have shape (T, M={M}, B), got {tuple(s.shape)}")
        x = self.x0 if x0 is None else x0
        if x.shape[:2] != (M, s.shape[2]):
            raise ValueError(f"initial state has shape {tuple(x.shape)} but inputs have B = {s.shape[2]}")
        return x


# ---------------------------------------------------------------- statistics of rates and means
def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2))


def wilson_interval(successes, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a success rate ``successes / n`` at confidence ``level``.

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the two-sided normal
    quantile; unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse at
    0 or n successes (0 of n: upper end ``z^2 / (n + z^2)``). Element-wise over arrays; ``n = 0``
    gives the uninformative interval (0, 1).

    Returns:
        (low, high), arrays of the broadcast shape (0-d for scalar arguments).
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie in [0, n]")
    z = _z(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return lo, hi


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact test that rate 1 exceeds rate 2: the p-value
    ``P(X >= k1)`` of the hypergeometric law of the first group's successes given the margins
    (``k1 + k2`` successes among ``n1 + n2`` trials, ``n1`` in group 1) under equal rates.
    Assumes independent trials; it is conservative (it conditions on both margins)."""
    for v in (k1, n1, k2, n2):
        if int(v) != v or v < 0:
            raise ValueError(f"counts must be non-negative integers, got {(k1, n1, k2, n2)}")
    if k1 > n1 or k2 > n2:
        raise ValueError(f"successes exceed trials: {(k1, n1, k2, n2)}")
    from scipy.stats import hypergeom

    total, hits = int(n1 + n2), int(k1 + k2)
    return float(min(1.0, hypergeom.sf(int(k1) - 1, total, hits, int(n1))))


def mcnemar_exact(a, b) -> tuple[int, int, float]:
    """Exact two-sided McNemar test that two paired binary outcomes have the same rate.

    ``a, b``: (n,) booleans, one pair per unit (e.g. "stalled" for the same seed under two
    conditions). Only the discordant pairs carry information: ``n10`` units with ``a`` true and
    ``b`` false, ``n01`` the reverse. Under the null each discordant pair goes either way with
    probability 1/2, so ``p = min(1, 2 P(Binomial(n10 + n01, 1/2) <= min(n10, n01)))``
    (1 when there is no discordant pair).

    Returns:
        (n10, n01, p).
    """
    x = np.asarray(a).reshape(-1)
    y = np.asarray(b).reshape(-1)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"need two non-empty paired samples of equal length, got {x.size} and {y.size}")
    if x.dtype != bool or y.dtype != bool:
        raise TypeError(f"outcomes must be booleans, got {x.dtype} and {y.dtype}")
    n10, n01 = int((x & ~y).sum()), int((~x & y).sum())
    if n10 + n01 == 0:
        return n10, n01, 1.0
    from scipy.stats import binom

    return n10, n01, float(min(1.0, 2 * binom.cdf(min(n10, n01), n10 + n01, 0.5)))


def bootstrap_interval(values, statistic: Callable = np.mean, level: float = 0.95, n_boot: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the 1-d sample ``values`` (resampled
    with replacement ``n_boot`` times from a seeded stream; ``statistic`` must accept an
    ``axis`` argument, as NumPy's reductions do). A single value gives the degenerate interval."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("values must not be empty")
    _z(level)  # validates level
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    stats = np.asarray(statistic(x[idx], axis=1), dtype=float)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def median_interval(values, level: float = 0.9) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the population median from order statistics.

    For a sample of ``n`` independent draws sorted as ``x_(1) <= ... <= x_(n)``, the interval
    ``[x_(k), x_(n+1-k)]`` covers the median of any continuous distribution with probability
    ``1 - 2 P(Binomial(n, 1/2) <= k - 1)``. The widest ``k`` whose coverage is at least ``level``
    is taken; when even ``k = 1`` (the sample's range) falls short, the range is returned with its
    lower coverage.

    Returns ``(lo, hi, coverage)``.
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=float).ravel())
    n = x.size
    if n == 0:
        raise ValueError("values must not be empty")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    coverage = lambda k: float(1 - 2 * binom.cdf(k - 1, n, 0.5))
    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return float(x[k - 1]), float(x[n - k]), coverage(k)


@dataclass(frozen=True)
class PairedComparison:
    """The paired differences ``d_j = a_j - b_j`` over ``n`` seeds, summarized.

    Attributes:
        n: number of pairs.
        mean: mean difference.
        lo, hi: percentile-bootstrap interval of the mean at ``level``.
        n_greater: pairs with ``d_j > 0``.
        p_greater: exact one-sided sign-flip p-value for "the mean difference is > 0" (under
            the null each ``d_j`` is as likely to have either sign); Monte Carlo beyond 20 pairs.
        p_min: the smallest p-value the test can reach with ``n`` pairs: ``2^-n`` when exact
            (``n <= 20``), ``1 / (1 + n_flips)`` on the Monte Carlo path; at level ``alpha`` the
            test can decide only when ``p_min < alpha``.
        level: the interval's confidence level.
    """

    n: int
    mean: float
    lo: float
    hi: float
    n_greater: int
    p_greater: float
    p_min: float
    level: float

    def decidable(self, alpha: float) -> bool:
        """Whether ``n`` pairs can reach ``p < alpha`` at all."""
        return self.p_min < alpha


def loglog_slope(x, y, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0,
                 groups=None) -> tuple[float, float, float]:
    """The least-squares slope of ``log y`` against ``log x`` (the exponent ``a`` of ``y ~ x^a``)
    and its percentile bootstrap interval at ``level`` over ``n_boot`` resamples of the points, or,
    when ``groups`` labels the points (e.g. the seed each network was drawn from, whose points share
    their random draws), over resamples of whole groups (a cluster bootstrap: points of one group
    are not independent, and resampling them one by one makes the interval too narrow).

    Returns:
        ``(slope, lo, hi)``. Needs at least 3 points, all positive, not all at one ``x``.
    """
    lx, ly = np.log(np.asarray(x, dtype=float).reshape(-1)), np.log(np.asarray(y, dtype=float).reshape(-1))
    if lx.size != ly.size or lx.size < 3:
        raise ValueError(f"need at least 3 paired points, got {lx.size} and {ly.size}")
    if not (np.isfinite(lx).all() and np.isfinite(ly).all()):
        raise ValueError("x and y must be finite and positive")
    if np.ptp(lx) == 0:
        raise ValueError("x must take at least two values")

    def fit(i):
        xs, ys = lx[i], ly[i]
        xc = xs - xs.mean(-1, keepdims=True)
        den = (xc**2).sum(-1)
        return np.where(den > 0, (xc * (ys - ys.mean(-1, keepdims=True))).sum(-1) / np.where(den > 0, den, 1), np.nan)

    slope = float(fit(np.arange(lx.size)))
    rng = np.random.default_rng(seed)
    if groups is None:
        boot = fit(rng.integers(0, lx.size, size=(n_boot, lx.size)))
    else:
        labels = np.asarray(groups).reshape(-1)
        if labels.size != lx.size:
            raise ValueError(f"groups must label every point: {labels.size} labels for {lx.size} points")
        members = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        if len(members) < 2:
            raise ValueError("a cluster bootstrap needs at least two groups")
        picks = rng.integers(0, len(members), size=(n_boot, len(members)))
        boot = np.array([fit(np.concatenate([members[j] for j in row])) for row in picks])
    boot = boot[np.isfinite(boot)]
    return slope, float(np.quantile(boot, (1 - level) / 2)), float(np.quantile(boot, (1 + level) / 2))


def paired_comparison(a, b, *, level: float = 0.95, n_boot: int = 10000, seed: int = 0,
                      n_flips: int = 100000) -> PairedComparison:
    """Compare two conditions measured on the same seeds: ``d = a - b`` per seed.

    The sign-flip (paired permutation) test is exact: all ``2^n`` sign patterns for ``n <= 20``,
    otherwise ``n_flips`` random ones (``p = (1 + hits) / (1 + n_flips)``). The interval is the
    percentile bootstrap of the mean over ``n_boot`` resamples of the pairs (with ``n`` this
    small it is an honest but rough summary; the test is what decides).

    Args:
        a, b: (n,) per-seed values of the two conditions (pass logs to compare ratios).
    """
    d = np.asarray(a, dtype=float).reshape(-1) - np.asarray(b, dtype=float).reshape(-1)
    n = d.size
    if n == 0 or not np.isfinite(d).all():
        raise ValueError(f"need finite paired values, got {d}")
    observed = d.mean()
    if n <= 20:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_flips, n))
    means = signs @ np.abs(d) / n
    tol = 1e-12 * max(np.abs(d).max(), 1e-300)  # ties up to rounding count as extreme
    hits = int((means >= observed - tol).sum())
    p = hits / len(signs) if n <= 20 else (1 + hits) / (1 + n_flips)
    boot = np.random.default_rng(seed).choice(d, size=(n_boot, n)).mean(1)
    return PairedComparison(n=n, mean=float(observed), lo=float(np.quantile(boot, (1 - level) / 2)),
                            hi=float(np.quantile(boot, (1 + level) / 2)), n_greater=int((d > 0).sum()),
                            p_greater=float(p), p_min=float(2.0 ** -n if n <= 20 else 1 / (1 + n_flips)), level=level)


def sign_test_greater(n_for: int, n_against: int) -> float:
    """Exact one-sided sign test: ``P(Binomial(n_for + n_against, 1/2) >= n_for)``, the chance
    under "no effect" (each untied unit goes either way with probability 1/2) of at least
    ``n_for`` units in favour; 1 when no unit is untied. Ties are left out by the caller."""
    if min(n_for, n_against) < 0:
        raise ValueError(f"counts must be >= 0, got {n_for} and {n_against}")
    if n_for + n_against == 0:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(n_for - 1, n_for + n_against, 0.5))


def cluster_signs(signs: "pd.Series", cluster: str) -> tuple[int, int]:
    """Per-unit signs (+1 in favour, -1 against, 0 tied), indexed by keys that include the
    level ``cluster`` (the independent unit, e.g. the network seed whose tasks share it), summed
    within each cluster: ``(clusters with a positive net sign, clusters with a negative one)``;
    clusters that net to 0 count for neither. The pair for :func:`sign_test_greater`."""
    if not len(signs):
        return 0, 0
    net = signs.groupby(level=cluster).sum()
    return int((net > 0).sum()), int((net < 0).sum())


def holm(pvalues: Mapping[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down procedure: which of several hypotheses are rejected at family-wise error
    rate ``alpha``. The p-values sorted ascending, ``p_(i)`` (i = 1..m) is rejected while
    ``p_(j) <= alpha / (m - j + 1)`` for every ``j <= i``; the first failure stops the procedure
    (Holm 1979). Controls the family-wise error under any dependence between the tests.

    Args:
        pvalues: name -> p-value.
    Returns:
        name -> rejected (True: the claim is supported at family-wise ``alpha``).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    bad = {k: v for k, v in pvalues.items() if not (isinstance(v, (int, float)) and 0 <= v <= 1)}
    if bad:
        raise ValueError(f"p-values must lie in [0, 1], got {bad}")
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m, out, going = len(order), {}, True
    for i, name in enumerate(order):
        going = going and pvalues[name] <= alpha / (m - i)
        out[name] = going
    return out


def holm_threshold(pvalues: Mapping[str, float], name: str, alpha: float = 0.05) -> float:
    """The threshold :func:`holm` compares ``pvalues[name]`` with: ``alpha / (m - i)`` at its 0-based
    rank ``i`` among the ``m`` p-values sorted ascending (ties in the order of ``pvalues``, as
    :func:`holm` sorts them). Whether Holm gets that far (every smaller p passing its own threshold)
    is :func:`holm`'s answer, not this one's."""
    if name not in pvalues:
        raise KeyError(f"{name!r} is not one of the p-values {sorted(pvalues)}")
    order = sorted(pvalues, key=lambda k: pvalues[k])
    return alpha / (len(order) - order.index(name))


def holm_reachable(pvalues: Mapping[str, float], smallest: Mapping[str, float],
                   alpha: float = 0.05) -> dict[str, bool]:
    """Could each hypothesis have been rejected by :func:`holm`? For every name, Holm's procedure is
    rerun with that p-value replaced by ``smallest[name]`` (the smallest p its test can give: ``2^-u``
    for an exact sign or sign-flip test over ``u`` untied units), the other p-values as observed.
    False means no outcome of that test could have been supported beside the others, given its
    ties (its number of untied units): "not decidable", as opposed to "not supported". It says
    nothing about power: one favourable outcome suffices. Under Holm a test ranked after tests that pass
    meets a looser threshold than ``alpha / m``, so this is sharper than comparing ``smallest``
    with the first threshold.

    Args:
        pvalues: name -> observed p-value.
        smallest: name -> the smallest p-value that name's test can give (the same names).
    Returns:
        name -> reachable.
    """
    if set(smallest) != set(pvalues):
        raise ValueError(f"smallest must name the same tests as pvalues: {sorted(set(smallest) ^ set(pvalues))}")
    return {name: holm({**pvalues, name: float(smallest[name])}, alpha)[name] for name in pvalues}
