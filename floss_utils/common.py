"""What every part of the package shares: devices and precisions, seeded random streams, and the
base class of member-batched networks.

* :func:`resolve_device`, :func:`resolve_dtype` - ``"auto"`` -> CUDA when present; the two
  floating-point precisions the book uses.
* :func:`seeded_generator` - an independent random stream per tuple of integer keys
  (member seed, purpose, epoch, step), whatever order they are drawn in.
* :class:`MemberBatched` - an ensemble of M networks whose parameters ``J, W_s, b, w_r, c, x0``
  (:data:`PARAM_NAMES`) carry the member axis first: shapes, copies, casts, member selection.
* :func:`paired_comparison` - a paired difference across seeds: its mean with a bootstrap
  interval and the exact one-sided sign-flip test (what "on average over seeds" claims rest on).

Nothing here imports another module of the package.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["resolve_device", "resolve_dtype", "seeded_generator", "MemberBatched", "PARAM_NAMES",
           "PairedComparison", "paired_comparison"]


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
        p_min: the smallest p-value the test can reach with ``n`` pairs (``2^-n``): at level
            ``alpha`` the test can decide only when ``p_min < alpha``.
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
                            p_greater=float(p), p_min=float(2.0 ** -n), level=level)
