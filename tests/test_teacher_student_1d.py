"""The 1-D teacher-student problem (floss_utils/curse_of_memory/teacher_student_1d.py): the
curvature of the loss at the optimum against its closed forms and finite differences."""

from __future__ import annotations

import pytest
import torch

from floss_utils.curse_of_memory.teacher_student_1d import loss_curvature_at_optimum
from floss_utils.curse_of_memory.theory import (complex_moments, teacher_student_hessian_at_optimum,
                                                teacher_student_loss)

from conftest import F64


def test_real_curvature_is_the_closed_form_hessian():
    # closed form (white input, zero mean): (1 + l^2) / (1 - l^2)^3, e.g. 251 263 at 0.99
    lam = torch.tensor([0.3, 0.9, 0.99], dtype=F64)
    got = loss_curvature_at_optimum(lam, "real")
    assert torch.allclose(got, (1 + lam**2) / (1 - lam**2) ** 3, rtol=1e-10)
    assert torch.allclose(got, teacher_student_hessian_at_optimum(lam), rtol=1e-10)


def test_circle_curvature_matches_the_angle_moment_and_finite_differences():
    lam = torch.tensor([0.5, 0.9, 0.99], dtype=F64)
    got = loss_curvature_at_optimum(lam, "circle")
    assert torch.allclose(got, complex_moments(lam, 0.0, 0.0)["dtheta2"], rtol=1e-10)
    # central second difference along the angle with a step 1% of the memory scale 1 - lambda:
    # truncation ~ (h / (1 - lambda))^2 / 12 ~ 1e-5 relative, round-off far below
    h = 0.01 * (1 - lam)
    fd = (teacher_student_loss(torch.polar(lam, h), lam) + teacher_student_loss(torch.polar(lam, -h), lam)
          - 2 * teacher_student_loss(lam.to(torch.complex128), lam)) / h**2
    assert torch.allclose(got, fd.real, rtol=1e-3)


def test_unknown_direction_is_refused():
    with pytest.raises(ValueError, match="direction"):
        loss_curvature_at_optimum(torch.tensor([0.5], dtype=F64), "radial")
