"""The teacher of the multi-dimensional teacher–student task (ZO Figs. 3, 10, 11; see the book's
page 'Methods and reference values').

A linear RNN with 10 hidden units, one input and one output:
``A ~ N(0, 1/n)`` with its eigenvalues ``l`` re-set to modulus ``nu0 + (r_max - nu0) tanh|l|``
(``r_max = 1``) and angle ``angle(l) max_phase/pi`` (angles kept for ``max_phase = pi``),
``B ~ N(0, 1)``, ``C ~ N(0, 1/n)``, ``D ~ N(0, 1)`` (real eigenvalues stay real, see
:func:`floss_utils.curse_of_memory.students.shape_eigenvalues`); data: inputs i.i.d. ``N(0, 1)`` of length
``T = 300``, targets the teacher's outputs (``h_{-1} = 0``, no noise).

The teacher is drawn from an explicit ``seed`` (ZO's public code uses one fixed seed for every
run; here it is a parameter). Its eigenvector basis is kept (``eigvals``, ``eigvecs``) so a
diagonal student can be set exactly to the teacher (``B' = U^{-1} B``, ``C' = C U``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .students import causal_convolution, shape_eigenvalues

__all__ = ["Teacher", "make_teacher", "teacher_data"]


@dataclass
class Teacher:
    """A SISO linear RNN teacher. ``A`` ``(n, n)``, ``B`` ``(n,)``, ``C`` ``(n,)``, ``D`` ``()``;
    ``eigvals`` ``(n,)`` complex, ``eigvecs`` ``(n, n)`` complex with ``A = U diag(l) U^{-1}``."""

    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor
    eigvals: Tensor
    eigvecs: Tensor
    seed: int
    nu0: float
    max_phase: float

    @property
    def hidden(self) -> int:
        return self.A.shape[0]

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Teacher":
        """A copy on ``device`` with real tensors in ``dtype`` (complex ones matched)."""
        dtype = dtype or self.A.dtype
        cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
        return Teacher(self.A.to(device, dtype), self.B.to(device, dtype), self.C.to(device, dtype),
                       self.D.to(device, dtype), self.eigvals.to(device, cdt), self.eigvecs.to(device, cdt),
                       self.seed, self.nu0, self.max_phase)

    def kernel(self, length: int) -> Tensor:
        """Impulse response ``K_k = C A^k B``, ``k < length`` (``(length,)``, no feed-through)."""
        out, v = [], self.B
        for _ in range(length):
            out.append(self.C @ v)
            v = self.A @ v
        return torch.stack(out)

    def zero_output_loss(self, length: int) -> float:
        """The expected loss ``1/2 MSE`` of a student that outputs 0, for i.i.d. ``N(0, 1)`` inputs of
        ``length`` steps (started at rest, averaged over the steps): ``1/(2T) sum_k (T-k) g_k^2``
        with ``g = (D + K_0, K_1, ...)`` -- the scale against which a student's loss is read."""
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        g = self.kernel(length).clone()
        g[0] = g[0] + self.D
        w = (length - torch.arange(length, device=g.device, dtype=g.dtype)) / length
        return float(0.5 * (w * g**2).sum())

    def outputs(self, x: Tensor) -> Tensor:
        """Teacher outputs ``(B, T, 1)`` for inputs ``(B, T, 1)``, by the recursion."""
        if x.ndim != 3 or x.shape[-1] != 1:
            raise ValueError(f"x must have shape (B, T, 1), got {tuple(x.shape)}")
        u = x[..., 0].to(self.A.dtype)
        h = torch.zeros(u.shape[0], self.hidden, dtype=u.dtype, device=u.device)
        ys = []
        for t in range(u.shape[1]):
            h = h @ self.A.T + u[:, t:t + 1] * self.B
            ys.append(h @ self.C + self.D * u[:, t])
        return torch.stack(ys, dim=1).unsqueeze(-1)

    def outputs_fft(self, x: Tensor) -> Tensor:
        """Same as :meth:`outputs` by FFT convolution with :meth:`kernel` (fast for long T)."""
        u = x[..., 0].to(self.A.dtype)
        return (causal_convolution(u, self.kernel(u.shape[-1])) + self.D * u).unsqueeze(-1)


def make_teacher(seed: int, nu0: float, hidden: int = 10, max_phase: float = math.pi, r_max: float = 1.0,
                 dtype: torch.dtype = torch.float64, device="cpu", real_eigenvalues: str = "stay_real") -> Teacher:
    """Draw the teacher of ZO's teacher–student task from ``seed`` (CPU float64, then moved).

    Args:
        seed: the teacher seed (the teacher depends on it and on nothing else).
        nu0: smallest eigenvalue modulus, ``0 <= nu0 < r_max``.
        hidden: teacher size (10 in ZO).
        max_phase: angles are scaled by ``max_phase / pi`` (``pi``: kept).
        r_max: largest modulus (1 in ZO; moduli are ``< r_max`` since ``tanh < 1``).
        real_eigenvalues: what scaled angles do to a real eigenvalue: ``"stay_real"`` (the
            book's rule) or ``"zo_code"`` (ZO's public code: it becomes ``modulus cos(angle)``,
            so its modulus can fall below ``nu0``); see
            :func:`~floss_utils.curse_of_memory.students.shape_eigenvalues`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0.0 <= nu0 < r_max <= 1.0:
        raise ValueError(f"need 0 <= nu0 < r_max <= 1, got nu0={nu0}, r_max={r_max}")
    if not 0.0 < max_phase <= math.pi:
        raise ValueError(f"max_phase must be in (0, pi], got {max_phase}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int, got {hidden!r}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    A0 = torch.randn(hidden, hidden, generator=g, dtype=f64) / math.sqrt(hidden)
    B = torch.randn(hidden, generator=g, dtype=f64)
    C = torch.randn(hidden, generator=g, dtype=f64) / math.sqrt(hidden)
    D = torch.randn((), generator=g, dtype=f64)
    l, U = torch.linalg.eig(A0)
    l2 = shape_eigenvalues(l, nu0, r_max, max_phase, real_eigenvalues)
    A = (U @ torch.diag(l2) @ torch.linalg.inv(U)).real
    t = Teacher(A, B, C, D, l2, U, seed, float(nu0), float(max_phase))
    return t.to(device, dtype)


def teacher_data(teacher: Teacher, batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One batch ``(x, y)``, each ``(batch, length, 1)``: ``x`` i.i.d. ``N(0, 1)`` drawn from
    ``generator`` (on its device), ``y`` the teacher's outputs."""
    if batch < 1 or length < 1:
        raise ValueError(f"batch and length must be >= 1, got {batch}, {length}")
    x = torch.randn(batch, length, 1, generator=generator, dtype=teacher.A.dtype, device=generator.device)
    return x, teacher.outputs_fft(x.to(teacher.A.device))
