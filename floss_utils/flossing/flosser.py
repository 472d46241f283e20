"""Gradient flossing (Engelken, NeurIPS 2023): push Lyapunov exponents toward a target by
gradient descent through the QR algorithm.

The flossing loss of a network with exponents ``lambda_1 >= ... >= lambda_k`` is::

    L_floss = mean_{i <= k} (lambda_i - lambda*)^2        (target lambda* = 0 by default)

One **flossing step** (GF protocol, :class:`FlossingConfig` defaults):

1. one input-driven trajectory of ``T_p = 55`` steps from the learned initial state of batch
   slot 0, with fresh random input bits;
2. a random orthonormal basis ``Q_0`` (N x k, k = 75 of N = 80), re-orthonormalized by a QR at
   every step; the first ``10 + ceil(T_p / 10)`` steps are a transient, the remaining ones are
   averaged (:func:`floss_utils.lyapunov.estimator.lyapunov_spectrum`, differentiable);
3. backpropagation through the whole unrolled trajectory and every QR;
4. an Adam step (lr 1e-3, the flosser's **own** optimizer) on the chosen parameters only
   (``W_s, J, b`` by default).

Everything is batched over the M members of a :class:`~floss_utils.flossing.tanh_network.GFNetwork`
ensemble; members can be flossed in a subset of steps (``active``), have their own targets and
their own number of flossed exponents (``n_floss``: flossing the first ``k_m`` of a shared
basis of ``k`` vectors is the same computation as flossing with ``k_m`` vectors, since the first
``k_m`` columns of a QR do not depend on the later ones).

Non-finite values are never carried on silently: in ``on_nonfinite="raise"`` mode a NaN/inf
exponent, loss or gradient raises :class:`~floss_utils.lyapunov.estimator.NonFiniteError` naming the
member and the flossing step; in ``"mark"`` mode (ensembles) such a member is not updated and
is reported in the step's ``bad`` mask, and the others go on.

Generic use (any map, e.g. a GRU or LSTM through :class:`~floss_utils.lyapunov.maps.CellMap`):
:func:`flossing_loss` on exponents from :func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`, and
:func:`floss_step`, which differentiates a loss function and updates a
:class:`~floss_utils.optim.BatchedAdam`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..common import resolve_dtype, seeded_generator
from ..lyapunov.estimator import NonFiniteError, cholesky_qr, lyapunov_spectrum
from ..optim import BatchedAdam
from .tanh_network import GFNetwork

__all__ = [
    "FlossingConfig",
    "flossing_transient",
    "flossing_loss",
    "floss_step",
    "FlossStep",
    "network_exponents",
    "Flosser",
    "FLOSS_BITS",
    "FLOSS_BASIS",
    "evaluate_exponents",
    "FlossingComparison",
    "compare_before_after_flossing",
]

#: generator purposes for flossing inputs and initial bases (see floss_utils.flossing.tasks for 0-2)
FLOSS_BITS, FLOSS_BASIS, SPECTRUM_BITS = 3, 4, 5


def flossing_transient(steps: int) -> int:
    """GF's transient for a flossing trajectory of ``steps`` steps: ``10 + ceil(steps / 10)``."""
    return 10 + math.ceil(steps / 10)


@dataclass(frozen=True)
class FlossingConfig:
    """The flossing protocol (defaults: GF's public code).

    Attributes:
        k: number of exponents computed (tangent vectors), ``k <= N``.
        steps: ``T_p``, length of the flossing trajectory including the transient.
        transient: steps discarded; ``None`` = ``10 + ceil(steps / 10)``.
        target: lambda*, per step.
        lr: learning rate of the flossing Adam.
        params: the GFNetwork parameters flossing updates.
        reorth: re-orthonormalization of the estimator (``"auto"``: Cholesky QR in float64).
        dtype: precision of the exponent computation (default float64 whatever the network's
            precision: the Cholesky QR needs it; gradients flow back through the cast).
        ons: steps between QRs (GF: 1). The exponents, and hence the loss and its gradient, do
            not depend on it in exact arithmetic (``D_T..D_1 Q_0 = Q R_T..R_1`` and the diagonal
            of a product of triangular matrices is the product of their diagonals); a few steps
            per QR cost less, at ``O(u exp(2 ons (lambda_1 - lambda_k)))`` round-off.
        engine: the estimator's engine (:func:`~floss_utils.lyapunov.estimator.lyapunov_spectrum`):
            ``"torch"`` (batched, any configuration) or ``"lapack"`` (direct BLAS/LAPACK calls
            per network on a CPU, float64, ``ons = 1``, Cholesky QR: faster on the reference CPU
            except for batches of tiny networks; the same values up to round-off, which a chaotic
            network amplifies to the exponents' finite-time spread).
    """

    k: int = 75
    steps: int = 55
    transient: Optional[int] = None
    target: float = 0.0
    lr: float = 1e-3
    params: tuple[str, ...] = ("W_s", "J", "b")
    reorth: str = "auto"
    ons: int = 1
    dtype: str = "float64"
    engine: str = "torch"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"FlossingConfig.k must be >= 1, got {self.k}")
        if self.n_transient >= self.steps:
            raise ValueError(f"FlossingConfig: transient {self.n_transient} leaves no averaged step of {self.steps}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"FlossingConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.ons < 1:
            raise ValueError(f"FlossingConfig.ons must be >= 1, got {self.ons}")
        if self.engine not in ("torch", "lapack"):
            raise ValueError(f"FlossingConfig.engine must be 'torch' or 'lapack', got {self.engine!r}")
        if self.engine == "lapack" and (self.dtype != "float64" or self.ons != 1 or self.reorth not in ("auto", "cholqr")):
            raise ValueError("FlossingConfig: engine='lapack' runs float64, ons=1 and reorth 'auto' or 'cholqr'; got "
                             f"dtype={self.dtype!r}, ons={self.ons}, reorth={self.reorth!r}")
        if not self.params:
            raise ValueError("FlossingConfig.params must name at least one parameter")
        if not math.isfinite(self.target):
            raise ValueError(f"FlossingConfig.target must be finite, got {self.target}")

    @property
    def n_transient(self) -> int:
        return flossing_transient(self.steps) if self.transient is None else int(self.transient)


def flossing_loss(exponents: Tensor, target: float | Tensor = 0.0, n_floss: Optional[Tensor] = None) -> Tensor:
    """``mean_{i <= k_m} (lambda_i - lambda*)^2`` per network.

    Args:
        exponents: (..., k) per network, in the estimator's order (descending).
        target: lambda*, a number or a tensor broadcastable to (...,) (one per network).
        n_floss: optional (...,) ints ``1 <= k_m <= k``: flossing the first ``k_m`` exponents.
    Returns:
        (...,) the loss per network.
    """
    target = torch.as_tensor(target, dtype=exponents.dtype, device=exponents.device)
    sq = (exponents - target.unsqueeze(-1)) ** 2
    if n_floss is None:
        return sq.mean(-1)
    k = exponents.shape[-1]
    n = torch.as_tensor(n_floss, device=exponents.device)
    out_of_range = (n < 1) | (n > k)
    if n.device.type == "cpu":
        if bool(out_of_range.any()):
            raise ValueError(f"n_floss must lie in [1, k = {k}], got {n.tolist()}")
    else:  # checked on the device, without a host synchronisation in the flossing loop
        torch._assert_async(~out_of_range.any(), f"n_floss must lie in [1, k = {k}]")
    mask = torch.arange(k, device=exponents.device) < n.unsqueeze(-1)
    return (sq * mask).sum(-1) / n.to(exponents.dtype)


@dataclass
class FlossStep:
    """Outcome of one flossing step for an ensemble of M members.

    Attributes:
        loss: (M,) flossing loss before the update (NaN for members not flossed).
        exponents: (M, k) exponents before the update (NaN for members not flossed).
        updated: (M,) bool, members whose parameters were updated.
        bad: (M,) bool, flossed members with a non-finite exponent, loss or gradient.
    """

    loss: Tensor
    exponents: Tensor
    updated: Tensor
    bad: Tensor


def floss_step(
    loss_fn: Callable[[], tuple[Tensor, Tensor]],
    optimizer: BatchedAdam,
    active: Optional[Tensor] = None,
    *,
    on_nonfinite: str = "raise",
    step: Optional[int] = None,
) -> FlossStep:
    """One flossing update of ``optimizer``'s parameters.

    Args:
        loss_fn: returns ``(loss (M,), exponents (M, k))`` computed from the optimizer's
            parameters (members not flossed may have any finite loss; they are not updated).
        optimizer: a :class:`~floss_utils.optim.BatchedAdam` over the flossed parameters (leading dim M).
        active: (M,) bool, the members to update (default all).
        on_nonfinite: ``"raise"`` or ``"mark"`` (see the module docstring).
        step: the flossing step number, for error messages.
    """
    if on_nonfinite not in ("raise", "mark"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'mark', got {on_nonfinite!r}")
    M = optimizer.n_members
    dev = optimizer.steps.device
    active = torch.ones(M, dtype=torch.bool, device=dev) if active is None else active.to(dev)
    loss, lam = loss_fn()
    grads = torch.autograd.grad(loss.sum(), optimizer.params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(optimizer.params, grads)]
    finite = optimizer.finite_members(grads) & torch.isfinite(loss) & torch.isfinite(lam).all(-1)
    bad = active & ~finite
    if on_nonfinite == "raise" and bool(bad.any()):
        m = int(torch.nonzero(bad)[0])
        what = ("exponent" if not bool(torch.isfinite(lam[m]).all())
                else "loss" if not bool(torch.isfinite(loss[m])) else "gradient")
        raise NonFiniteError(
            f"flossing step {step if step is not None else '?'}: non-finite {what} for network m={m} "
            f"(of {M}); {int(bad.sum())} network(s) affected. Lower the learning rate, the number "
            f"of flossed exponents k, or check for saturated units")
    updated = optimizer.step(grads, active & finite)
    nan = torch.full((), float("nan"), dtype=loss.dtype, device=loss.device)
    return FlossStep(loss=torch.where(active, loss.detach(), nan),
                     exponents=torch.where(active.unsqueeze(-1), lam.detach(), nan),
                     updated=updated, bad=bad)


def _random_bases(keys: Sequence[tuple[int, ...]], n: int, k: int, dtype: torch.dtype,
                  device: torch.device) -> Tensor:
    """Haar-random orthonormal (n, k) bases, one per key (CholeskyQR2 of a Gaussian: positive R
    diagonal, hence the same Q as a sign-fixed Householder QR)."""
    Z = torch.stack([torch.randn(n, k, dtype=torch.float64, generator=seeded_generator(*key)) for key in keys])
    Q, _, info = cholesky_qr(Z, passes=2)
    if bool((info > 0).any()):  # pragma: no cover - a Gaussian n x k with k <= n is well conditioned
        Q, R = torch.linalg.qr(Z, mode="reduced")
        Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    return Q.to(device=device, dtype=dtype)


def _bits(keys: Sequence[tuple[int, ...]], steps: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Input bits (steps, M), one column per key."""
    return torch.stack([torch.randint(0, 2, (steps,), generator=seeded_generator(*key)) for key in keys],
                       dim=1).to(device=device, dtype=dtype)


def network_exponents(
    net: GFNetwork,
    bits: Tensor,
    *,
    k: int,
    transient: int,
    q0: Optional[Tensor] = None,
    reorth: str = "auto",
    x0: Optional[Tensor] = None,
    ons: int = 1,
    engine: str = "torch",
) -> Tensor:
    """The k largest exponents of each member along one input-driven trajectory (differentiable).

    Args:
        net: M networks.
        bits: input bits (T, M); the trajectory has ``T`` steps, the first ``transient`` discarded.
        q0: (M, N, k) initial bases (default Haar-random from torch's global generator).
        x0: (M, N) initial states (default: the learned initial state of batch slot 0, detached).
        ons: steps between QRs (see :class:`FlossingConfig`).
        engine: the estimator's engine (see :class:`FlossingConfig`).
    Returns:
        (M, k) exponents per step.
    """
    if bits.ndim != 2 or bits.shape[1] != net.n_members:
        raise ValueError(f"bits must have shape (T, M={net.n_members}), got {tuple(bits.shape)}")
    T = bits.shape[0]
    if transient >= T:
        raise ValueError(f"transient = {transient} must be < trajectory length T = {T}")
    x0 = net.x0[:, 0].detach() if x0 is None else x0
    res = lyapunov_spectrum(net.recurrent_map(), x0, net.drive(bits.to(net.dtype)), steps=T - transient,
                            k=k, transient=transient, ons=ons, q0=q0, reorth=reorth, engine=engine)  # type: ignore[arg-type]
    return res.exponents


class Flosser:
    """Flossing for an ensemble of GF networks, with its own batched Adam.

    Args:
        net: the ensemble; the parameters named in ``config.params`` are set to require gradients
            and are updated in place.
        config: the protocol.
        seeds: one non-negative int per member for the flossing inputs and bases; member m's
            j-th flossing step uses bits and ``Q_0`` drawn from (seeds[m], j) only, so an
            ensemble flosses exactly like its members flossed one by one.
        targets: optional per-member targets (M,) (default ``config.target`` for all).
        n_floss: optional per-member number of flossed exponents (M,), each in [1, config.k].
        on_nonfinite: ``"raise"`` (default) or ``"mark"`` (see the module docstring).

    Attributes:
        counts: (M,) host-side list, flossing steps each member took part in (a member marked bad
            on the device is still computed, never updated).
        bad: (M,) bool tensor, members that produced a non-finite value (``"mark"`` mode).
    """

    def __init__(
        self,
        net: GFNetwork,
        config: FlossingConfig = FlossingConfig(),
        seeds: Optional[Sequence[int]] = None,
        *,
        targets: Optional[Sequence[float] | Tensor] = None,
        n_floss: Optional[Sequence[int] | Tensor] = None,
        on_nonfinite: str = "raise",
    ) -> None:
        M, N = net.n_members, net.n_units
        if config.k > N:
            raise ValueError(f"FlossingConfig.k = {config.k} exceeds the number of units N = {N}")
        self.net, self.config = net, config
        self.seeds = list(range(M)) if seeds is None else [int(s) for s in seeds]
        if len(self.seeds) != M:
            raise ValueError(f"need one flossing seed per member: got {len(self.seeds)} for M = {M}")
        dev, dt = net.device, net.dtype
        tg = torch.full((M,), config.target, dtype=dt) if targets is None else torch.as_tensor(targets, dtype=dt)
        if tg.shape != (M,):
            raise ValueError(f"targets must have shape (M,) = ({M},), got {tuple(tg.shape)}")
        self.targets = tg.to(dev)
        self.n_floss = None
        if n_floss is not None:
            nf = torch.as_tensor(n_floss, dtype=torch.long)
            if nf.shape != (M,) or bool(((nf < 1) | (nf > config.k)).any()):
                raise ValueError(f"n_floss must be (M,) = ({M},) ints in [1, k = {config.k}], got {nf.tolist()}")
            self.n_floss = nf.to(dev)
        if on_nonfinite not in ("raise", "mark"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'mark', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.params = net.tensors(config.params)
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer = BatchedAdam(self.params, lr=config.lr)
        self.counts = [0] * M
        self.bad = torch.zeros(M, dtype=torch.bool, device=dev)
        self._excluded: set[int] = set()

    def _inputs(self, idx: list[int]) -> tuple[Tensor, Tensor]:
        c = self.config
        net = self.net
        dt = resolve_dtype(c.dtype)
        bits = _bits([(self.seeds[m], FLOSS_BITS, self.counts[m]) for m in idx], c.steps, dt, net.device)
        q0 = _random_bases([(self.seeds[m], FLOSS_BASIS, self.counts[m]) for m in idx], net.n_units, c.k,
                           dt, net.device)
        return bits, q0

    def _loss_fn(self, idx: list[int], bits: Tensor, q0: Tensor) -> Callable[[], tuple[Tensor, Tensor]]:
        c, net = self.config, self.net
        M = net.n_members

        def fn() -> tuple[Tensor, Tensor]:
            sub = net.select(idx).to(resolve_dtype(c.dtype))
            lam = network_exponents(sub, bits, k=c.k, transient=c.n_transient, q0=q0, reorth=c.reorth,
                                    ons=c.ons, engine=c.engine)
            t_idx = torch.as_tensor(idx, device=net.device)
            nf = None if self.n_floss is None else self.n_floss[t_idx]
            loss_sub = flossing_loss(lam, self.targets[t_idx], nf)
            loss = torch.zeros(M, dtype=lam.dtype, device=lam.device).index_put((t_idx,), loss_sub)
            lam_full = torch.zeros(M, c.k, dtype=lam.dtype, device=lam.device).index_put((t_idx,), lam)
            return loss, lam_full

        return fn

    def step(self, active: Optional[Sequence[bool] | Tensor] = None) -> FlossStep:
        """One flossing step of the ``active`` members (default all not marked bad)."""
        M = self.net.n_members
        dev = self.net.device
        act = torch.ones(M, dtype=torch.bool) if active is None else torch.as_tensor(active, dtype=torch.bool).cpu()
        if act.shape != (M,):
            raise ValueError(f"active must have shape (M,) = ({M},), got {tuple(act.shape)}")
        # No host synchronisation per step: members whose estimate failed in the forward pass are
        # known on the host (``_excluded``) and left out of the computation; members marked bad
        # on the device (a non-finite loss or gradient) are masked there and never updated.
        act[list(self._excluded)] = False
        idx = torch.nonzero(act).flatten().tolist()
        nan = torch.full((), float("nan"), dtype=resolve_dtype(self.config.dtype), device=dev)
        if not idx:
            return FlossStep(loss=nan.expand(M).clone(), exponents=nan.expand(M, self.config.k).clone(),
                             updated=torch.zeros(M, dtype=torch.bool, device=dev),
                             bad=torch.zeros(M, dtype=torch.bool, device=dev))
        bits, q0 = self._inputs(idx)
        step_no = max(self.counts[m] for m in idx)
        try:
            out = floss_step(self._loss_fn(idx, bits, q0), self.optimizer, act.to(dev) & ~self.bad,
                             on_nonfinite=self.on_nonfinite, step=step_no)
        except NonFiniteError as exc:
            if self.on_nonfinite == "raise":
                raise NonFiniteError(f"flossing step {step_no} (members {idx}): {exc}") from None
            # a forward failure inside the estimator: find the failing members one by one
            bad_idx = []
            for j, m in enumerate(idx):
                try:
                    with torch.no_grad():
                        network_exponents(self.net.select([m]).to(bits.dtype), bits[:, j:j + 1], k=self.config.k,
                                          transient=self.config.n_transient, q0=q0[j:j + 1],
                                          reorth=self.config.reorth)
                except NonFiniteError:
                    bad_idx.append(m)
            if not bad_idx:  # pragma: no cover - a batch-only failure would be a bug
                raise
            self.bad[bad_idx] = True
            self._excluded.update(bad_idx)
            out = self.step(act)  # the others go on (their counters are unchanged)
            out.bad[bad_idx] = True
            return out
        self.bad |= out.bad
        for m in idx:
            self.counts[m] += 1
        return out

    @torch.no_grad()
    def copy_member(self, src: int, dst: Sequence[int]) -> None:
        """Give members ``dst`` member ``src``'s state: its flossed parameters, flossing-Adam moments
        and step count, draw counter and failure marks (e.g. after flossing one of several members
        whose flossing is the same computation)."""
        dst = [int(d) for d in dst]
        opt = self.optimizer
        for t in (*self.params, *opt.m, *opt.v, opt.steps, self.bad):
            t[dst] = t[src].clone()
        for d in dst:
            self.counts[d] = self.counts[src]
            if src in self._excluded:
                self._excluded.add(d)

    def run(self, n_steps: int, active: Optional[Sequence[bool] | Tensor] = None) -> dict[str, Tensor]:
        """``n_steps`` flossing steps; returns the history ``{"loss": (S, M), "exponents": (S, M, k)}``
        (values before each update; NaN for members not flossed)."""
        losses, lams = [], []
        for _ in range(n_steps):
            out = self.step(active)
            losses.append(out.loss)
            lams.append(out.exponents)
        return {"loss": torch.stack(losses), "exponents": torch.stack(lams)}

    @torch.no_grad()
    def exponents(self, steps: Optional[int] = None, k: Optional[int] = None, key: int = 0) -> Tensor:
        """Current exponents of every member (no gradient), by the flossing protocol, or over a
        longer trajectory of ``steps`` steps (transient ``10 + ceil(steps/10)``); bits and basis
        drawn from (seeds[m], key), independent of the flossing steps' draws. Returns (M, k)."""
        return evaluate_exponents(self.net, self.seeds, steps=steps or self.config.steps,
                                  k=k or self.config.k, key=key, reorth=self.config.reorth,
                                  dtype=self.config.dtype)


@torch.no_grad()
def evaluate_exponents(net: GFNetwork, seeds: Sequence[int], *, steps: int, k: int, key: int = 0,
                       transient: Optional[int] = None, reorth: str = "auto",
                       dtype: str | torch.dtype = "float64") -> Tensor:
    """Exponents (M, k) of every member along one input-driven trajectory of ``steps`` steps from
    the learned initial state of slot 0 (bits and basis from (seeds[m], key); no gradient),
    computed in ``dtype``."""
    M = net.n_members
    if len(seeds) != M:
        raise ValueError(f"need one seed per member: got {len(seeds)} for M = {M}")
    transient = flossing_transient(steps) if transient is None else transient
    dt = resolve_dtype(dtype)
    bits = _bits([(int(s), SPECTRUM_BITS, key) for s in seeds], steps, dt, net.device)
    q0 = _random_bases([(int(s), SPECTRUM_BITS, key, 1) for s in seeds], net.n_units, k, dt, net.device)
    return network_exponents(net.clone().to(dt), bits, k=k, transient=transient, q0=q0, reorth=reorth)


@dataclass
class FlossingComparison:
    """Outcome of :func:`compare_before_after_flossing`: exponents ``(M, k)`` and the probe's
    value (whatever ``probe(net)`` returned, ``None`` without a probe) before and after."""

    exponents_before: Tensor
    exponents_after: Tensor
    probe_before: object = None
    probe_after: object = None


def compare_before_after_flossing(net: GFNetwork, seeds: Sequence[int], config: "FlossingConfig", steps: int, *,
                                  exponent_steps: int, probe: Optional[Callable[[GFNetwork], object]] = None
                                  ) -> FlossingComparison:
    """Flosses ``net`` **in place** for ``steps`` steps of :class:`Flosser` and reports what changed.

    Before and after: the first ``config.k`` exponents of every member by
    :func:`evaluate_exponents` (a fresh trajectory of ``exponent_steps`` steps, the same bits
    both times) and ``probe(net)`` if given (e.g. the gates of a gated cell,
    :func:`floss_utils.flossing.gated_cells.gate_values`). Works for any member-batched network the
    :class:`Flosser` accepts (GF networks, GRU and LSTM networks).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    probe_before = probe(net) if probe is not None else None
    e_before = evaluate_exponents(net, seeds, steps=exponent_steps, k=config.k)
    flosser = Flosser(net, config, seeds)
    for _ in range(steps):
        flosser.step()
    probe_after = probe(net) if probe is not None else None
    e_after = evaluate_exponents(net, seeds, steps=exponent_steps, k=config.k)
    return FlossingComparison(e_before, e_after, probe_before, probe_after)
