"""floss_utils/flossing/gradient_control.py against closed forms: the exact binomial tail of the
sign test and Student-t quantiles from their definition (tables), and the Bonferroni rule."""

from __future__ import annotations

import math

import pytest
import torch

from floss_utils.flossing.gradient_control import seed_interval, sign_test, sign_test_decidable, sign_tests_holm


def test_sign_test_is_the_binomial_tail():
    # P(X >= k), X ~ Bin(n, 1/2): n = 5, all positive -> 1/32; 4 of 5 -> 6/32; none -> 1
    d = torch.tensor([[1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, -5], [-1.0, -2, -3, -4, -5]])
    k, p = sign_test(d)
    assert k.tolist() == [5, 4, 0]
    assert p.tolist() == pytest.approx([1 / 32, 6 / 32, 1.0])
    assert sign_test(torch.tensor([0.0, 1.0]))[0].item() == 1  # a zero difference is not positive


def test_sign_test_decidable_is_two_to_the_minus_n():
    assert not sign_test_decidable(4)  # 1/16 = 0.0625 > 0.05
    assert sign_test_decidable(5)  # 1/32 < 0.05
    assert sign_test_decidable(7, alpha=0.01) and not sign_test_decidable(6, alpha=0.01)


def test_seed_interval_matches_the_student_t_table():
    # t_{0.975, 4} = 2.7764 (table); Bonferroni over 5 tests: t_{0.995, 4} = 4.6041
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    mean, hw = seed_interval(x)
    assert mean.item() == pytest.approx(3.0)
    assert hw.item() == pytest.approx(2.7764 * x.std().item() / math.sqrt(5), rel=1e-4)
    _, hw5 = seed_interval(x, n_tests=5)
    assert hw5.item() == pytest.approx(4.6041 * x.std().item() / math.sqrt(5), rel=1e-4)
    m, h = seed_interval(torch.ones(3, 1))
    assert torch.isinf(h).all() and m.tolist() == [1.0, 1.0, 1.0]  # one seed: no spread to measure


def test_seed_interval_covers_at_its_nominal_rate():
    # 2000 samples of 6 standard normals: the 95 % interval covers the true mean 0 in 95 % of
    # them; binomial s.d. of the coverage ~0.005, tolerance 0.02.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=g, dtype=torch.float64)
    mean, hw = seed_interval(x)
    assert (mean.abs() <= hw).double().mean().item() == pytest.approx(0.95, abs=0.02)


def test_sign_tests_holm_by_hand():
    # three conditions of 10 seeds: 10, 9 and 6 positive differences; exact binomial tails 2^-10, 11/1024 and
    # 386/1024; Holm at 0.05 compares them with 0.05/3, 0.05/2 and 0.05: the first two are supported, the third not
    d = torch.ones(3, 10)
    d[1, :1] = -1.0
    d[2, :4] = -0.5
    out = sign_tests_holm(d, [1.5, 2.0, 3.0], alpha=0.05)
    assert out["name"].tolist() == [1.5, 2.0, 3.0] and out["n_for"].tolist() == [10, 9, 6] and set(out["n"]) == {10}
    assert out["p"].tolist() == pytest.approx([1 / 1024, 11 / 1024, 386 / 1024], abs=1e-15)
    assert out["supported"].tolist() == [True, True, False]
    # Holm stops at the first failure: two rows of 9 of 10 (p = 11/1024 each) at 0.02; the first fails 0.02/2, so the
    # second is not tested against 0.02/1 (which it would pass: a procedure that went on would say [False, True])
    two = torch.stack([d[1], d[1]])
    assert sign_tests_holm(two, ["a", "b"], alpha=0.02)["supported"].tolist() == [False, False]
    assert sign_tests_holm(d[:0], []).empty
    with pytest.raises(ValueError, match="one row per name"):
        sign_tests_holm(d, ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        sign_tests_holm(d[:2], ["a", "a"])
