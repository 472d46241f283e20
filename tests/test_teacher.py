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
