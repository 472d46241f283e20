"""The teacher of the multi-dimensional teacher–student task (ZO Figs. 3, 10, 11; the book's page
'Methods and reference values')."""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.curse_of_memory.teacher import make_teacher, teacher_data

from conftest import F64


def _raw_eigenvalues(seed: int, n: int = 10) -> torch.Tensor:
    """The eigenvalues of the raw draw A ~ N(0, 1/n): the generator's first n*n normals."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.eigvals(torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n))


@pytest.mark.parametrize("nu0", [0.36, 0.9, 0.99])
def test_teacher_eigenvalue_moduli(nu0):
    # Moduli nu0 + (1 - nu0) tanh|l|, computed from eig(A) of the returned matrix (not from the
    # stored eigenvalues): round-off of an eigendecomposition of a 10x10 matrix, atol 1e-10.
    t = make_teacher(3, nu0)
    got = torch.linalg.eigvals(t.A).abs().sort().values
    want = (nu0 + (1 - nu0) * torch.tanh(_raw_eigenvalues(3).abs())).sort().values
    assert torch.allclose(got, want, atol=1e-10)
    assert float(got.min()) >= nu0 and float(got.max()) < 1


def test_teacher_angles_kept_or_scaled():
    raw = _raw_eigenvalues(4)
    for max_phase in (math.pi, 0.1):
        t = make_teacher(4, 0.9, max_phase=max_phase)
        got = torch.linalg.eigvals(t.A).angle().abs().sort().values
        scaled = raw.angle() * max_phase / math.pi
        # real eigenvalues stay real: angle 0, or pi when max_phase > pi/2
        real_neg = (raw.imag == 0) & (raw.real < 0)
        scaled = torch.where(real_neg, torch.tensor(math.pi if max_phase > math.pi / 2 else 0.0, dtype=F64), scaled)
        want = scaled.abs().sort().values  # |angle|: conjugates and +-pi are the same up to sign
        assert torch.allclose(got, want, atol=1e-9)


def test_teacher_seed_determines_teacher():
    a, b, c = make_teacher(5, 0.9), make_teacher(5, 0.9), make_teacher(6, 0.9)
    for name in ("A", "B", "C", "D"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.A, c.A)
    # B ~ N(0, 1), C ~ N(0, 1/n), D ~ N(0, 1) in the generator's order after A
    g = torch.Generator().manual_seed(5)
    torch.randn(10, 10, generator=g, dtype=F64)
    assert torch.equal(a.B, torch.randn(10, generator=g, dtype=F64))
    assert torch.allclose(a.C, torch.randn(10, generator=g, dtype=F64) / math.sqrt(10))


def test_teacher_outputs_recursion_fft_and_kernel_agree():
    t = make_teacher(0, 0.99)
    x = torch.randn(3, 300, 1, generator=torch.Generator().manual_seed(1), dtype=F64)
    y1, y2 = t.outputs(x), t.outputs_fft(x)
    assert float((y1 - y2).abs().max() / y1.abs().max()) < 1e-12
    # y_t for a unit impulse at t = 0 is D, then C A^{t} B
    imp = torch.zeros(1, 20, 1, dtype=F64); imp[0, 0, 0] = 1
    k = t.kernel(20)
    assert torch.allclose(t.outputs(imp)[0, :, 0], torch.cat([k[:1] + t.D, k[1:]]), atol=1e-14)
    assert math.isclose(k[3].item(), (t.C @ torch.linalg.matrix_power(t.A, 3) @ t.B).item(), rel_tol=1e-12)


def test_teacher_data_is_standard_normal():
    # 64 x 300 draws: mean within 5 standard errors (5/sqrt(19200) ~ 0.036), variance within
    # 5 * sqrt(2/19200) ~ 0.05.
    t = make_teacher(0, 0.5)
    x, y = teacher_data(t, 64, 300, torch.Generator().manual_seed(2))
    assert x.shape == y.shape == (64, 300, 1)
    assert abs(float(x.mean())) < 0.036 and abs(float(x.var()) - 1) < 0.05
    assert torch.allclose(y, t.outputs(x), atol=1e-10)


def test_bad_teacher_arguments():
    with pytest.raises(ValueError, match="nu0"):
        make_teacher(0, 1.0)
    with pytest.raises(TypeError, match="seed"):
        make_teacher(0.5, 0.9)
    with pytest.raises(ValueError, match="max_phase"):
        make_teacher(0, 0.9, max_phase=4.0)


def test_zero_output_loss_is_the_monte_carlo_loss_of_a_silent_student():
    # 1/2 E[y_t^2] averaged over t for i.i.d. N(0, 1) inputs started at rest, estimated from 8000
    # sequences: the estimate's relative standard error is below sqrt(2/8000) = 1.6 % (the worst
    # case of fully correlated steps), so 5 % is > 3 standard errors.
    t = make_teacher(2, 0.9)
    x = torch.randn(8000, 60, 1, generator=torch.Generator().manual_seed(5), dtype=F64)
    mc = 0.5 * float((t.outputs_fft(x) ** 2).mean())
    assert t.zero_output_loss(60) == pytest.approx(mc, rel=0.05)
    with pytest.raises(ValueError, match="positive int"):
        t.zero_output_loss(0)


def _zo_code_matrix(seed: int, nu0: float, max_phase: float, n: int = 10) -> torch.Tensor:
    """ZO's public code, literally (``LinearSystem``, parametrization "dense"): every eigenvalue,
    real ones included, rotated to angle ``angle(l) max_phase / pi``; then the real part of the
    resulting non-real matrix."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n)
    l, V = torch.linalg.eig(A)
    l2 = (nu0 + (1 - nu0) * torch.tanh(l.abs())) * torch.exp(1j * torch.angle(l) * max_phase / math.pi)
    return (V @ torch.diag(l2) @ torch.linalg.inv(V)).real


@pytest.mark.parametrize("max_phase", [0.0314, 0.3 * math.pi, 0.993, 2.0, 3.14])
def test_zo_code_rule_is_zo_construction(max_phase):
    # Teacher seed 0 has two negative real eigenvalues (-0.99, -0.14 before shaping), so the rule
    # matters; the literal construction is the reference (round-off of two eigendecompositions).
    raw = _raw_eigenvalues(0)
    assert int(((raw.imag == 0) & (raw.real < 0)).sum()) == 2
    t = make_teacher(0, 0.99, max_phase=max_phase, real_eigenvalues="zo_code")
    assert torch.allclose(t.A, _zo_code_matrix(0, 0.99, max_phase), atol=1e-12)
    # the stored eigenvalues are those of the returned matrix
    got = torch.linalg.eigvals(t.A)
    for lam in t.eigvals:
        assert float((got - lam).abs().min()) < 1e-9
    # the closed form: a negative real eigenvalue becomes modulus * cos(max_phase) < 0.99 for
    # max_phase away from 0 and pi; the book's rule keeps modulus >= nu0
    mod = 0.99 + 0.01 * torch.tanh(raw.abs())
    neg = (raw.imag == 0) & (raw.real < 0)
    want = mod[neg] * math.cos(max_phase)
    for w in want:
        assert float((got - w).abs().min()) < 1e-9
    book = make_teacher(0, 0.99, max_phase=max_phase)
    assert float(torch.linalg.eigvals(book.A).abs().min()) >= 0.99 - 1e-12


def test_rules_agree_without_rotation_and_differ_at_mid_angles():
    # at max_phase = pi nothing is rotated: both rules give the same teacher (cos pi = -1)
    a = make_teacher(0, 0.99, real_eigenvalues="zo_code")
    b = make_teacher(0, 0.99)
    assert torch.allclose(a.A, b.A, atol=1e-12)
    # at 0.3 pi the two negative real eigenvalues fall to ~0.59 of their moduli under ZO's code
    c = make_teacher(0, 0.99, max_phase=0.3 * math.pi, real_eigenvalues="zo_code")
    assert float(torch.linalg.eigvals(c.A).abs().min()) < 0.6
    with pytest.raises(ValueError, match="real_eigenvalues"):
        make_teacher(0, 0.99, real_eigenvalues="zo")
