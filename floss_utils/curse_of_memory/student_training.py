"""Ensemble training of linear students on the teacher–student task, as one tensor program.

``M`` students of the same shape (one :mod:`floss_utils.curse_of_memory.students` student with ``M`` members:
seeds x learning rates x initializations) train together: one forward, one backward, one Adam
update per step for all of them. Each member has

* its own **peak learning rate** with a **cosine decay** to ``lr_min`` (``1e-7``) over the run
  (``lr_s = lr_min + (lr - lr_min)(1 + cos(pi s / steps))/2``, optax's
  ``warmup_cosine_decay_schedule`` without warm-up, as in ZO's code), applied by scaling that
  member's Adam update (Adam is elementwise, so this is exactly per-member Adam);
* its own **data stream** (``data_seeds[m]``: a generator of i.i.d. ``N(0, 1)`` input batches;
  members with the same data seed see the same batches — common random numbers across learning
  rates and architectures) and **teacher** (``teacher_index[m]`` into the list of teachers);
* its own **divergence detection**: at the first step where its batch loss is not finite or
  exceeds ``blowup`` times its initial loss, the member is marked diverged at that step, its
  parameters are put back to their last finite-loss values and frozen (zero update), and the
  other members go on unaffected. Its loss curve up to and including that step is kept.

Loss: ``1/2 * MSE`` over the batch and all ``T`` time steps (ZO's ``loss_fn``). Because every
student and the teacher are linear time-invariant SISO systems, the output error on a batch is
the causal convolution of the inputs with ``g = K_student - K_teacher`` (feed-through folded into
``g_0``), so the batch loss is **exactly** the quadratic form

    L = 1/(2 B T) g^T G g,   G_kl = sum_b sum_{t >= max(k, l)} x_{b,t-k} x_{b,t-l},

with the lagged Gram matrix ``G`` of the batch (:func:`lagged_gram`, shared by all members of a
data stream). This is the same number as running the recurrences on the batch and averaging
the squared errors (tested to round-off, gradients included), at a cost of ``O(M T^2)`` per step
instead of ``O(M B T n^2)``. ``expected_loss`` is the loss's expectation over fresh inputs,
``1/(2T) sum_k (T - k) g_k^2``.

The update is :func:`floss_utils.optim.adam_update` (per-member learning rates);
:func:`cosine_lr` is exposed for other training loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from ..optim import adam_update
from .students import Student
from .teacher import Teacher

__all__ = [
    "EnsembleResult",
    "train_ensemble",
    "lagged_gram",
    "quadratic_loss",
    "fft_loss",
    "expected_loss",
    "kernel_error",
    "cosine_lr",
    "best_learning_rates",
]


@dataclass
class EnsembleResult:
    """Outcome of :func:`train_ensemble` (CPU tensors, member axis first).

    Attributes:
        losses: ``(M, steps)`` batch loss at every step (NaN after a member diverged).
        final_loss: ``(M,)`` mean batch loss over the last ``final_window`` steps (``inf`` for a
            diverged member) — the "final training loss" of ZO (last-epoch mean).
        expected_loss: ``(M,)`` exact expected loss of the final parameters on fresh inputs.
        diverged: ``(M,)`` bool; diverged_step: ``(M,)`` int, -1 for members that never diverged.
        lr: ``(M,)`` peak learning rates. model: the trained student (same object as given).
    """

    losses: Tensor
    final_loss: Tensor
    expected_loss: Tensor
    diverged: Tensor
    diverged_step: Tensor
    lr: Tensor
    model: Student


_GRAM_INDEX: dict[tuple[int, str], Tensor] = {}


def _gram_index(T: int, device: torch.device) -> Tensor:
    """Flat index ``|l - k| T + (T - 1 - max(k, l))`` of ``G_kl`` in the prefix-sum table."""
    key = (T, str(device))
    if key not in _GRAM_INDEX:
        k = torch.arange(T, device=device)
        d = (k[None, :] - k[:, None]).abs()
        m = T - 1 - torch.maximum(k[None, :], k[:, None])
        _GRAM_INDEX[key] = (d * T + m).reshape(-1)
    return _GRAM_INDEX[key]


def lagged_gram(x: Tensor) -> Tensor:
    """``G_kl = sum_b sum_{t=max(k,l)}^{T-1} x_{b,t-k} x_{b,t-l}`` for inputs ``(..., B, T)``.

    Returns ``(..., T, T)``. With ``P = X^T X`` and ``d = |l - k|``,
    ``G_kl = sum_{u=0}^{T-1-max(k,l)} P_{u+d, u}``: one matrix product, the diagonals of ``P``
    read as rows of a strided view (``P`` zero-padded below, so every read is in bounds),
    a cumulative sum along them, and one gather.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., B, T), got {tuple(x.shape)}")
    T = x.shape[-1]
    lead = x.shape[:-2]
    P = torch.matmul(x.transpose(-1, -2), x).reshape(-1, T, T)
    Pp = P.new_zeros(P.shape[0], 2 * T, T)
    Pp[:, :T] = P
    diag = Pp.as_strided((Pp.shape[0], T, T), (2 * T * T, T, T + 1))  # [K, d, u] = P[u + d, u]
    Q = diag.contiguous().cumsum(-1).reshape(Pp.shape[0], T * T)
    return Q.index_select(1, _gram_index(T, x.device)).reshape(*lead, T, T)


def kernel_error(model: Student, teacher_kernels: Tensor, teacher_D: Tensor, teacher_index: Tensor,
                 length: int) -> Tensor:
    """``g = K_student - K_teacher`` with ``D_student - D_teacher`` added to ``g_0``: ``(M, T)``."""
    g = model.kernel(length) - teacher_kernels[teacher_index]
    dD = model.feedthrough() - teacher_D[teacher_index]
    return torch.cat([g[:, :1] + dD[:, None], g[:, 1:]], dim=1)


def quadratic_loss(g: Tensor, G: Tensor, stream: Tensor, n_samples: int) -> Tensor:
    """Per-member batch loss ``g_m^T G_{stream[m]} g_m / (2 n_samples)``.

    ``g``: ``(M, T)``; ``G``: ``(K, T, T)`` lagged Gram matrices of the ``K`` data streams;
    ``stream``: ``(M,)`` long; ``n_samples = B T``. Returns ``(M,)``.
    """
    if G.shape[0] == 1:
        Gg = g @ G[0]
    else:  # members of a stream side by side: one (K, slots, T) x (K, T, T) product
        slot = _slots(stream)
        padded = g.new_zeros(G.shape[0], int(slot.max()) + 1, g.shape[-1])
        padded = padded.index_put((stream, slot), g)
        Gg = torch.bmm(padded, G)[stream, slot]
    return 0.5 * (Gg * g).sum(-1) / n_samples


def _slots(stream: Tensor) -> Tensor:
    """Position of each member among the members of its stream (0, 1, ...)."""
    order = torch.argsort(stream, stable=True)
    sorted_s = stream[order]
    start = torch.searchsorted(sorted_s, sorted_s, right=False)
    slot = torch.empty_like(stream)
    slot[order] = torch.arange(stream.numel(), device=stream.device) - start
    return slot


def fft_loss(g: Tensor, x: Tensor, stream: Tensor) -> Tensor:
    """Per-member batch loss ``1/2 mean_{b,t} (g * x)_t^2`` by FFT convolution.

    ``g``: ``(M, T)``; ``x``: ``(K, B, T)`` the streams' inputs; ``stream``: ``(M,)``.
    Same number as :func:`quadratic_loss`; cheaper when few members share a stream.
    """
    T = g.shape[-1]
    X = torch.fft.rfft(x, n=2 * T)  # (K, B, F)
    Gf = torch.fft.rfft(g, n=2 * T)  # (M, F)
    e = torch.fft.irfft(X[stream] * Gf[:, None, :], n=2 * T)[..., :T]
    return 0.5 * (e * e).mean(dim=(-1, -2))


def expected_loss(g: Tensor) -> Tensor:
    """Expected batch loss for i.i.d. unit-variance inputs: ``1/(2T) sum_k (T-k) g_k^2``."""
    T = g.shape[-1]
    w = (T - torch.arange(T, device=g.device, dtype=g.dtype)) / T
    return 0.5 * (w * g**2).sum(-1)


def cosine_lr(peak: Tensor, step: int, steps: int, lr_min: float = 1e-7) -> Tensor:
    """``lr_min + (peak - lr_min)(1 + cos(pi step/steps))/2`` (per member)."""
    return lr_min + (peak - lr_min) * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def _as_member_tensor(name: str, value, M: int, dtype, device, integer: bool = False) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.long if integer else torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(M)
    if t.numel() != M:
        raise ValueError(f"{name} must have one value per member ({M}), got {t.numel()}")
    return t.to(device=device, dtype=torch.long if integer else dtype)


def train_ensemble(model: Student, teachers: Teacher | Sequence[Teacher], *, lr, steps: int,
                   data_seeds: Sequence[int], teacher_index: Optional[Sequence[int]] = None,
                   batch_size: int = 128, seq_len: int = 300, lr_min: float = 1e-7,
                   final_window: int = 100, blowup: float = 1e4, betas=(0.9, 0.999),
                   eps: float = 1e-8, loss_method: str = "auto",
                   on_step: Optional[Callable[[int], None]] = None) -> EnsembleResult:
    """Train all members of ``model`` with Adam on their teachers (see the module docstring).

    Args:
        model: a student with ``M`` members (trained in place).
        teachers: one teacher or a list; ``teacher_index[m]`` picks member ``m``'s (default 0).
        lr: peak learning rate, one value or one per member.
        steps: number of Adam steps (one fresh batch each).
        data_seeds: one int per member: seed of the member's input stream.
        batch_size, seq_len: batch ``B`` and length ``T`` of each batch.
        lr_min: end of the cosine decay.
        final_window: the final loss is the mean batch loss over this many last steps.
        blowup: a member whose batch loss exceeds ``blowup`` x its initial loss diverged.
        loss_method: ``"gram"`` (:func:`quadratic_loss`), ``"fft"`` (:func:`fft_loss`) or
            ``"auto"``: the Gram form when members share streams enough to amortize the
            ``O(B T^2)`` Gram matrix per stream (``K T < 20 M log2(2T)``, ``K`` streams; measured
            on a CPU: at ``T = 300`` the Gram form wins below ~0.7 streams per member), else
            FFT. Both are exact.
        on_step: called with the number of steps done after each step (and with 0 before the
            first), e.g. to report progress (:func:`~floss_utils.progress.report_progress`).
    """
    if not isinstance(model, Student):
        raise TypeError(f"model must be a floss_utils.curse_of_memory.students Student, got {type(model).__name__}")
    M = model.n_members
    dtype, device = model.D.dtype, model.D.device
    for name, val, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("seq_len", seq_len, 1),
                          ("final_window", final_window, 1)):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {val!r}")
    if final_window > steps:
        raise ValueError(f"final_window ({final_window}) must not exceed steps ({steps})")
    if not (isinstance(blowup, (int, float)) and blowup > 1):
        raise ValueError(f"blowup must be a number > 1, got {blowup!r}")
    if not (lr_min >= 0 and math.isfinite(lr_min)):
        raise ValueError(f"lr_min must be finite and >= 0, got {lr_min!r}")
    peak = _as_member_tensor("lr", lr, M, dtype, device)
    if not bool(torch.isfinite(peak).all()) or bool((peak <= 0).any()):
        raise ValueError(f"every learning rate must be finite and > 0, got {peak.tolist()}")
    teachers = [teachers] if isinstance(teachers, Teacher) else list(teachers)
    if not teachers or not all(isinstance(t, Teacher) for t in teachers):
        raise TypeError("teachers must be a Teacher or a non-empty list of Teachers")
    if isinstance(data_seeds, int) or len(data_seeds) != M:
        raise ValueError(f"data_seeds must be a list of {M} ints (one per member), got {data_seeds!r}")
    t_idx = _as_member_tensor("teacher_index", 0 if teacher_index is None else teacher_index, M, dtype, device, True)
    if bool((t_idx < 0).any()) or bool((t_idx >= len(teachers)).any()):
        raise ValueError(f"teacher_index must be in [0, {len(teachers)}), got {t_idx.tolist()}")

    teachers = [t.to(device, dtype) for t in teachers]
    K_t = torch.stack([t.kernel(seq_len) for t in teachers])
    D_t = torch.stack([t.D for t in teachers])
    streams = sorted(set(int(s) for s in data_seeds))
    stream = torch.tensor([streams.index(int(s)) for s in data_seeds], device=device)
    gens = [torch.Generator(device=device).manual_seed(s) for s in streams]

    params = list(model.parameters())
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    active = torch.ones(M, dtype=torch.bool, device=device)
    step_count = torch.zeros(M, dtype=torch.long, device=device)
    div_step = torch.full((M,), -1, dtype=torch.long, device=device)
    losses = torch.full((M, steps), float("nan"), dtype=dtype, device=device)
    first = torch.zeros(M, dtype=dtype, device=device)
    prev = [p.detach().clone() for p in params]
    n_samples = batch_size * seq_len
    if loss_method not in ("auto", "gram", "fft"):
        raise ValueError(f"loss_method must be 'auto', 'gram' or 'fft', got {loss_method!r}")
    if loss_method == "auto":
        loss_method = "gram" if len(streams) * seq_len < 20 * M * math.log2(2 * seq_len) else "fft"

    if on_step is not None:
        on_step(0)
    for s in range(steps):
        with torch.no_grad():
            x = torch.stack([torch.randn(batch_size, seq_len, generator=g, device=device, dtype=dtype) for g in gens])
            G = lagged_gram(x) if loss_method == "gram" else None
        g = kernel_error(model, K_t, D_t, t_idx, seq_len)
        loss = quadratic_loss(g, G, stream, n_samples) if G is not None else fft_loss(g, x, stream)
        with torch.no_grad():
            lv = loss.detach()
            if s == 0:
                first = lv.clone()
            bad = active & (~torch.isfinite(lv) | (lv > blowup * first))
            losses[:, s] = torch.where(active | bad, lv, losses[:, s])
            div_step = torch.where(bad, torch.full_like(div_step, s), div_step)
            active = active & ~bad
        total = torch.where(active, loss, torch.zeros_like(loss)).sum()
        grads = torch.autograd.grad(total, params, allow_unused=True)
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(params, grads)]
        with torch.no_grad():
            for p, q in zip(params, prev):  # diverged members: back to the last finite-loss values
                act = active.view((-1,) + (1,) * (p.ndim - 1))
                p.copy_(torch.where(act, p, q))
                q.copy_(p)
            adam_update(params, grads, m1, m2, lr=cosine_lr(peak, s, steps, lr_min), steps=step_count.fill_(s + 1),
                        mask=active, betas=betas, eps=eps)
        if on_step is not None:
            on_step(s + 1)

    with torch.no_grad():
        final = losses[:, steps - final_window:].mean(-1)
        final = torch.where(div_step >= 0, torch.full_like(final, float("inf")), final)
        exp_loss = expected_loss(kernel_error(model, K_t, D_t, t_idx, seq_len))
    return EnsembleResult(losses=losses.cpu(), final_loss=final.cpu(), expected_loss=exp_loss.cpu(),
                          diverged=(div_step >= 0).cpu(), diverged_step=div_step.cpu(), lr=peak.cpu(),
                          model=model)


def best_learning_rates(frame, config: Sequence[str], lr: str = "lr", seed: str = "seed",
                        value: str = "final_loss", diverged: str = "ineligible"):
    """Best learning rate per configuration from a tidy table of runs (pandas DataFrame).

    For each configuration (the columns ``config``) and learning rate, the mean of ``value``
    over seeds, its standard error (s.e.m., ``std(ddof=1)/sqrt(n)``; 0 for one seed) and the
    number of diverged seeds (``value`` infinite or NaN); the best learning rate has the
    smallest mean. ``diverged`` says what a diverged seed does:

    * ``"ineligible"`` (the book's rule): a learning rate at which any seed diverged is not
      eligible (``mean = inf``).
    * ``"dropped"`` (ZO's figure code: ``replace([inf, -inf], nan)``, then pandas' ``mean`` and
      ``sem``, which skip NaN): the mean and s.e.m. are over the seeds that did not diverge; a
      learning rate at which every seed diverged is not eligible. A rate where some seeds blow
      up is then judged by its survivors alone.

    Returns one row per configuration: ``config..., lr, mean, sem, n_seeds, n_diverged``
    (``mean = inf`` when no learning rate is eligible; ``n_seeds`` counts every seed run).
    """
    import numpy as np
    import pandas as pd

    if diverged not in ("ineligible", "dropped"):
        raise ValueError(f"diverged must be 'ineligible' or 'dropped', got {diverged!r}")
    missing = [c for c in (*config, lr, seed, value) if c not in frame.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    f = frame.copy()
    f["_div"] = ~np.isfinite(f[value].astype(float))
    rows = []
    for key, grp in f.groupby(list(config), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        best = None
        for lr_val, g in grp.groupby(lr, sort=True):
            vals = g[value].astype(float).to_numpy()
            n, ndiv = len(vals), int(g["_div"].sum())
            kept = vals[np.isfinite(vals)] if diverged == "dropped" else (vals if ndiv == 0 else vals[:0])
            mean = float(kept.mean()) if len(kept) else math.inf
            sem = float(kept.std(ddof=1) / math.sqrt(len(kept))) if len(kept) > 1 else 0.0
            cand = (mean, float(lr_val), sem, n, ndiv)
            if best is None or cand[0] < best[0]:
                best = cand
        rows.append({**dict(zip(config, key)), lr: best[1], "mean": best[0], "sem": best[2],
                     "n_seeds": best[3], "n_diverged": best[4]})
    return pd.DataFrame(rows)
