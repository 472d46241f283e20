"""Linear recurrent students of the teacher–student task (Zucchet & Orvieto 2024, Part II).

Every student is a **single-input single-output linear time-invariant** recurrent network,
``h_t = A h_{t-1} + B x_t`` (``h_{-1} = 0``), ``y_t = C h_t + D x_t``, and every student is
**batched over ensemble members**: each parameter carries a leading member axis ``M``, so ``M``
students of the same shape (different seeds, learning rates, initializations) are one tensor
program. Students are ``torch.nn.Module``\\ s:

============================  ===============================================================
:class:`DenseRNN`             ``A`` dense ``(M, n, n)``; ``heads > 1`` makes it the
                              block-diagonal multi-head RNN (``heads`` blocks of ``n/heads``)
:class:`ComplexDiagonalRNN`   ``A = diag(lambda)``, ``lambda = a + i b`` learned directly,
                              optional learned normalization ``gamma``; ``y = Re(C h) + D x``
:class:`LRU`                  ``lambda = nu e^{i theta}`` through a magnitude parametrization
                              (``"polar"`` ``nu``, ``"exp"`` ``nu = exp(-exp(p))``, ``"opt"``
                              ``nu = tanh(p)``) and an angle parametrization (``"raw"``,
                              ``"exp"`` ``theta = exp(q)``, ``"opt"``), learned ``gamma``
:class:`S4D`                  ZO's diagonal S4: ``lambda = exp(Delta A)``, ``A`` complex and
                              ``Delta = softplus(delta_raw) > 0`` learned per unit, input
                              ``Delta B x``
============================  ===============================================================

Common API (``S`` any student, ``x`` of shape ``(B, T, 1)`` shared by all members or
``(M, B, T, 1)`` one sequence batch per member):

* ``S(x)`` -> ``(M, B, T, 1)``: the outputs, computed in the time domain (dense: one batched
  matrix product per step with drive and readout inside it and a hand-written backward,
  :mod:`floss_utils.curse_of_memory.dense_recurrence`; diagonal: :func:`floss_utils.curse_of_memory.scans.diagonal_scan`). ``S(x, method="kernel")`` computes
  the same outputs as a causal convolution with the impulse response (FFT).
* ``S.kernel(T)`` -> ``(M, T)``: the impulse response ``K_k = C A^k B`` (``Re`` of it for the
  diagonal students), ``k = 0..T-1``, without the feed-through; ``S.feedthrough()`` -> ``(M,)``
  is ``D``. ``y_t = D x_t + sum_{k<=t} K_k x_{t-k}``. Training (:mod:`floss_utils.curse_of_memory.student_training`)
  works on the kernel: the loss of a batch is an exact quadratic form in it.
* ``S.states(x)`` -> ``(M, B, T, n)`` hidden states (complex for diagonal students).
* ``S.eigenvalues()`` -> ``(M, n)`` complex eigenvalues of the recurrence.
* ``S.member(i)`` -> a one-member copy; ``S.n_members``, ``S.hidden``.
* ``S.param_groups()`` -> ``{"recurrent": [...], "input": [...], "output": [...],
  "feedthrough": [...], "normalization": [...]}`` parameter names by role.

Construction: ``Student(seeds, hidden, ..., dtype=torch.float64, device="cpu")`` draws member
``i``'s parameters from ``torch.Generator().manual_seed(seeds[i])`` (on the CPU, then moved), so
a member's initialization depends on its seed only, never on the other members. Initialization
options that vary across members (``r_min``, ``max_phase``, ``heads``) accept one value or one
per member. Initializations follow the public code of ZO: dense ``A ~ N(0, 1/d)`` per head with
eigenvalue moduli re-set to ``r_min + (r_max - r_min) tanh|l|`` (angles scaled by
``max_phase/pi``), ``B ~ N(0, 1)``, ``C ~ N(0, 1/n)``, ``D ~ N(0, 1)`` (the public code uses
truncated normals for B, C, D; plain normals here); diagonal students: ring initialization
``|lambda| = sqrt(U[r_min^2, r_max^2])``, angle ``U[0, max_phase)`` (the public code draws
``U[-max_phase, max_phase]`` and wraps it to ``[0, 2 pi)``; real outputs make ``lambda`` and its
conjugate the same function, but not the same learning problem when the angle is parametrized as
``theta = exp(omega)``, whose gradient scales with ``theta``: pass ``max_phase=2 pi`` for ZO's range),
``Re B, Im B ~ N(0, 1/n)``, ``Re C, Im C ~ N(0, 1)``, ``D ~ N(0, 1)``, and
``gamma = sqrt(1 - |lambda|^2)`` (stored as ``log gamma`` in the LRU).

Lower-level pieces for other models (deep stacks): :func:`ring_init`,
:func:`lambda_from_params`, :func:`params_from_lambda`, :func:`shaped_recurrent_matrix`.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from . import dense_recurrence
from .scans import diagonal_scan

__all__ = [
    "MAGNITUDES",
    "ANGLES",
    "Student",
    "DenseRNN",
    "ComplexDiagonalRNN",
    "LRU",
    "S4D",
    "causal_convolution",
    "ring_init",
    "lambda_from_params",
    "params_from_lambda",
    "shaped_recurrent_matrix",
    "shape_eigenvalues",
    "REAL_EIGENVALUE_RULES",
]

#: the LRU's magnitude parametrizations.
MAGNITUDES = ("polar", "exp", "opt")
#: the LRU's angle parametrizations.
ANGLES = ("raw", "exp", "opt")


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def causal_convolution(x: Tensor, kernel: Tensor) -> Tensor:
    """``y_t = sum_{k=0}^{t} kernel_k x_{t-k}`` along the last axis, by FFT (zero-padded).

    ``x``: ``(..., T)``; ``kernel``: ``(..., T)`` broadcastable against ``x``. Returns ``(..., T)``.
    """
    T = x.shape[-1]
    if kernel.shape[-1] != T:
        raise ValueError(f"kernel length {kernel.shape[-1]} must equal the sequence length {T}")
    n = 2 * T
    X = torch.fft.rfft(x, n=n)
    K = torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(X * K, n=n)[..., :T]


# ------------------------------------------------------------------------- initialization


def _per_member(name: str, value, M: int) -> list[float]:
    if isinstance(value, (list, tuple)):
        if len(value) != M:
            raise ValueError(f"{name} has {len(value)} values for {M} members")
        return [float(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or one number per member, got {value!r}")
    return [float(value)] * M


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple, range)):
        raise TypeError(f"seeds must be a list of ints (one per member), got {seeds!r}")
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty (one seed per ensemble member)")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"every seed must be an int, got {s!r}")
    return list(seeds)


def _check_ring(r_min: float, r_max: float, max_phase: float) -> None:
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"ring radii must satisfy 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
    if not 0.0 < max_phase <= 2 * math.pi:
        raise ValueError(f"max_phase must be in (0, 2 pi], got {max_phase}")


def ring_init(n: int, r_min: float, r_max: float, max_phase: float, generator: torch.Generator,
              dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Ring initialization (Orvieto et al. 2023): ``n`` eigenvalues uniform on the ring
    ``r_min <= |lambda| < r_max`` (``|lambda| = sqrt(U[r_min^2, r_max^2])``) with angles
    ``U[0, max_phase)``. Returns ``(nu, theta)``, each ``(n,)``, on the CPU."""
    _check_ring(r_min, r_max, max_phase)
    u = torch.rand(n, generator=generator, dtype=dtype)
    nu = torch.sqrt(u * (r_max**2 - r_min**2) + r_min**2)
    theta = torch.rand(n, generator=generator, dtype=dtype) * max_phase
    return nu, theta


def _opt_angle_scale(nu: Tensor) -> Tensor:
    """``(1 - nu^2) / (nu sqrt(1 + nu^2))``: makes the angle Hessian 1 (ZO Fig. 6; see
    the book's page 'Methods and reference values')."""
    return (1 - nu**2) / (nu * torch.sqrt(1 + nu**2))


def lambda_from_params(mag: Tensor, ang: Tensor, magnitude: str, angle: str) -> Tensor:
    """The complex eigenvalue ``lambda = nu e^{i theta}`` from the raw parameters.

    magnitude: ``"polar"`` ``nu = mag``; ``"exp"`` ``nu = exp(-exp(mag))``; ``"opt"``
    ``nu = tanh(mag)``. angle: ``"raw"`` ``theta = ang``; ``"exp"`` ``theta = exp(ang)``;
    ``"opt"`` ``theta = s(nu) ang`` with ``s(nu) = (1 - nu^2)/(nu sqrt(1 + nu^2))`` held constant
    when differentiating (detached, like the public code's "scaled_exp").
    """
    if magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if angle not in ANGLES:
        raise ValueError(f"angle must be one of {ANGLES}, got {angle!r}")
    if magnitude == "exp":
        log_nu = -torch.exp(mag)
        nu = torch.exp(log_nu)
    elif magnitude == "polar":
        nu = mag
        log_nu = None
    else:
        nu = torch.tanh(mag)
        log_nu = None
    if angle == "raw":
        theta = ang
    elif angle == "exp":
        theta = torch.exp(ang)
    else:
        theta = _opt_angle_scale(nu.detach()) * ang
    if log_nu is not None:  # exact exp(-e^p + i theta): no cancellation for nu -> 1
        return torch.exp(torch.complex(log_nu, theta))
    return torch.complex(nu * torch.cos(theta), nu * torch.sin(theta))  # nu < 0 allowed (polar)


def params_from_lambda(nu: Tensor, theta: Tensor, magnitude: str, angle: str) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`lambda_from_params`: raw parameters ``(mag, ang)`` for ``nu, theta``
    (``0 < nu < 1``, ``theta > 0`` for ``angle="exp"``)."""
    if magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if angle not in ANGLES:
        raise ValueError(f"angle must be one of {ANGLES}, got {angle!r}")
    mag = {"polar": lambda v: v, "exp": lambda v: torch.log(-torch.log(v)), "opt": torch.atanh}[magnitude](nu)
    if angle == "raw":
        ang = theta
    elif angle == "exp":
        ang = torch.log(theta)
    else:
        ang = theta / _opt_angle_scale(nu)
    return mag, ang


def shaped_recurrent_matrix(d: int, r_min: float, r_max: float, max_phase: float,
                            generator: torch.Generator, dtype: torch.dtype = torch.float64,
                            real_eigenvalues: str = "stay_real") -> Tensor:
    """ZO's recurrent-matrix initialization: ``A ~ N(0, 1/d)``, then its eigenvalues ``l``
    re-set to modulus ``r_min + (r_max - r_min) tanh|l|`` and angle ``angle(l) max_phase/pi``,
    ``A <- Re(V diag(l') V^{-1})`` (real eigenvalues as ``real_eigenvalues`` says, see
    :func:`shape_eigenvalues`). ``(d, d)``, CPU."""
    A = torch.randn(d, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    l, V = torch.linalg.eig(A)
    l2 = shape_eigenvalues(l, r_min, r_max, max_phase, real_eigenvalues)
    A2 = V @ torch.diag(l2) @ torch.linalg.inv(V)
    return A2.real.to(dtype)


#: the rules for a real eigenvalue when angles are scaled (see :func:`shape_eigenvalues`)
REAL_EIGENVALUE_RULES = ("stay_real", "zo_code")


def shape_eigenvalues(l: Tensor, r_min: float, r_max: float, max_phase: float,
                      real_eigenvalues: str = "stay_real") -> Tensor:
    """Moduli ``r_min + (r_max - r_min) tanh|l|``, angles ``angle(l) max_phase / pi``.

    A real eigenvalue (``Im l == 0``) has no conjugate partner to rotate with. ``real_eigenvalues``:

    * ``"stay_real"`` (the book's rule): it stays real, with its modulus; a negative one keeps
      angle ``pi`` when ``max_phase > pi/2`` and becomes positive otherwise (the nearer real angle).
    * ``"zo_code"``: what ZO's public code does. It rotates the eigenvalue to angle
      ``angle(l) max_phase / pi`` like the others and takes the real part of the resulting
      non-real matrix ``V diag(l') V^{-1}``. A real eigenvalue of a real matrix has a real
      eigenvector (and left eigenvector), so its rank-one term keeps only the real part of the
      rotated value: the eigenvalue becomes ``modulus * cos(angle(l) max_phase / pi)`` -- for
      a negative one ``modulus * cos(max_phase)``, of modulus well below ``r_min`` at mid-range
      angles (``0.59 * modulus`` at ``max_phase = 0.3 pi``); the conjugate pairs are untouched.
      This closed form is what is returned; a test compares it with the code's literal
      construction.
    """
    if real_eigenvalues not in REAL_EIGENVALUE_RULES:
        raise ValueError(f"real_eigenvalues must be one of {REAL_EIGENVALUE_RULES}, got {real_eigenvalues!r}")
    mod = r_min + (r_max - r_min) * torch.tanh(l.abs())
    ang = torch.angle(l) * (max_phase / math.pi)
    real = l.imag == 0
    if real_eigenvalues == "zo_code":
        return torch.where(real, torch.complex(mod * torch.cos(ang), torch.zeros_like(ang)), torch.polar(mod, ang))
    real_ang = torch.where(l.real < 0, torch.full_like(ang, math.pi if max_phase > math.pi / 2 else 0.0),
                           torch.zeros_like(ang))
    return torch.polar(mod, torch.where(real, real_ang, ang))


# ------------------------------------------------------------------------------ students


class Student(nn.Module):
    """Base class of the batched SISO linear students (see the module docstring)."""

    hidden: int

    @property
    def n_members(self) -> int:
        return self.D.shape[0]

    def feedthrough(self) -> Tensor:
        """``D``, shape ``(M,)``."""
        return self.D

    def kernel(self, length: int) -> Tensor:  # pragma: no cover - interface
        """The impulse response ``K_k``, ``k = 0..length-1``, shape ``(M, length)`` (see the module
        docstring)."""
        raise NotImplementedError

    def states(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def eigenvalues(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[str]]:  # pragma: no cover - interface
        raise NotImplementedError

    def _inputs(self, x: Tensor) -> Tensor:
        """``(B, T, 1)`` or ``(M, B, T, 1)`` -> ``(M or 1, B, T)`` in the parameters' dtype."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"x must have shape (B, T, 1) or (M, B, T, 1), got {tuple(x.shape)}")
        if x.shape[0] not in (1, self.n_members):
            raise ValueError(f"x has {x.shape[0]} member batches for {self.n_members} members")
        return x[..., 0].to(self.D.dtype)

    def forward(self, x: Tensor, method: str = "time") -> Tensor:
        """Outputs ``(M, B, T, 1)`` for inputs ``(B, T, 1)`` or ``(M, B, T, 1)``.

        ``method="time"``: the recurrence in the time domain; ``"kernel"``: causal convolution
        with :meth:`kernel` (FFT). Both give the same outputs to round-off.
        """
        u = self._inputs(x)
        if method == "kernel":
            K = self.kernel(u.shape[-1])
            y = causal_convolution(u, K[:, None, :]) + self.D[:, None, None] * u
        elif method == "time":
            y = self._time_outputs(u)
        else:
            raise ValueError(f"method must be 'time' or 'kernel', got {method!r}")
        return y.unsqueeze(-1)

    def _time_outputs(self, u: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def member(self, i: int) -> "Student":
        """A one-member copy of member ``i`` (parameters copied, not shared)."""
        if not -self.n_members <= i < self.n_members:
            raise IndexError(f"member {i} out of range for {self.n_members} members")
        i = i % self.n_members
        new = copy.deepcopy(self)
        with torch.no_grad():
            for name, p in list(new.named_parameters(recurse=False)):
                setattr(new, name, nn.Parameter(p[i:i + 1].clone()))
            for name, buf in list(new.named_buffers(recurse=False)):
                setattr(new, name, buf[i:i + 1].clone())
        return new


class DenseRNN(Student):
    """Dense (or block-diagonal multi-head) real linear RNN, batched over members.

    Parameters: ``A`` ``(M, n, n)`` (entries outside the diagonal blocks are held at 0 by the
    buffer ``mask``), ``B`` ``(M, n)``, ``C`` ``(M, n)``, ``D`` ``(M,)``.
    ``heads = H`` (one value or one per member) splits the ``n`` units into ``H`` blocks of
    ``n/H`` units, each block initialized independently as a ``n/H``-unit RNN (``heads=1``:
    the dense RNN; ``heads=n/2``: 2x2 blocks, i.e. complex-eigenvalue pairs). The input and
    readout weights ``B``, ``C`` are shared across heads as in ZO's MultiHeadRNN.

    Args:
        seeds: one int per member.
        hidden: ``n``.
        r_min, r_max, max_phase, real_eigenvalues: eigenvalue shaping of
            :func:`shaped_recurrent_matrix` (ZO's students use ``r_min = 0``).
    """

    def __init__(self, seeds: Sequence[int], hidden: int, *, heads=1, r_min=0.0, r_max: float = 1.0,
                 max_phase=math.pi, real_eigenvalues: str = "stay_real", dtype: torch.dtype = torch.float64,
                 device="cpu") -> None:
        super().__init__()
        seeds = _check_seeds(seeds)
        M = len(seeds)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        heads_l = [int(h) for h in _per_member("heads", heads, M)]
        for h in heads_l:
            if h < 1 or hidden % h:
                raise ValueError(f"heads must divide hidden={hidden}, got {h}")
        rmin_l = _per_member("r_min", r_min, M)
        phase_l = _per_member("max_phase", max_phase, M)
        self.hidden = hidden
        self.heads = heads_l
        A = torch.zeros(M, hidden, hidden, dtype=dtype)
        mask = torch.zeros(M, hidden, hidden, dtype=dtype)
        Bm = torch.empty(M, hidden, dtype=dtype)
        Cm = torch.empty(M, hidden, dtype=dtype)
        Dm = torch.empty(M, dtype=dtype)
        for m, seed in enumerate(seeds):
            _check_ring(rmin_l[m], r_max, phase_l[m])
            g = torch.Generator().manual_seed(seed)
            d = hidden // heads_l[m]
            for h in range(heads_l[m]):
                sl = slice(h * d, (h + 1) * d)
                A[m, sl, sl] = shaped_recurrent_matrix(d, rmin_l[m], r_max, phase_l[m], g, dtype, real_eigenvalues)
                mask[m, sl, sl] = 1.0
            Bm[m] = torch.randn(hidden, generator=g, dtype=torch.float64).to(dtype)
            Cm[m] = (torch.randn(hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden)).to(dtype)
            Dm[m] = torch.randn((), generator=g, dtype=torch.float64).to(dtype)
        self.register_buffer("mask", mask.to(device))
        self.A = nn.Parameter(A.to(device))
        self.B = nn.Parameter(Bm.to(device))
        self.C = nn.Parameter(Cm.to(device))
        self.D = nn.Parameter(Dm.to(device))

    def recurrence_matrix(self) -> Tensor:
        """``A`` with the off-block entries masked, ``(M, n, n)``."""
        return self.A * self.mask

    def eigenvalues(self) -> Tensor:
        return torch.linalg.eigvals(self.recurrence_matrix().detach())

    def param_groups(self) -> dict[str, list[str]]:
        return {"recurrent": ["A"], "input": ["B"], "output": ["C"], "feedthrough": ["D"], "normalization": []}

    def kernel(self, length: int) -> Tensor:
        """``K_k = C A^k B``, ``k < length``, by doubling: ``[V, A^w V]`` with ``A^w`` squared
        each round (``ceil(log2 T)`` rounds of batched products; the last round multiplies only
        the columns still missing).

        float32 on a CPU: the products run in float64 and the result is cast back. The powers
        ``A^w`` of a contracting ``A`` fall into float32's subnormal range (below 1.2e-38), where
        CPU arithmetic is 10-100x slower (measured: the last product of a 50-member, n = 64,
        T = 300 kernel took 26 ms instead of 0.4 ms); float64 keeps them normal and costs ~2x
        on the products. GPUs handle subnormals at full speed and keep the parameters' dtype.
        """
        A = self.recurrence_matrix()
        work = torch.float64 if (A.dtype == torch.float32 and A.device.type == "cpu") else A.dtype
        A = A.to(work)
        V = self.B.to(work).unsqueeze(-1)  # (M, n, 1): columns A^k B
        P = A
        while V.shape[-1] < length:
            need = min(V.shape[-1], length - V.shape[-1])
            V = torch.cat([V, torch.bmm(P, V[..., :need])], dim=-1)
            if V.shape[-1] < length:
                P = torch.bmm(P, P)
        return torch.bmm(self.C.to(work).unsqueeze(1), V).squeeze(1).to(self.D.dtype)

    def states(self, x: Tensor) -> Tensor:
        u = self._inputs(x)
        return torch.stack(self._run(u)[0], dim=2)  # (M, B, T, n)

    def _run(self, u: Tensor, readout: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """States ``T x (M, B, n)`` (and readouts ``T x (M, B, 1)``): one batched product
        ``h A^T`` (``baddbmm``) per step; inputs enter as ``x_t B`` without materializing the
        drive of all steps, and the readout ``h_t C`` is taken step by step, so no
        ``(T, M, B, n)`` tensor is ever copied (autograd keeps the states it needs anyway)."""
        A = self.recurrence_matrix()
        At = A.transpose(1, 2)
        M, n = self.n_members, self.hidden
        Bsz = u.shape[1]
        Bv = self.B[:, None, :]
        Cv = self.C[:, :, None]
        h = torch.zeros(M, Bsz, n, dtype=A.dtype, device=A.device)
        hs, ys = [], []
        for u_t in u.expand(M, Bsz, u.shape[2]).unbind(-1):
            h = torch.baddbmm(u_t[..., None] * Bv, h, At)
            hs.append(h)
            if readout:
                ys.append(torch.bmm(h, Cv))
        return hs, ys

    def _time_outputs(self, u: Tensor) -> Tensor:
        """The time-domain outputs: one product per step with the augmented matrix of
        :mod:`floss_utils.curse_of_memory.dense_recurrence` and its hand-written backward; under ``torch.func``
        transforms or forward-mode AD, autograd through ``_run`` (same numbers)."""
        A = self.recurrence_matrix()
        if dense_recurrence.fast_path_applies(A, self.B, self.C, u):
            W = dense_recurrence.augmented_matrix(A, self.B, self.C)
            y = dense_recurrence.dense_scan(W, u, self._scan_workspace())
        else:
            y = torch.cat(self._run(u, readout=True)[1], dim=-1)
        return y + self.D[:, None, None] * u

    def _scan_workspace(self) -> "dense_recurrence.Workspace":
        ws = self.__dict__.get("_workspace")
        if ws is None:
            ws = self.__dict__["_workspace"] = dense_recurrence.Workspace()
        return ws


class _Diagonal(Student):
    """Shared machinery of the complex diagonal students: ``h_t = lambda h_{t-1} + gamma B x_t``,
    ``y_t = Re(C h_t) + D x_t``. Subclasses define :meth:`lam` and :meth:`gamma`."""

    def _init_common(self, seeds: list[int], hidden: int, r_min, r_max: float, max_phase, dtype) -> tuple:
        M = len(seeds)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        self.hidden = hidden
        rmin_l = _per_member("r_min", r_min, M)
        phase_l = _per_member("max_phase", max_phase, M)
        nu = torch.empty(M, hidden, dtype=dtype)
        theta = torch.empty(M, hidden, dtype=dtype)
        Bre, Bim, Cre, Cim = (torch.empty(M, hidden, dtype=dtype) for _ in range(4))
        D = torch.empty(M, dtype=dtype)
        for m, seed in enumerate(seeds):
            g = torch.Generator().manual_seed(seed)
            nu[m], theta[m] = ring_init(hidden, rmin_l[m], r_max, phase_l[m], g, torch.float64)
            s = 1.0 / math.sqrt(hidden)
            Bre[m] = torch.randn(hidden, generator=g, dtype=torch.float64) * s
            Bim[m] = torch.randn(hidden, generator=g, dtype=torch.float64) * s
            Cre[m] = torch.randn(hidden, generator=g, dtype=torch.float64)
            Cim[m] = torch.randn(hidden, generator=g, dtype=torch.float64)
            D[m] = torch.randn((), generator=g, dtype=torch.float64)
        return nu, theta, Bre, Bim, Cre, Cim, D

    def _set_io(self, Bre, Bim, Cre, Cim, D, device) -> None:
        self.B_re = nn.Parameter(Bre.to(device))
        self.B_im = nn.Parameter(Bim.to(device))
        self.C_re = nn.Parameter(Cre.to(device))
        self.C_im = nn.Parameter(Cim.to(device))
        self.D = nn.Parameter(D.to(device))

    def lam(self) -> Tensor:  # pragma: no cover - interface
        """Complex eigenvalues ``(M, n)``."""
        raise NotImplementedError

    def gamma(self) -> Optional[Tensor]:  # pragma: no cover - interface
        """Input normalization ``(M, n)`` or ``None``."""
        raise NotImplementedError

    def eigenvalues(self) -> Tensor:
        return self.lam().detach()

    def input_weights(self) -> Tensor:
        """``gamma * B`` (complex, ``(M, n)``)."""
        B = torch.complex(self.B_re, self.B_im)
        g = self.gamma()
        return B if g is None else g * B

    def kernel(self, length: int) -> Tensor:
        """``K_k = Re(sum_n C_n gamma_n B_n lambda_n^k)`` with ``lambda^k = exp(k log lambda)``,
        computed as a Vandermonde product split into ``sqrt(T)`` blocks."""
        log_lam = torch.log(self.lam())  # (M, n)
        coef = torch.complex(self.C_re, self.C_im) * self.input_weights()  # (M, n)
        # k = a L + j: lambda^k = lambda^j (lambda^L)^a, a batched (L x n)(n x T/L) product
        L = max(1, int(math.ceil(math.sqrt(length))))
        na = -(-length // L)
        j = torch.arange(L, device=log_lam.device, dtype=self.D.dtype)
        a = torch.arange(na, device=log_lam.device, dtype=self.D.dtype) * L
        V1 = torch.exp(j[None, :, None] * log_lam[:, None, :]) * coef[:, None, :]  # (M, L, n)
        V2 = torch.exp(a[None, :, None] * log_lam[:, None, :])  # (M, na, n)
        K = torch.bmm(V2, V1.transpose(1, 2)).real  # (M, na, L): K[a L + j]
        return K.reshape(K.shape[0], na * L)[:, :length]

    def states(self, x: Tensor) -> Tensor:
        u = self._inputs(x)  # (M', B, T)
        b = u[..., None] * self.input_weights()[:, None, None, :]  # (M, B, T, n)
        return diagonal_scan(self.lam()[:, None, :], b)

    def _time_outputs(self, u: Tensor) -> Tensor:
        b = u[..., None] * self.input_weights()[:, None, None, :]
        h = diagonal_scan(self.lam()[:, None, :], b)
        C = torch.complex(self.C_re, self.C_im)
        return (h * C[:, None, None, :]).sum(-1).real + self.D[:, None, None] * u


class ComplexDiagonalRNN(_Diagonal):
    """Complex diagonal linear RNN with ``lambda = lam_re + i lam_im`` learned directly.

    ``gamma=True`` adds a learned normalization ``gamma`` (stored raw, initialized to
    ``sqrt(1 - |lambda|^2)``), as in ZO's ablation ("complex diagonal with/without
    normalization"). Parameters: ``lam_re, lam_im, [gamma], B_re, B_im, C_re, C_im`` ``(M, n)``,
    ``D`` ``(M,)``.
    """

    def __init__(self, seeds: Sequence[int], hidden: int, *, gamma: bool = False, r_min=0.0,
                 r_max: float = 1.0, max_phase=math.pi, dtype: torch.dtype = torch.float64, device="cpu") -> None:
        super().__init__()
        seeds = _check_seeds(seeds)
        if not isinstance(gamma, bool):
            raise TypeError(f"gamma must be True or False, got {gamma!r}")
        nu, theta, Bre, Bim, Cre, Cim, D = self._init_common(seeds, hidden, r_min, r_max, max_phase, torch.float64)
        lam = torch.polar(nu, theta)
        self.lam_re = nn.Parameter(lam.real.to(dtype).to(device))
        self.lam_im = nn.Parameter(lam.imag.to(dtype).to(device))
        self.use_gamma = gamma
        if gamma:
            self.gamma_raw = nn.Parameter(torch.sqrt(1 - nu**2).to(dtype).to(device))
        self._set_io(Bre.to(dtype), Bim.to(dtype), Cre.to(dtype), Cim.to(dtype), D.to(dtype), device)

    def lam(self) -> Tensor:
        return torch.complex(self.lam_re, self.lam_im)

    def gamma(self) -> Optional[Tensor]:
        return self.gamma_raw if self.use_gamma else None

    def param_groups(self) -> dict[str, list[str]]:
        return {"recurrent": ["lam_re", "lam_im"], "input": ["B_re", "B_im"], "output": ["C_re", "C_im"],
                "feedthrough": ["D"], "normalization": ["gamma_raw"] if self.use_gamma else []}


class LRU(_Diagonal):
    """Linear Recurrent Unit: ``lambda = nu e^{i theta}`` through reparametrizations.

    Defaults are ZO's LRU: ``magnitude="exp"``, ``angle="exp"``, i.e.
    ``lambda = exp(-exp(lam_mag) + i exp(lam_ang))``, and a learned normalization stored as
    ``gamma_log`` (initialized to ``log sqrt(1 - |lambda|^2)``, ``gamma = exp(gamma_log)``);
    ``gamma=False`` drops it. See :func:`lambda_from_params` for the parametrizations.
    Parameters: ``lam_mag, lam_ang, [gamma_log], B_re, B_im, C_re, C_im`` ``(M, n)``, ``D`` ``(M,)``.
    """

    def __init__(self, seeds: Sequence[int], hidden: int, *, magnitude: str = "exp", angle: str = "exp",
                 gamma: bool = True, r_min=0.0, r_max: float = 1.0, max_phase=math.pi,
                 dtype: torch.dtype = torch.float64, device="cpu") -> None:
        super().__init__()
        seeds = _check_seeds(seeds)
        if magnitude not in MAGNITUDES:
            raise ValueError(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
        if angle not in ANGLES:
            raise ValueError(f"angle must be one of {ANGLES}, got {angle!r}")
        if not isinstance(gamma, bool):
            raise TypeError(f"gamma must be True or False, got {gamma!r}")
        if magnitude != "polar" and r_max >= 1.0:
            r_max = 1.0 - 1e-12 if dtype == torch.float64 else 1.0 - 1e-7  # keep log(-log nu) finite
        nu, theta, Bre, Bim, Cre, Cim, D = self._init_common(seeds, hidden, r_min, r_max, max_phase, torch.float64)
        mag, ang = params_from_lambda(nu, theta, magnitude, angle)
        self.magnitude, self.angle, self.use_gamma = magnitude, angle, gamma
        self.lam_mag = nn.Parameter(mag.to(dtype).to(device))
        self.lam_ang = nn.Parameter(ang.to(dtype).to(device))
        if gamma:
            self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - nu**2)).to(dtype).to(device))
        self._set_io(Bre.to(dtype), Bim.to(dtype), Cre.to(dtype), Cim.to(dtype), D.to(dtype), device)

    def lam(self) -> Tensor:
        return lambda_from_params(self.lam_mag, self.lam_ang, self.magnitude, self.angle)

    def gamma(self) -> Optional[Tensor]:
        return torch.exp(self.gamma_log) if self.use_gamma else None

    def param_groups(self) -> dict[str, list[str]]:
        return {"recurrent": ["lam_mag", "lam_ang"], "input": ["B_re", "B_im"], "output": ["C_re", "C_im"],
                "feedthrough": ["D"], "normalization": ["gamma_log"] if self.use_gamma else []}


def _inverse_softplus(y: Tensor) -> Tensor:
    """``x`` with ``softplus(x) = log(1 + e^x) = y`` for ``y > 0`` (``y + log(1 - e^{-y})``, stable)."""
    return y + torch.log(-torch.expm1(-y))


class S4D(_Diagonal):
    """Diagonal S4 as in ZO's public code (``S4`` with ``s4_shared_Delta=False``): per unit ``n``,
    ``lambda_n = exp(Delta_n A_n)`` with ``A_n = A_re + i A_im`` and ``Delta_n = softplus(delta_raw_n)``,
    and the input enters as ``Delta_n B_n x_t`` (the step size scales the input as in an Euler
    discretization of ``h' = A h + B x``).

    Initialization (ZO's ``"default"`` scheme): the ring draw of the other diagonal students gives
    ``nu_n, theta_n`` and ``C, D``, while ``Re B, Im B ~ N(0, 1)`` (ZO's S4 scales ``B`` by one over the
    square root of its input width, 1, where the other students use ``1/sqrt(n)``); then ``Delta_n = -log nu_n`` (so ``|lambda_n| = nu_n``), ``A_re = -1`` and
    ``A_im = theta_n / Delta_n`` (so ``arg lambda_n = theta_n``). Near ``nu = 1`` the step
    ``Delta ~ 1 - nu`` is small (``0.01`` at ``nu = 0.99``), so ``A_im`` is large: the angle is
    learned through ``A_im`` with a sensitivity ``Delta`` times that of ``theta``.

    ``phases="zo_code"`` reproduces what ZO's public code does instead: it draws
    ``A_im = 2 pi U[0, 1) / delta_raw``, dividing by the **raw** step parameter (``log(e^Delta - 1)
    ~ log Delta``, about ``-4.6`` at ``nu = 0.99``) rather than by ``Delta``, so the initial phases
    ``Delta A_im`` lie in ``(2 pi Delta / log Delta, 0]``: within 0.014 rad of the real axis for
    ``nu >= 0.99`` (``U`` from a generator seeded with the member's seed + 7919).
    Parameters: ``A_re, A_im, delta_raw, B_re, B_im, C_re, C_im`` ``(M, n)``, ``D`` ``(M,)``.
    """

    def __init__(self, seeds: Sequence[int], hidden: int, *, r_min=0.0, r_max: float = 1.0,
                 max_phase=math.pi, phases: str = "ring", dtype: torch.dtype = torch.float64, device="cpu") -> None:
        super().__init__()
        seeds = _check_seeds(seeds)
        if phases not in ("ring", "zo_code"):
            raise ValueError(f"phases must be 'ring' or 'zo_code', got {phases!r}")
        if r_max >= 1.0:
            r_max = 1.0 - 1e-12 if dtype == torch.float64 else 1.0 - 1e-7  # keep Delta = -log nu > 0
        nu, theta, Bre, Bim, Cre, Cim, D = self._init_common(seeds, hidden, r_min, r_max, max_phase, torch.float64)
        Bre, Bim = Bre * math.sqrt(hidden), Bim * math.sqrt(hidden)  # ZO's S4 draws B ~ N(0, 1), not N(0, 1/n)
        delta = -torch.log(nu)
        raw = _inverse_softplus(delta)
        if phases == "ring":
            a_im = theta / delta
        else:
            u = torch.stack([torch.rand(hidden, generator=torch.Generator().manual_seed(s + 7_919), dtype=torch.float64)
                             for s in seeds])
            a_im = 2 * math.pi * u / raw
        self.phases = phases
        self.A_re = nn.Parameter(torch.full_like(nu, -1.0).to(dtype).to(device))
        self.A_im = nn.Parameter(a_im.to(dtype).to(device))
        self.delta_raw = nn.Parameter(raw.to(dtype).to(device))
        self._set_io(Bre.to(dtype), Bim.to(dtype), Cre.to(dtype), Cim.to(dtype), D.to(dtype), device)

    def delta(self) -> Tensor:
        """The step sizes ``Delta = softplus(delta_raw)`` ``(M, n)``."""
        return nn.functional.softplus(self.delta_raw)

    def lam(self) -> Tensor:
        return torch.exp(self.delta() * torch.complex(self.A_re, self.A_im))

    def gamma(self) -> Optional[Tensor]:
        return self.delta()

    def param_groups(self) -> dict[str, list[str]]:
        return {"recurrent": ["A_re", "A_im", "delta_raw"], "input": ["B_re", "B_im"], "output": ["C_re", "C_im"],
                "feedthrough": ["D"], "normalization": []}
