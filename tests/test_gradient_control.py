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


SMALL = dict(n_units=12, k=4, traj_steps=15, floss_lr=1e-2, ons=1, floss_steps=20)


def test_flossed_ensemble_keeps_unflossed_copies_and_does_not_depend_on_the_batch():
    from floss_utils.common import PARAM_NAMES
    from floss_utils.flossing import init_gf_networks
    from floss_utils.flossing.gradient_control import flossed_ensemble

    net, members = flossed_ensemble([1.0, 3.0], [0, 2], [5, 6], **SMALL)
    assert members == [(g, c, s) for g in (1.0, 3.0) for c in (0, 2) for s in (5, 6)]
    for i, (g, c, s) in enumerate(members):
        init = init_gf_networks([s], SMALL["n_units"], 1, gain=g)
        moved = max((getattr(net, n)[i] - getattr(init, n)[0]).abs().max().item() for n in PARAM_NAMES)
        if c == 0:  # never active: the initial network, bit for bit
            assert moved == 0.0
        else:
            assert moved > 0.0
    # one member flossed alone ends where it ends in the batch (per-member streams and optimizer states). A leak
    # between members would move it by O(1); batched and single BLAS calls may round differently (on an AMD EPYC
    # 5e-12 absolute, 6e-9 relative after 20 flossing steps at g = 3, where the dynamics amplify round-off; the
    # Intel machine agreed to 1e-12), so the test allows round-off amplified by 1e6, far below any leak
    alone, _ = flossed_ensemble([3.0], [2], [6], **SMALL)
    i = members.index((3.0, 2, 6))
    for n in PARAM_NAMES:
        torch.testing.assert_close(getattr(alone, n)[0], getattr(net, n)[i], rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="k_flossed"):
        flossed_ensemble([1.0], [5], [0], **SMALL)


def test_held_out_drive_is_the_networks_response_to_the_held_out_bits():
    from floss_utils.flossing import init_gf_networks, tasks
    from floss_utils.flossing.gradient_control import held_out_drive

    net = init_gf_networks([3, 4], 10, 1, gain=2.0)
    system, h0, drive = held_out_drive(net, [3, 4], horizon=7)
    bits = tasks.sample_bits([3, 4], tasks.HELD_OUT, 0, 0, 7, 1)[:, :, 0]
    assert bits.float().std() > 0  # both bit values occur
    # written out: the input weights times the bit (GF's network, one input; the bias sits in the map)
    for t in (0, 6):
        torch.testing.assert_close(drive(t), net.W_s * bits[t][:, None])
    torch.testing.assert_close(system.bias, net.b)
    torch.testing.assert_close(h0, net.x0[:, 0])
    h0.add_(1.0)  # a copy: the network's own state is untouched
    assert not torch.equal(h0, net.x0[:, 0])
